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
// Explicit delete ([Cache.Delete]): after a write to the source of truth,
// delete the key. A load that started before the Delete does not write its
// outdated result back, which closes the cache-aside race that most cache
// libraries leave open: Delete rotates a per-key invalidation marker, and a
// load writes back only if the marker is unchanged, in one script.
//
// Version-bump namespaces, tag sets, stale-while-revalidate with a refresh
// lease, and pub/sub events for an in-process L1 tier are designed in
// DESIGN.md and build on the same envelope and key layout; they are not in
// this version yet.
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
