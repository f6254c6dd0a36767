// Package cachemgr is a typed cache manager over Redis.
//
// A process creates one [Manager] with [New] over any go-redis client
// (single node, Sentinel, Ring or Cluster) and one [Cache] per entity with
// [NewCache]. [Cache.Fetch] is cache-aside in one call: it returns the
// cached value or runs the loader once per key, however many goroutines
// miss at once, and stores the result.
//
// # Invalidation strategies
//
// TTL with jitter ([WithTTL], [WithJitter], [TTL], [Entry.SetTTL]): every
// value expires; jitter keeps keys written together from expiring together.
// Pick it when a bounded staleness is acceptable and no event tells you
// when data changes. It is always on: no key is ever written without a TTL.
//
// Explicit delete ([Cache.Delete]) and overwrite ([Cache.Set]): after a
// write to the source of truth, delete or replace the key. Pick it when the
// writer knows exactly which keys changed.
//
// Version-bump namespaces ([WithVersioned], [Cache.Bump]): one O(1) call
// makes every entry of a cache unreadable, for bulk changes (an import, a
// schema change). Reads check the version in the same round trip as the
// value (one MGET on a single node, a pipeline on Cluster), so there is no
// staleness window.
//
// Tags ([Tags], [Entry.AddTags], [Manager.InvalidateTags]): entries carry
// tags ("category:7"); invalidating a tag makes every entry carrying it
// unreadable, across caches, in O(1) per tag. Pick it for relations that
// cut across keys. Reading a tagged entry costs a second round trip (its
// tags' invalidation stamps); untagged entries pay nothing.
//
// Prefix scans ([Cache.InvalidatePrefix]): SCAN for keys starting with a
// prefix, on every Cluster master. It costs time in proportion to the
// database, so keep it for what tags cannot express.
//
// All of them close the cache-aside race that most cache libraries leave
// open: a load that began before an invalidation returned never makes its
// result readable after it, and a caller that began after the invalidation
// never receives it from a shared load. Delete rotates a per-key marker that
// the write-back checks in the same script; Bump moves readers to a
// namespace the old load does not write to; tagged entries carry the time
// their load began, which reads compare with the tag's invalidation time
// (allowing [WithClockSkew] between processes' clocks).
//
// Stale-while-revalidate ([WithStale], [WithSoftTimeout],
// [WithEarlyRefresh]): a value past its fresh TTL is still served for a
// stale window while one background refresh, elected across all processes
// by a Redis lease ([WithLease]), loads the new one; if the refresh fails,
// the stale value keeps being served until the window ends. Pick it when a
// slightly old value beats waiting for the loader.
//
// Pub/sub events and the L1 tier ([WithL1], [WithEvents], [Publish],
// [Handle]): an in-process tier of decoded values in front of Redis, kept
// coherent by invalidation events that every Set, Delete, Bump and
// InvalidateTags publishes. An L1 hit costs about 100 ns and no
// allocation; values from it are shared and must be treated as read-only.
// Pick it for hot keys read far more often than written, where a few
// milliseconds of cross-process staleness (the event's trip) are acceptable.
//
// # Stampedes and batches
//
// Concurrent misses of one key share one load per process (singleflight)
// and, through the lease, one load across processes: the others poll for
// its value with back-off, then load themselves if the holder dies.
// [Cache.GetMany] and [Cache.FetchMany] read many keys in one round trip
// and load the missing ones in one call. [WithObserver] reports hits,
// misses, loads and errors to metrics and tracing.
//
// # Failure behaviour
//
// Every Redis call is bounded by the op timeout ([WithOpTimeout]). When
// Redis fails, is slow, or the circuit breaker ([WithBreaker]) is open,
// [Cache.Fetch] answers from the loader and [Cache.Get] returns an error
// wrapping [ErrUnavailable]. Stored bytes that do not decode are a counted
// miss and are deleted; decoding is bounded, so forged lengths cannot force
// large allocations.
//
// # Stored format
//
// Each value is a 16-byte header (format version, codec, compressor,
// negative flag, fresh-until time, load duration, raw length) and the
// payload, encoded with msgpack by default and compressed with lz4 above
// 1 KiB when that makes it smaller. Keys are "prefix:name:{=key}": the
// braces are a Redis Cluster hash tag per key, so a key and its companions
// share a slot and different keys spread over the cluster. Keys longer than
// [WithMaxKeyLen] are hashed.
package cachemgr
