package otelcachemgr_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/cachemgr/cachemgr"
	"github.com/cachemgr/cachemgr/otelcachemgr"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// harness is a Manager on miniredis whose Observer reports to in-memory
// trace and metric readers.
type harness struct {
	mr     *miniredis.Miniredis
	m      *cachemgr.Manager
	obs    *otelcachemgr.Observer
	tp     *sdktrace.TracerProvider
	spans  *tracetest.SpanRecorder
	reader *sdkmetric.ManualReader
}

func newHarness(t testing.TB, opts ...cachemgr.Option) *harness {
	t.Helper()
	h := &harness{mr: miniredis.RunT(t), spans: tracetest.NewSpanRecorder(), reader: sdkmetric.NewManualReader()}
	h.tp = sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(h.spans))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(h.reader))
	t.Cleanup(func() {
		h.tp.Shutdown(context.Background())
		mp.Shutdown(context.Background())
	})
	obs, err := otelcachemgr.New(otelcachemgr.WithTracerProvider(h.tp), otelcachemgr.WithMeterProvider(mp))
	if err != nil {
		t.Fatalf("New() error = %v", err)
	}
	h.obs = obs
	h.m = newManager(t, h.mr, append(opts, cachemgr.WithObserver(obs))...)
	return h
}

func newManager(t testing.TB, mr *miniredis.Miniredis, opts ...cachemgr.Option) *cachemgr.Manager {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr(), ContextTimeoutEnabled: true})
	m, err := cachemgr.New(rdb, opts...)
	if err != nil {
		t.Fatalf("cachemgr.New() error = %v", err)
	}
	t.Cleanup(func() {
		m.Close()
		rdb.Close()
	})
	return m
}

func newCache[T any](t testing.TB, m *cachemgr.Manager, name string, opts ...cachemgr.CacheOption) *cachemgr.Cache[T] {
	t.Helper()
	c, err := cachemgr.NewCache[T](m, name, opts...)
	if err != nil {
		t.Fatalf("NewCache(%q) error = %v", name, err)
	}
	return c
}

// collect reads every metric recorded so far.
func (h *harness) collect(t *testing.T) metricdata.ScopeMetrics {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := h.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatalf("Collect() error = %v", err)
	}
	for _, sm := range rm.ScopeMetrics {
		if sm.Scope.Name == otelcachemgr.ScopeName {
			return sm
		}
	}
	return metricdata.ScopeMetrics{}
}

// count returns the value of counter name at exactly the attributes kvs.
func count(sm metricdata.ScopeMetrics, name string, kvs ...attribute.KeyValue) int64 {
	want := attribute.NewSet(kvs...)
	for _, m := range sm.Metrics {
		if s, ok := m.Data.(metricdata.Sum[int64]); ok && m.Name == name {
			for _, dp := range s.DataPoints {
				if dp.Attributes.Equals(&want) {
					return dp.Value
				}
			}
		}
	}
	return 0
}

// observations returns how many values histogram name holds at kvs.
func observations(sm metricdata.ScopeMetrics, name string, kvs ...attribute.KeyValue) uint64 {
	want := attribute.NewSet(kvs...)
	for _, m := range sm.Metrics {
		if h, ok := m.Data.(metricdata.Histogram[float64]); ok && m.Name == name {
			for _, dp := range h.DataPoints {
				if dp.Attributes.Equals(&want) {
					return dp.Count
				}
			}
		}
	}
	return 0
}

// events returns the names of a span's events.
func events(s sdktrace.ReadOnlySpan) []string {
	var names []string
	for _, e := range s.Events() {
		names = append(names, e.Name)
	}
	return names
}

func attr(kvs []attribute.KeyValue, key attribute.Key) string {
	for _, kv := range kvs {
		if kv.Key == key {
			return kv.Value.Emit()
		}
	}
	return ""
}

var (
	cacheUsers = attribute.String("cache", "users")
	tierRedis  = attribute.String("tier", "redis")
	tierL1     = attribute.String("tier", "l1")
	fresh      = attribute.Bool("stale", false)
	stale      = attribute.Bool("stale", true)
)

