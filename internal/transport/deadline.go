package transport

import (
	"context"
	"sync/atomic"
	"time"
)

// Bounding every Redis call by the op timeout with context.WithTimeout
// costs five allocations and a timer per call, more than the GET itself.
// Calls instead share a deadline context that is replaced when fewer than
// an op timeout remains on it, so each call gets between 1 and 1.25 op
// timeouts, and wrap it in opCtx, which keeps the caller's values (tracing
// hooks read them) at the cost of one small allocation.

// sharedDeadline is one deadline context shared by the calls that start
// while it has at least an op timeout left.
type sharedDeadline struct {
	ctx      context.Context
	cancel   context.CancelFunc
	deadline time.Time
}

// deadlines hands out sharedDeadlines. The zero value is ready to use.
type deadlines struct {
	cur atomic.Pointer[sharedDeadline]
}

// get returns a context that ends between d and 1.25*d from now, or when
// parent (the Transport's lifetime) ends.
func (ds *deadlines) get(parent context.Context, d time.Duration) context.Context {
	now := time.Now()
	cur := ds.cur.Load()
	if cur != nil && cur.deadline.Sub(now) >= d {
		return cur.ctx
	}
	deadline := now.Add(d + d/4)
	ctx, cancel := context.WithDeadline(parent, deadline)
	next := &sharedDeadline{ctx: ctx, cancel: cancel, deadline: deadline}
	if !ds.cur.CompareAndSwap(cur, next) {
		cancel() // another call installed a fresh one first
		if cur = ds.cur.Load(); cur != nil {
			return cur.ctx
		}
		return ctx
	}
	// The replaced context is not cancelled: calls still using it keep
	// their deadline, and its timer releases it then.
	return ctx
}

// opCtx is the context of one Redis call: the caller's values, the shared
// deadline's Deadline, Done and Err. The caller's own cancellation is
// checked before the call starts (admit); during it, the op timeout bounds
// the wait, except where the coalescer watches the caller too. Err is nil
// while Done is open, as context.Context requires.
type opCtx struct {
	context.Context                 // the caller's
	bound           context.Context // shared deadline
}

func (c *opCtx) Deadline() (time.Time, bool) { return c.bound.Deadline() }
func (c *opCtx) Done() <-chan struct{}       { return c.bound.Done() }
func (c *opCtx) Err() error                  { return c.bound.Err() }

// Value answers boundedKey: the call is bounded by the op timeout (see
// boundedReader).
func (c *opCtx) Value(key any) any {
	if key == (boundedKey{}) {
		return true
	}
	return c.Context.Value(key)
}
