package cachemgr

import "time"

// The library reads time from two clocks, each for its own purpose.
//
// The Manager's clock (m.now: WithClock, time.Now by default) tells wall
// time that is stored or compared with other processes and with Redis:
// freshness (FreshUntil, stale-while-revalidate, XFetch), L1 expiry, a
// load's tag stamp when the server's time is unknown, the deadline a claim
// carries to the server, and the breaker's cooldown. A test moves it to
// simulate time passing or a skewed process.
//
// monotonic measures durations and orders events inside this process:
// how long a loader ran, waits and retry deadlines bounded by the op and
// write timeouts, how long a finished flight or a pending invalidation is
// remembered, event liveness, and the shared deadlines of Redis calls.
// These run against timers and context deadlines, which follow the real
// monotonic clock whatever the Manager's clock says, so they must not move
// with it. TestOneClock keeps any other time.Now call out of the library.

// monotonic returns the current time, with its monotonic reading, for
// measuring elapsed time and ordering events within this process.
func monotonic() time.Time { return time.Now() }
