// Package breaker is a lock-free circuit breaker: it opens after a run of
// consecutive failures, rejects calls for a cooldown, then lets exactly one
// probe through; the probe's outcome closes or re-opens it.
package breaker

import (
	"context"
	"errors"
	"math"
	"net"
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
	// lastReply is the UnixNano of a recent success, lastTimeout that of
	// the last timeout counted (see Timeout).
	lastReply   atomic.Int64
	lastTimeout atomic.Int64
}

// New returns a closed breaker that opens after threshold consecutive
// failures and probes again after cooldown. A threshold of 0 disables it.
func New(threshold int, cooldown time.Duration, now func() time.Time) *Breaker {
	b := &Breaker{threshold: int64(threshold), cooldown: cooldown, now: now}
	b.lastReply.Store(math.MinInt64 / 2) // none yet
	b.lastTimeout.Store(math.MinInt64 / 2)
	return b
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
	// The time of the reply, for Timeout: written at most once a
	// millisecond, so concurrent successes do not all contend for it.
	if now := b.now().UnixNano(); now-b.lastReply.Load() > int64(time.Millisecond) {
		b.lastReply.Store(now)
	}
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

// Timeout records a call that got no reply within window (its timeout). A
// timeout is evidence of a dead Redis only when nothing else answered: it
// counts as a Failure unless a call succeeded within the last window (Redis
// answers; this call waited behind others, or the CPU was busy), or another
// timeout was counted within the last window (the timeouts of one burst of
// concurrent calls are one piece of evidence, not many). So a server that
// stops answering opens the breaker after about threshold windows of
// timeouts, and a stampede queueing behind itself on a live one does not.
// It reports whether this call opened a closed breaker.
func (b *Breaker) Timeout(window time.Duration) bool {
	if b.answering(window) {
		return false
	}
	now := b.now().UnixNano()
	last := b.lastTimeout.Load()
	if now-last < int64(window) || !b.lastTimeout.CompareAndSwap(last, now) {
		return false
	}
	return b.Failure()
}

// answering reports whether a call succeeded within the last window: a
// call that timed out meanwhile met a slow Redis, not a dead one.
func (b *Breaker) answering(window time.Duration) bool {
	return b.now().UnixNano()-b.lastReply.Load() < int64(window)
}

// Failed records a failed call: a timeout (IsTimeout) by Timeout(window),
// any other failure (a refused connection, a reset) by Failure. It reports
// whether this call opened a closed breaker.
func (b *Breaker) Failed(err error, window time.Duration) bool {
	if IsTimeout(err) {
		return b.Timeout(window)
	}
	return b.Failure()
}

// IsTimeout reports whether err is a call's timeout: its context's deadline,
// or a network timeout.
func IsTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}

// State returns the breaker's current state.
func (b *Breaker) State() State {
	return State(b.state.Load())
}
