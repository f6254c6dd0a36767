// Package coherence checks cachemgr's promise that a read which begins after
// an invalidation returned never sees the value that invalidation replaced,
// with several OS processes sharing one Redis.
//
// A run (TestCoherence, behind the build tag "coherence") starts one
// redis-server for the caches and one for a small database of versioned
// rows, then several child processes: the test binary again, each with its
// own Manager, some with the L1 tier on. Readers Fetch, Get, GetMany and
// FetchMany; writers bump a row's version in the database, then invalidate
// it with one strategy after another (Delete, Set, InvalidateTags, Bump,
// InvalidatePrefix). Meanwhile the parent injects faults: Redis killed and
// restarted, frozen with SIGSTOP, paused with CLIENT PAUSE, the pub/sub
// connections cut or silently stalled.
//
// Each process writes its history ([Record]s, timed by one system-wide
// monotonic clock) to a file, and [Check] judges the merged history: a read
// that began after an invalidation returned must see at least the version
// that invalidation covered. A read answered by the L1 tier may be stale
// for at most [Bounds].Delivery (Liveness plus Delivery while its
// subscription was stalled), and never once its process had the event.
//
// docs/coherence.md says how to run it.
package coherence