func TestFetch(t *testing.T) {
	h := newHarness(t)
	users := newCache[string](t, h.m, "users")
	ctx, parent := h.tp.Tracer("test").Start(context.Background(), "request")

	var inLoader trace.SpanContext
	load := func(ctx context.Context) (string, error) {
		inLoader = trace.SpanContextFromContext(ctx)
		return "ada", nil
	}
	if got, err := users.Fetch(ctx, "1", load); err != nil || got != "ada" {
		t.Fatalf("Fetch(1) = %q, %v, want ada, nil (miss, load)", got, err)
	}
	if got, err := users.Fetch(ctx, "1", load); err != nil || got != "ada" {
		t.Fatalf("Fetch(1) = %q, %v, want ada, nil (hit)", got, err)
	}
	boom := errors.New("boom")
	if _, err := users.Fetch(ctx, "2", func(context.Context) (string, error) { return "", boom }); !errors.Is(err, boom) {
		t.Fatalf("Fetch(2) error = %v, want boom", err)
	}
	if _, err := users.Fetch(ctx, "3", func(context.Context) (string, error) { return "", cachemgr.ErrNotFound }); !errors.Is(err, cachemgr.ErrNotFound) {
		t.Fatalf("Fetch(3) error = %v, want ErrNotFound", err)
	}
	parent.End()

	spans := h.spans.Ended()
	if len(spans) != 4 {
		t.Fatalf("ended spans = %d, want 4 (3 loads, request)", len(spans))
	}
	loads, req := spans[:3], spans[3]
	wantStatus := []codes.Code{codes.Unset, codes.Error, codes.Unset}
	wantOutcome := []string{"ok", "error", "not_found"}
	for i, s := range loads {
		if s.Name() != "cachemgr.load" {
			t.Errorf("span %d name = %q, want cachemgr.load", i, s.Name())
		}
		if s.Parent().SpanID() != req.SpanContext().SpanID() {
			t.Errorf("span %d parent = %v, want the request span %v", i, s.Parent().SpanID(), req.SpanContext().SpanID())
		}
		if got := attr(s.Attributes(), "cache"); got != "users" {
			t.Errorf("span %d cache = %q, want users", i, got)
		}
		if got := attr(s.Attributes(), "outcome"); got != wantOutcome[i] {
			t.Errorf("span %d outcome = %q, want %q", i, got, wantOutcome[i])
		}
		if got := s.Status().Code; got != wantStatus[i] {
			t.Errorf("span %d status = %v, want %v", i, got, wantStatus[i])
		}
	}
	if !inLoader.Equal(loads[0].SpanContext()) {
		t.Errorf("loader ctx span = %v, want the load span %v", inLoader.SpanID(), loads[0].SpanContext().SpanID())
	}
	if got := loads[1].Status().Description; got != "boom" {
		t.Errorf("failed load status description = %q, want boom", got)
	}
	if got := events(loads[1]); len(got) != 1 || got[0] != "exception" {
		t.Errorf("failed load events = %v, want [exception]", got)
	}
	if got, want := fmt.Sprint(events(req)), "[cachemgr.miss cachemgr.hit cachemgr.miss cachemgr.miss]"; got != want {
		t.Errorf("request events = %s, want %s", got, want)
	}
	hit := req.Events()[1].Attributes
	if attr(hit, "cache") != "users" || attr(hit, "tier") != "redis" || attr(hit, "stale") != "false" {
		t.Errorf("hit event attributes = %v, want cache=users tier=redis stale=false", hit)
	}

	sm := h.collect(t)
	tests := []struct {
		name string
		got  int64
		want int64
	}{
		{"hits redis fresh", count(sm, "cachemgr.hits", cacheUsers, tierRedis, fresh), 1},
		{"misses", count(sm, "cachemgr.misses", cacheUsers), 3},
		{"loads ok", count(sm, "cachemgr.loads", cacheUsers, attribute.String("outcome", "ok")), 1},
		{"loads error", count(sm, "cachemgr.loads", cacheUsers, attribute.String("outcome", "error")), 1},
		{"loads not_found", count(sm, "cachemgr.loads", cacheUsers, attribute.String("outcome", "not_found")), 1},
		{"load.duration ok", int64(observations(sm, "cachemgr.load.duration", cacheUsers, attribute.String("outcome", "ok"))), 1},
		{"load.duration error", int64(observations(sm, "cachemgr.load.duration", cacheUsers, attribute.String("outcome", "error"))), 1},
		{"errors", count(sm, "cachemgr.errors"), 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got != tt.want {
				t.Errorf("%s = %d, want %d", tt.name, tt.got, tt.want)
			}
		})
	}
}

func TestLoadSpanWithoutParent(t *testing.T) {
	h := newHarness(t)
	users := newCache[string](t, h.m, "users")
	if _, err := users.Fetch(context.Background(), "1", func(context.Context) (string, error) { return "ada", nil }); err != nil {
		t.Fatalf("Fetch(1) error = %v", err)
	}
	spans := h.spans.Ended()
	if len(spans) != 1 || spans[0].Name() != "cachemgr.load" || spans[0].Parent().IsValid() {
		t.Fatalf("ended spans = %v, want one root cachemgr.load span", spans)
	}
}

