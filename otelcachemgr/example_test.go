package otelcachemgr_test

import (
	"context"
	"fmt"

	"github.com/alicebob/miniredis/v2"
	"github.com/cachemgr/cachemgr"
	"github.com/cachemgr/cachemgr/otelcachemgr"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

func ExampleNew() {
	mr, err := miniredis.Run() // embedded Redis for the example
	if err != nil {
		fmt.Println(err)
		return
	}
	defer mr.Close()
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr(), ContextTimeoutEnabled: true})
	defer rdb.Close()

	// In a service these are the SDK providers set up at start (or the
	// global ones, which New uses by default); here they keep what they
	// receive in memory.
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))

	obs, err := otelcachemgr.New(otelcachemgr.WithTracerProvider(tp), otelcachemgr.WithMeterProvider(mp))
	if err != nil {
		fmt.Println(err)
		return
	}
	m, err := cachemgr.New(rdb, cachemgr.WithObserver(obs))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer m.Close()
	users, err := cachemgr.NewCache[string](m, "user")
	if err != nil {
		fmt.Println(err)
		return
	}

	ctx := context.Background()
	for range 3 {
		users.Fetch(ctx, "42", func(context.Context) (string, error) { return "Ada", nil })
	}

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		fmt.Println(err)
		return
	}
	enc := attribute.DefaultEncoder()
	for _, sm := range rm.ScopeMetrics {
		for _, metric := range sm.Metrics {
			if sum, ok := metric.Data.(metricdata.Sum[int64]); ok {
				for _, dp := range sum.DataPoints {
					fmt.Println(metric.Name, dp.Attributes.Encoded(enc), dp.Value)
				}
			}
		}
	}
	for _, s := range spans.Ended() {
		attrs := attribute.NewSet(s.Attributes()...)
		fmt.Println("span", s.Name(), attrs.Encoded(enc))
	}
	// Output:
	// cachemgr.hits cache=user,stale=false,tier=redis 2
	// cachemgr.misses cache=user 1
	// cachemgr.loads cache=user,outcome=ok 1
	// span cachemgr.load cache=user,outcome=ok
}
