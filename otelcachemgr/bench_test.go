package otelcachemgr_test

import (
	"context"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/cachemgr/cachemgr"
	"github.com/cachemgr/cachemgr/otelcachemgr"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

// benchObservers are the set-ups a hit is measured under: an Observer (nil
// for none) and the context reads run with.
var benchObservers = []struct {
	name  string
	setup func(b *testing.B) (*otelcachemgr.Observer, context.Context)
}{
	{"none", func(*testing.B) (*otelcachemgr.Observer, context.Context) {
		return nil, context.Background()
	}},
	{"noop", func(b *testing.B) (*otelcachemgr.Observer, context.Context) {
		return newBenchObserver(b,
			otelcachemgr.WithTracerProvider(tracenoop.NewTracerProvider()),
			otelcachemgr.WithMeterProvider(metricnoop.NewMeterProvider())), context.Background()
	}},
	// The global providers with no SDK installed: what New() gives by default.
	{"global", func(b *testing.B) (*otelcachemgr.Observer, context.Context) {
		return newBenchObserver(b), context.Background()
	}},
	{"sdk", func(b *testing.B) (*otelcachemgr.Observer, context.Context) {
		return sdkObserver(b), context.Background()
	}},
	// The SDK with a sampled span in the context: each hit adds an event
	// (a span keeps 128; the rest are counted as dropped).
	{"sdk-span", func(b *testing.B) (*otelcachemgr.Observer, context.Context) {
		obs := sdkObserver(b)
		ctx, span := sdktrace.NewTracerProvider().Tracer("bench").Start(context.Background(), "request")
		b.Cleanup(func() { span.End() })
		return obs, ctx
	}},
}

func newBenchObserver(b *testing.B, opts ...otelcachemgr.Option) *otelcachemgr.Observer {
	b.Helper()
	obs, err := otelcachemgr.New(opts...)
	if err != nil {
		b.Fatal(err)
	}
	return obs
}

func sdkObserver(b *testing.B) *otelcachemgr.Observer {
	b.Helper()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(tracetest.NewSpanRecorder()))
	b.Cleanup(func() {
		mp.Shutdown(context.Background())
		tp.Shutdown(context.Background())
	})
	return newBenchObserver(b, otelcachemgr.WithTracerProvider(tp), otelcachemgr.WithMeterProvider(mp))
}

// BenchmarkFetchHit measures a Fetch answered by the L1 tier or by Redis
// (miniredis on loopback) with no Observer and with each set-up above.
func BenchmarkFetchHit(b *testing.B) {
	load := func(context.Context) (string, error) { return "ada", nil }
	tiers := []struct {
		name string
		opts []cachemgr.Option
	}{
		{"l1", []cachemgr.Option{cachemgr.WithL1(1000)}},
		{"redis", nil},
	}
	for _, tier := range tiers {
		for _, o := range benchObservers {
			b.Run(tier.name+"/"+o.name, func(b *testing.B) {
				obs, ctx := o.setup(b)
				opts := tier.opts
				if obs != nil {
					opts = append(opts, cachemgr.WithObserver(obs))
				}
				m := newManager(b, miniredis.RunT(b), opts...)
				users := newCache[string](b, m, "users")
				if _, err := users.Fetch(ctx, "1", load); err != nil {
					b.Fatal(err)
				}
				waitWarm(b, m, users, tier.name == "l1")
				b.ReportAllocs()
				for b.Loop() {
					if _, err := users.Fetch(ctx, "1", load); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// waitWarm returns once a Fetch of key 1 is a hit of the wanted tier: the
// L1 tier serves hits only once the Manager's event subscription is up.
func waitWarm(b *testing.B, m *cachemgr.Manager, c *cachemgr.Cache[string], l1 bool) {
	b.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for l1 {
		before := m.Stats().L1Hits
		if _, err := c.Get(context.Background(), "1"); err != nil {
			b.Fatal(err)
		}
		if m.Stats().L1Hits > before {
			return
		}
		if time.Now().After(deadline) {
			b.Fatal("timed out waiting for L1 hits")
		}
		time.Sleep(time.Millisecond)
	}
}

// BenchmarkObserverHit measures Observer.Hit alone.
func BenchmarkObserverHit(b *testing.B) {
	for _, o := range benchObservers[1:] {
		b.Run(o.name, func(b *testing.B) {
			obs, ctx := o.setup(b)
			b.ReportAllocs()
			for b.Loop() {
				obs.Hit(ctx, "users", true, false)
			}
		})
	}
}