func TestHitTiers(t *testing.T) {
	tests := []struct {
		name  string
		opts  []cachemgr.Option
		copts []cachemgr.CacheOption
		skew  time.Duration // how far the Manager's clock moves after Set
		want  []attribute.KeyValue
	}{
		{"redis", nil, nil, 0, []attribute.KeyValue{cacheUsers, tierRedis, fresh}},
		// Gets read Redis and fill the L1 tier once the Manager's event
		// subscription is up; from then on they hit L1.
		{"l1", []cachemgr.Option{cachemgr.WithL1(100)}, nil, 0, []attribute.KeyValue{cacheUsers, tierL1, fresh}},
		{"stale", nil, []cachemgr.CacheOption{cachemgr.WithTTL(time.Minute), cachemgr.WithStale(time.Hour)}, 2 * time.Minute, []attribute.KeyValue{cacheUsers, tierRedis, stale}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var mu sync.Mutex
			now := time.Now()
			clock := func() time.Time {
				mu.Lock()
				defer mu.Unlock()
				return now
			}
			h := newHarness(t, append(tt.opts, cachemgr.WithClock(clock))...)
			users := newCache[string](t, h.m, "users", tt.copts...)
			ctx := context.Background()
			if err := users.Set(ctx, "1", "ada"); err != nil {
				t.Fatalf("Set(1) error = %v", err)
			}
			mu.Lock()
			now = now.Add(tt.skew)
			mu.Unlock()
			waitFor(t, fmt.Sprint("cachemgr.hits", tt.want), func() bool {
				if got, err := users.Get(ctx, "1"); err != nil || got != "ada" {
					t.Fatalf("Get(1) = %q, %v, want ada, nil", got, err)
				}
				return count(h.collect(t), "cachemgr.hits", tt.want...) == 1
			})
		})
	}
}

// waitFor polls cond until it holds or 5s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestRedisError(t *testing.T) {
	h := newHarness(t, cachemgr.WithOpTimeout(50*time.Millisecond), cachemgr.WithEvents(false))
	users := newCache[string](t, h.m, "users")
	h.mr.Close()
	ctx, parent := h.tp.Tracer("test").Start(context.Background(), "request")
	if _, err := users.Get(ctx, "1"); !errors.Is(err, cachemgr.ErrUnavailable) {
		t.Fatalf("Get(1) error = %v, want ErrUnavailable", err)
	}
	parent.End()
	if got := count(h.collect(t), "cachemgr.errors"); got != 1 {
		t.Errorf("cachemgr.errors = %d, want 1", got)
	}
	spans := h.spans.Ended()
	if len(spans) != 1 {
		t.Fatalf("ended spans = %d, want 1", len(spans))
	}
	if got := fmt.Sprint(events(spans[0])); got != "[exception]" {
		t.Errorf("request events = %s, want [exception]", got)
	}
	if got := spans[0].Status().Code; got != codes.Unset {
		t.Errorf("request status = %v, want Unset (the caller decides)", got)
	}
}

func TestNotRecording(t *testing.T) {
	// A span that is not sampled gets no events, and Hit allocates nothing.
	h := newHarness(t)
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.NeverSample()), sdktrace.WithSpanProcessor(h.spans))
	ctx, span := tp.Tracer("test").Start(context.Background(), "request")
	h.obs.Hit(ctx, "users", true, false) // builds the cache's attribute sets
	if allocs := testing.AllocsPerRun(100, func() { h.obs.Hit(ctx, "users", true, false) }); allocs != 0 {
		t.Errorf("Hit allocs = %v, want 0", allocs)
	}
	span.End()
	if got := len(h.spans.Ended()); got != 0 {
		t.Errorf("ended spans = %d, want 0 (not sampled)", got)
	}
	// AllocsPerRun calls once more to warm up.
	if got := count(h.collect(t), "cachemgr.hits", cacheUsers, tierL1, fresh); got != 102 {
		t.Errorf("cachemgr.hits = %d, want 102", got)
	}
}

func TestConcurrent(t *testing.T) {
	h := newHarness(t)
	const goroutines, calls, caches = 16, 200, 4
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			ctx := context.Background()
			for i := range calls {
				name := fmt.Sprint("c", (g+i)%caches)
				h.obs.Hit(ctx, name, i%2 == 0, false)
				h.obs.Miss(ctx, name)
				_, end := h.obs.Load(ctx, name)
				end(nil)
			}
		})
	}
	wg.Wait()
	sm := h.collect(t)
	var hits, misses, loads int64
	for c := range caches {
		name := attribute.String("cache", fmt.Sprint("c", c))
		hits += count(sm, "cachemgr.hits", name, tierL1, fresh) + count(sm, "cachemgr.hits", name, tierRedis, fresh)
		misses += count(sm, "cachemgr.misses", name)
		loads += count(sm, "cachemgr.loads", name, attribute.String("outcome", "ok"))
	}
	const want = goroutines * calls
	if hits != want || misses != want || loads != want {
		t.Errorf("hits, misses, loads = %d, %d, %d, want %d each", hits, misses, loads, want)
	}
	if got := len(h.spans.Ended()); got != want {
		t.Errorf("ended spans = %d, want %d", got, want)
	}
}

func TestNew(t *testing.T) {
	tests := []struct {
		name string
		opt  otelcachemgr.Option
	}{
		{"nil tracer provider", otelcachemgr.WithTracerProvider(nil)},
		{"nil meter provider", otelcachemgr.WithMeterProvider(nil)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := otelcachemgr.New(tt.opt); !errors.Is(err, cachemgr.ErrInvalidOption) {
				t.Errorf("New(%s) error = %v, want ErrInvalidOption", tt.name, err)
			}
		})
	}
	if _, err := otelcachemgr.New(); err != nil {
		t.Errorf("New() error = %v, want nil (global providers)", err)
	}
}
