package cachemgr

import (
	"context"
	"fmt"
)

// Observer receives what happens in a Manager's caches, for metrics and
// tracing (package otelcachemgr adapts it to OpenTelemetry). Its methods
// run on the caller's goroutine, in the hot path: they must be quick and
// safe for concurrent use. A Manager without an Observer pays one nil check
// per event.
type Observer interface {
	// Hit reports a read answered by the cache: from the L1 tier (l1) or
	// Redis, with a value past its fresh TTL (stale) or not.
	Hit(ctx context.Context, cache string, l1, stale bool)
	// Miss reports a read that found no usable value.
	Miss(ctx context.Context, cache string)
	// Load reports that a loader starts; the returned func is called with
	// its error when it ends. It may return a context carrying a span, which
	// the loader then receives.
	Load(ctx context.Context, cache string) (context.Context, func(err error))
	// Error reports a Redis call that failed (not an error reply such as
	// WRONGTYPE, and not a caller that gave up).
	Error(ctx context.Context, err error)
}

// BreakerObserver is an Observer that also wants the circuit breaker's
// transitions (WithBreaker). A Manager whose Observer implements it calls
// Breaker once when the breaker opens (open true, with the failure that
// opened it) and once when a call succeeds again and closes it (open false,
// cause nil). The same transitions are logged through the Manager's logger.
type BreakerObserver interface {
	Observer
	Breaker(ctx context.Context, open bool, cause error)
}

// WithObserver sets the Observer that receives hits, misses, loads and
// Redis errors, and the breaker's transitions if it is a BreakerObserver.
// Default: none.
func WithObserver(o Observer) Option {
	return func(c *config) error {
		if o == nil {
			return fmt.Errorf("%w: nil observer", ErrInvalidOption)
		}
		c.obs = o
		return nil
	}
}
