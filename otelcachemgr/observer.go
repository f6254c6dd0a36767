package otelcachemgr

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/cachemgr/cachemgr"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// ScopeName is the instrumentation scope of the Observer's tracer and
// meter, for selecting its telemetry in views and processors.
const ScopeName = "github.com/cachemgr/cachemgr/otelcachemgr"

// Attribute keys and values, as listed in the package comment.
const (
	keyCache   = attribute.Key("cache")
	keyTier    = attribute.Key("tier")
	keyStale   = attribute.Key("stale")
	keyOutcome = attribute.Key("outcome")
)

// Outcomes of a load, indexed by outcomeOf.
const (
	outcomeOK = iota
	outcomeNotFound
	outcomeError
)

var outcomes = [...]string{outcomeOK: "ok", outcomeNotFound: "not_found", outcomeError: "error"}

// loadBuckets are the load.duration histogram bounds in seconds, those the
// OpenTelemetry semantic conventions advise for request durations.
var loadBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10}

// Observer implements cachemgr.Observer over an OpenTelemetry tracer and
// meter. It is safe for concurrent use, and one Observer may serve several
// Managers.
type Observer struct {
	tracer       trace.Tracer
	hits         metric.Int64Counter
	misses       metric.Int64Counter
	loads        metric.Int64Counter
	errors       metric.Int64Counter
	loadDuration metric.Float64Histogram

	caches sync.Map // cache name → *cacheAttrs
}

var _ cachemgr.Observer = (*Observer)(nil)

// cacheAttrs holds one cache's attribute sets, built once, as the option
// slices the instruments take, so that recording allocates nothing.
type cacheAttrs struct {
	hit       [2][2][]metric.AddOption // [l1][stale]
	hitEvent  [2][2][]trace.EventOption
	miss      []metric.AddOption
	missEvent []trace.EventOption
	start     []trace.SpanStartOption
	load      [len(outcomes)][]metric.AddOption
	took      [len(outcomes)][]metric.RecordOption
	outcome   [len(outcomes)]attribute.KeyValue
}

func newCacheAttrs(cache string) *cacheAttrs {
	a := &cacheAttrs{}
	name := keyCache.String(cache)
	for l1, tier := range []string{"redis", "l1"} {
		for stale := range 2 {
			kvs := []attribute.KeyValue{name, keyTier.String(tier), keyStale.Bool(stale == 1)}
			a.hit[l1][stale] = []metric.AddOption{metric.WithAttributeSet(attribute.NewSet(kvs...))}
			a.hitEvent[l1][stale] = []trace.EventOption{trace.WithAttributes(kvs...)}
		}
	}
	a.miss = []metric.AddOption{metric.WithAttributeSet(attribute.NewSet(name))}
	a.missEvent = []trace.EventOption{trace.WithAttributes(name)}
	a.start = []trace.SpanStartOption{trace.WithAttributes(name), trace.WithSpanKind(trace.SpanKindInternal)}
	for i, outcome := range outcomes {
		a.outcome[i] = keyOutcome.String(outcome)
		set := metric.WithAttributeSet(attribute.NewSet(name, a.outcome[i]))
		a.load[i] = []metric.AddOption{set}
		a.took[i] = []metric.RecordOption{set}
	}
	return a
}

// config is what the options set.
type config struct {
	tp trace.TracerProvider
	mp metric.MeterProvider
}

// Option configures New.
type Option func(*config) error

// WithTracerProvider sets where load spans go.
// Default: otel.GetTracerProvider() at the time New runs.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(c *config) error {
		if tp == nil {
			return fmt.Errorf("%w: nil tracer provider", cachemgr.ErrInvalidOption)
		}
		c.tp = tp
		return nil
	}
}

// WithMeterProvider sets where metrics go.
// Default: otel.GetMeterProvider() at the time New runs.
func WithMeterProvider(mp metric.MeterProvider) Option {
	return func(c *config) error {
		if mp == nil {
			return fmt.Errorf("%w: nil meter provider", cachemgr.ErrInvalidOption)
		}
		c.mp = mp
		return nil
	}
}

// New returns an Observer to pass to cachemgr.WithObserver. It creates the
// instruments once; an option with a nil provider, or a meter that refuses
// an instrument, makes it return an error.
func New(opts ...Option) (*Observer, error) {
	cfg, err := newConfig(opts)
	if err != nil {
		return nil, err
	}
	o := &Observer{tracer: cfg.tp.Tracer(ScopeName)}
	if err := o.newInstruments(cfg.mp.Meter(ScopeName)); err != nil {
		return nil, err
	}
	return o, nil
}

