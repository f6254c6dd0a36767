// Package breaker is a lock-free circuit breaker: it opens after a run of
// consecutive failures, rejects calls for a cooldown, then lets exactly one
// probe through; the probe's outcome closes or re-opens it.
package breaker

import (
	"sync/atomic"
	"time"
)

// State is the breaker's position.
type State int32

// The breaker's states.
const (
	Closed State = iota
	Open
	HalfOpen
)

// String returns "closed", "open" or "half-open".
func (s State) String() string {
	switch s {
	case Closed:
		return "closed"
	case Open:
		return "open"
	case HalfOpen:
		return "half-open"
	}
	return "unknown"
}

// Breaker is safe for concurrent use. Create it with New.
type Breaker struct {
	threshold int64
	cooldown  time.Duration
	now       func() time.Time

	state    atomic.Int32
	failures atomic.Int64
	openedAt atomic.Int64 // UnixNano of opening or of the last probe
}

// New returns a closed breaker that opens after threshold consecutive
// failures and probes again after cooldown. A threshold of 0 disables it.
func New(threshold int, cooldown time.Duration, now func() time.Time) *Breaker {
	return &Breaker{threshold: int64(threshold), cooldown: cooldown, now: now}
}

// Allow reports whether a call may go ahead. While open it returns false,
// except once per cooldown, when it returns true for a single probe.
func (b *Breaker) Allow() bool {
	switch State(b.state.Load()) {
	case Closed:
		return true
	default:
		// Open, or HalfOpen with a probe out. A probe whose outcome never
		// came back (its caller gave up) does not block the next one for
		// more than a cooldown.
		at := b.openedAt.Load()
		now := b.now().UnixNano()
		if now-at < int64(b.cooldown) || !b.openedAt.CompareAndSwap(at, now) {
			return false
		}
		b.state.Store(int32(HalfOpen))
		return true
	}
}

// Success records a call that reached Redis and closes the breaker. It
// reports whether this call closed it (it was open or half-open): of
// concurrent successes, exactly one does.
func (b *Breaker) Success() bool {
	if b.failures.Load() != 0 {
		b.failures.Store(0)
	}
	for {
		s := b.state.Load()
		if State(s) == Closed {
			return false
		}
		if b.state.CompareAndSwap(s, int32(Closed)) {
			return true
		}
	}
}

// Failure records a failed call. The probe of a half-open breaker re-opens
// it; otherwise the threshold-th consecutive failure opens it. It reports
// whether this call opened a closed breaker.
func (b *Breaker) Failure() bool {
	if b.threshold <= 0 {
		return false
	}
	if b.state.CompareAndSwap(int32(HalfOpen), int32(Open)) {
		b.openedAt.Store(b.now().UnixNano())
		return false
	}
	if b.failures.Add(1) >= b.threshold && b.state.CompareAndSwap(int32(Closed), int32(Open)) {
		b.openedAt.Store(b.now().UnixNano())
		return true
	}
	return false
}

// State returns the breaker's current state.
func (b *Breaker) State() State {
	return State(b.state.Load())
}
