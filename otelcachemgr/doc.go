// Package otelcachemgr reports what a [cachemgr.Manager] does to
// OpenTelemetry: hit, miss, load and Redis error metrics, and a span per
// load. It is a module of its own, so the cachemgr module never depends on
// OpenTelemetry.
//
// Create one [Observer] with [New] and hand it to the Manager:
//
//	obs, err := otelcachemgr.New() // global providers; see WithTracerProvider, WithMeterProvider
//	if err != nil { ... }
//	m, err := cachemgr.New(rdb, cachemgr.WithObserver(obs))
//
// # Metrics
//
// Instruments belong to the meter named [ScopeName]:
//
//	cachemgr.hits           counter    cache, tier (l1|redis), stale (true|false)
//	cachemgr.misses         counter    cache
//	cachemgr.loads          counter    cache, outcome (ok|not_found|error)
//	cachemgr.load.duration  histogram  cache, outcome; seconds
//	cachemgr.errors         counter    none: Redis calls that failed
//
// A hit is a read answered by the cache, a stale one included (a value past
// its fresh TTL served while a refresh runs, see cachemgr.WithStale). A miss
// is a read that found no usable value; a Fetch that misses then loads. A
// loader that returns cachemgr.ErrNotFound, which caches a negative entry,
// counts as outcome not_found rather than error. cachemgr.errors counts
// failures to reach Redis (timeouts, refused connections), not error
// replies such as WRONGTYPE and not callers that gave up. Cache names are
// the only unbounded-looking attribute, and a process has as many of them as
// it calls cachemgr.NewCache.
//
// # Traces
//
// Each load the Manager reports (a Fetch's loader call, foreground or a
// background refresh) runs in a span named "cachemgr.load" with the
// attributes cache and outcome, a child of the span in the Fetch context;
// the loader receives the span's context, so its own spans (a database
// query) nest under it. A refresh's span may end after its parent. A failed
// load records its error on the span and sets the status to Error; a
// not_found load does not. Hits, misses
// and Redis errors add events (cachemgr.hit, cachemgr.miss, an exception) to
// the caller's span when it is recording, and start no span.
//
// Redis round trips are not traced here: install go-redis's own hooks on the
// client, which give a span per command or pipeline under the same parent:
//
//	import "github.com/redis/go-redis/extra/redisotel/v9"
//
//	rdb := redis.NewClient(opts)
//	if err := redisotel.InstrumentTracing(rdb); err != nil { ... }
//	if err := redisotel.InstrumentMetrics(rdb); err != nil { ... }
//
// # Cost
//
// With no SDK installed (the global no-op providers) a hit costs a lookup of
// the cache's precomputed attribute set and a no-op counter call; with the
// metric SDK it costs one counter update and allocates nothing. Attribute
// sets are built once per cache name and reused.
package otelcachemgr