// newConfig applies opts; the global providers stand in for those not
// given.
func newConfig(opts []Option) (config, error) {
	var cfg config
	for _, opt := range opts {
		if err := opt(&cfg); err != nil {
			return config{}, err
		}
	}
	if cfg.tp == nil {
		cfg.tp = otel.GetTracerProvider()
	}
	if cfg.mp == nil {
		cfg.mp = otel.GetMeterProvider()
	}
	return cfg, nil
}

// newInstruments creates o's instruments with meter, and reports every
// one it refused.
func (o *Observer) newInstruments(meter metric.Meter) error {
	var err, e error
	o.hits, e = meter.Int64Counter("cachemgr.hits", metric.WithUnit("{hit}"),
		metric.WithDescription("Reads answered by the cache, from the L1 tier or Redis, fresh or stale."))
	err = errors.Join(err, e)
	o.misses, e = meter.Int64Counter("cachemgr.misses", metric.WithUnit("{miss}"),
		metric.WithDescription("Reads that found no usable value."))
	err = errors.Join(err, e)
	o.loads, e = meter.Int64Counter("cachemgr.loads", metric.WithUnit("{load}"),
		metric.WithDescription("Loader calls, by outcome."))
	err = errors.Join(err, e)
	o.errors, e = meter.Int64Counter("cachemgr.errors", metric.WithUnit("{error}"),
		metric.WithDescription("Redis calls that failed to reach Redis."))
	err = errors.Join(err, e)
	o.loadDuration, e = meter.Float64Histogram("cachemgr.load.duration", metric.WithUnit("s"),
		metric.WithDescription("Time loaders took, by outcome."),
		metric.WithExplicitBucketBoundaries(loadBuckets...))
	err = errors.Join(err, e)
	if err != nil {
		return fmt.Errorf("otelcachemgr: instruments: %w", err)
	}
	return nil
}

// attrs returns the attribute sets of cache, building them on its first use.
func (o *Observer) attrs(cache string) *cacheAttrs {
	if a, ok := o.caches.Load(cache); ok {
		return a.(*cacheAttrs)
	}
	a, _ := o.caches.LoadOrStore(cache, newCacheAttrs(cache))
	return a.(*cacheAttrs)
}

// Hit counts a read answered by the cache and adds a cachemgr.hit event to
// the span in ctx if it is recording.
func (o *Observer) Hit(ctx context.Context, cache string, l1, stale bool) {
	a := o.attrs(cache)
	i, j := index(l1), index(stale)
	o.hits.Add(ctx, 1, a.hit[i][j]...)
	if span := trace.SpanFromContext(ctx); span.IsRecording() {
		span.AddEvent("cachemgr.hit", a.hitEvent[i][j]...)
	}
}

// Miss counts a read that found no usable value and adds a cachemgr.miss
// event to the span in ctx if it is recording.
func (o *Observer) Miss(ctx context.Context, cache string) {
	a := o.attrs(cache)
	o.misses.Add(ctx, 1, a.miss...)
	if span := trace.SpanFromContext(ctx); span.IsRecording() {
		span.AddEvent("cachemgr.miss", a.missEvent...)
	}
}

// Load starts a cachemgr.load span, a child of the span in ctx, and returns
// its context for the loader. The returned func ends the span, records a
// failed load's error on it, and counts and times the load.
func (o *Observer) Load(ctx context.Context, cache string) (context.Context, func(error)) {
	a := o.attrs(cache)
	start := time.Now()
	ctx, span := o.tracer.Start(ctx, "cachemgr.load", a.start...)
	return ctx, func(err error) {
		took := time.Since(start).Seconds()
		i := outcomeOf(err)
		if i == outcomeError {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		}
		span.SetAttributes(a.outcome[i])
		span.End()
		o.loads.Add(ctx, 1, a.load[i]...)
		o.loadDuration.Record(ctx, took, a.took[i]...)
	}
}

// Error counts a Redis call that failed and records err on the span in ctx
// if it is recording, as an event: the caller's operation may still succeed
// (Fetch falls back to the loader), so the span's status is left alone.
func (o *Observer) Error(ctx context.Context, err error) {
	o.errors.Add(ctx, 1)
	if span := trace.SpanFromContext(ctx); span.IsRecording() {
		span.RecordError(err)
	}
}

func outcomeOf(err error) int {
	switch {
	case err == nil:
		return outcomeOK
	case errors.Is(err, cachemgr.ErrNotFound):
		return outcomeNotFound
	default:
		return outcomeError
	}
}

func index(b bool) int {
	if b {
		return 1
	}
	return 0
}
