// Package transport sends cachemgr's commands to Redis. It owns the rules of
// a call: admission (after Close, behind the circuit breaker), the op
// timeout and how it is enforced on each kind of client (on the caller's
// goroutine, through the bounded clone of a default client, or on a guarded
// goroutine abandoned at the deadline), coalescing of concurrent commands
// into pipelines, pipelines and scripts (a NOSCRIPT reply is answered with
// the script's source), scans of every master, the encode buffers and who
// owns them once a call was abandoned, and how an outcome feeds the breaker
// and the counters.
//
// The layers, innermost first: deadline.go (shared deadlines and the opCtx
// of one call), bounded.go (the hook that diverts a default client's reads
// to a clone with socket timeouts), coalesce.go (concurrent single commands
// share round trips), this file (admission, the path of one command,
// recording the outcome), pipeline.go (pipelines and scripts), reader.go (a
// secondary client, for replica reads), scan.go (per-node commands) and
// buffers.go. The package measures only elapsed time (the real monotonic
// clock, as timers and context deadlines do); it never reads wall time.
//
// The path of one read: Do → DoWith (admit, record) → send (which deadline)
// → inline (bounded reader, coalescer) → client.Process.
package transport

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/cachemgr/cachemgr/internal/breaker"
	"github.com/redis/go-redis/v9"
)

var (
	// ErrClosed reports a call after Close. cachemgr.ErrClosed is this
	// error.
	ErrClosed = errors.New("cachemgr: manager closed")
	// ErrUnavailable reports that Redis could not be used: it failed, timed
	// out, or the circuit breaker is open. cachemgr.ErrUnavailable is this
	// error.
	ErrUnavailable = errors.New("cachemgr: redis unavailable")
)

// errBreakerOpen is wrapped in ErrUnavailable when a call is skipped.
var errBreakerOpen = errors.New("circuit breaker open")

// Policy is how one call goes to Redis.
type Policy struct {
	Timeout time.Duration // bounds the call
	// Write marks a write or invalidation: an open breaker does not stop
	// it (read failures opened it; an invalidation skipped for them would
	// be lost), and its caller retries it within the write timeout.
	Write bool
}

// Config is what New needs. Every field is required unless it says
// otherwise.
type Config struct {
	Client    redis.UniversalClient
	OpTimeout time.Duration
	Breaker   *breaker.Breaker
	Coalesce  bool              // share round trips between concurrent commands
	Sources   map[string]string // script sources by SHA1, for NOSCRIPT

	// Lifetime ends at Close: deadlines derive from it, workers exit with
	// it. Closed is set at Close; from then on calls return ErrClosed. Go
	// runs fn on a goroutine that Close waits for, and reports false, running
	// nothing, once closed.
	Lifetime context.Context
	Closed   *atomic.Bool
	Go       func(fn func()) bool

	// Skipped counts calls the breaker stopped; Errors counts failures to
	// reach Redis and error replies.
	Skipped, Errors *atomic.Uint64
	// OnBreaker is told when this call's outcome opened (open, with the
	// failure) or closed the breaker; OnFailure of each failure to reach
	// Redis. Either may be nil.
	OnBreaker func(ctx context.Context, open bool, err error)
	OnFailure func(ctx context.Context, err error)
}

// Transport sends commands to one client under the rules of the package
// comment. It is safe for concurrent use.
type Transport struct {
	client  redis.UniversalClient
	op      time.Duration
	breaker *breaker.Breaker
	sources map[string]string

	life   context.Context
	closed *atomic.Bool
	spawn  func(func()) bool

	skipped, errors *atomic.Uint64
	onBreaker       func(ctx context.Context, open bool, err error) // nil: none
	onFailure       func(ctx context.Context, err error)            // nil: none

	// direct is true when the client bounds its socket I/O by the context
	// deadline, so a call can run on the caller's goroutine. Otherwise
	// go-redis would wait its own ReadTimeout, with retries, whatever our
	// deadline says.
	direct bool
	// bounded bounds reads on a *redis.Client that is not direct by the op
	// timeout, on the caller's goroutine; nil otherwise.
	bounded   *boundedReader
	co        *coalescer // nil: commands go out one by one
	deadlines deadlines
	// writesHeld: a write failed while the breaker was open.
	writesHeld atomic.Bool
	bufs       Buffers
}

// New returns a Transport over cfg.Client.
func New(cfg Config) *Transport {
	t := &Transport{
		client:  cfg.Client,
		op:      cfg.OpTimeout,
		breaker: cfg.Breaker,
		sources: cfg.Sources,
		life:    cfg.Lifetime,
		closed:  cfg.Closed,
		spawn:   cfg.Go,
		skipped: cfg.Skipped,
		errors:  cfg.Errors,
		direct:  honoursContext(cfg.Client),

		onBreaker: cfg.OnBreaker,
		onFailure: cfg.OnFailure,
	}
	if c, ok := cfg.Client.(*redis.Client); ok && !t.direct {
		t.bounded = newBoundedReader(c, t.op)
	}
	t.bufs.reuse = t.direct
	// A Cluster or Ring client without ContextTimeoutEnabled cannot send
	// on the caller's goroutine: its calls do not coalesce.
	if cfg.Coalesce && (t.direct || t.bounded != nil) {
		t.co = newCoalescer(t, t.client, t.bounded)
	}
	return t
}

// honoursContext reports whether client bounds socket reads and writes by
// the context deadline.
func honoursContext(client redis.UniversalClient) bool {
	switch c := client.(type) {
	case *redis.Client:
		return c.Options().ContextTimeoutEnabled
	case *redis.ClusterClient:
		return c.Options().ContextTimeoutEnabled
	case *redis.Ring:
		return c.Options().ContextTimeoutEnabled
	}
	return false
}

// Direct reports whether calls run on the caller's goroutine, bounded by
// the client itself.
func (t *Transport) Direct() bool { return t.direct }

// BreakerState returns the state of the circuit breaker.
func (t *Transport) BreakerState() breaker.State { return t.breaker.State() }

// Close fails the queued commands with ErrClosed and disables the bounded
// reader's hook. Call it after setting Closed and ending Lifetime.
func (t *Transport) Close() {
	if t.co != nil {
		t.co.close()
	}
	if t.bounded != nil {
		t.bounded.close()
	}
}

// Do sends cmd under the read policy: see DoWith.
func (t *Transport) Do(ctx context.Context, cmd redis.Cmder) error {
	return t.DoWith(ctx, Policy{Timeout: t.op}, cmd)
}

// DoWith sends cmd to Redis within pol.Timeout, through the breaker, and
// records the outcome. The returned error is cmd.Err() (redis.Nil
// included), or ErrUnavailable wrapping the cause when Redis could not
// answer. After an error from ctx or the timeout, the caller must not touch
// cmd: a goroutine may still be writing its reply.
func (t *Transport) DoWith(ctx context.Context, pol Policy, cmd redis.Cmder) error {
	if err := t.admit(ctx, pol); err != nil {
		return err
	}
	return t.record(ctx, pol, t.send(ctx, pol, cmd))
}

// send sends cmd within pol.Timeout, or the caller's deadline when that is
// sooner. A read that the client (direct) or t.bounded can bound runs on
// the caller's goroutine in an opCtx, which shares a deadline with other
// calls and costs no timer.
func (t *Transport) send(ctx context.Context, pol Policy, cmd redis.Cmder) error {
	if d, ok := ctx.Deadline(); ok && time.Until(d) <= pol.Timeout {
		// t.bounded would outlast the caller's deadline: not for it.
		return t.within(ctx, pol, cmd)
	}
	if !pol.Write && (t.direct || t.bounded != nil) {
		return t.inline(ctx, &opCtx{Context: ctx, bound: t.deadlines.get(t.life, pol.Timeout)}, cmd)
	}
	callCtx, cancel := context.WithTimeout(ctx, pol.Timeout)
	err := t.within(callCtx, pol, cmd)
	cancel()
	return err
}

// within sends cmd in ctx, which carries the call's deadline.
func (t *Transport) within(ctx context.Context, pol Policy, cmd redis.Cmder) error {
	switch {
	case !t.direct:
		return t.guarded(ctx, cmd)
	case pol.Write:
		return t.client.Process(ctx, cmd)
	}
	return t.inline(ctx, ctx, cmd)
}

// inline sends a read on the caller's goroutine, or through the coalescer,
// in ctx: caller's own context, or an opCtx over it. Unless the client is
// direct, ctx is an opCtx, which t.bounded diverts.
func (t *Transport) inline(caller, ctx context.Context, cmd redis.Cmder) error {
	if t.bounded != nil {
		t.bounded.ensure()
	}
	if t.co != nil {
		return t.co.process(caller, ctx, cmd)
	}
	return t.client.Process(ctx, cmd)
}

// guarded runs cmd on a tracked goroutine and stops waiting at the
// deadline. go-redis closes a connection whose reply timed out, so a late
// reply is never read as the answer to another command. The caller must
// not touch cmd after an abandoned call: the goroutine may still be
// writing its reply.
func (t *Transport) guarded(ctx context.Context, cmd redis.Cmder) error {
	_, err := t.guardedFn(ctx, func() error { return t.client.Process(ctx, cmd) })
	return err
}

// guardedFn runs fn on a tracked goroutine until ctx ends; abandoned reports
// that it stopped waiting while fn still runs. It returns ErrClosed, and
// runs nothing, after Close.
func (t *Transport) guardedFn(ctx context.Context, fn func() error) (abandoned bool, err error) {
	done := make(chan error, 1)
	if !t.spawn(func() { done <- fn() }) {
		return false, ErrClosed
	}
	select {
	case err := <-done:
		return false, err
	case <-ctx.Done():
		return true, ctx.Err()
	}
}

// admit decides whether a call may go to Redis at all: not after Close,
// not while the breaker is open (a write still goes, until one has failed
// while it was open: then Redis is down for writes too), not for a caller
// that already gave up.
func (t *Transport) admit(ctx context.Context, pol Policy) error {
	switch {
	case t.closed.Load():
		return ErrClosed
	case (!pol.Write || t.writesHeld.Load()) && !t.breaker.Allow():
		t.skipped.Add(1)
		return fmt.Errorf("%w: %w", ErrUnavailable, errBreakerOpen)
	case ctx.Err() != nil:
		return context.Cause(ctx)
	}
	return nil
}

// record feeds the breaker and the counters with the outcome of a call
// made under pol, and returns the error its caller sees. A write that fails
// while the breaker is open holds writes back until a call succeeds again.
func (t *Transport) record(ctx context.Context, pol Policy, err error) error {
	err = t.classify(ctx, err)
	switch {
	case err == nil || IsReply(err):
		if t.writesHeld.Load() {
			t.writesHeld.Store(false)
		}
	case pol.Write && errors.Is(err, ErrUnavailable) && t.breaker.State() != breaker.Closed:
		t.writesHeld.Store(true)
	}
	return err
}

// classify records err (nil: success) and returns it as its caller sees
// it. A caller that gave up is neither a success nor a failure of Redis.
func (t *Transport) classify(ctx context.Context, err error) error {
	switch {
	case err == nil || errors.Is(err, redis.Nil):
		t.success(ctx)
		return err
	case errors.Is(err, ErrClosed) || t.closed.Load():
		// Calls cut short by Close say nothing about Redis.
		return ErrClosed
	case IsReply(err):
		// Redis answered (WRONGTYPE, OOM, NOSCRIPT…): it is up.
		t.success(ctx)
		t.countReply(err)
		return err
	case ctx.Err() != nil:
		// The caller gave up: its error, not Redis'.
		return context.Cause(ctx)
	}
	return t.failure(ctx, err)
}

// countReply counts error reply err as an error, unless it is NOSCRIPT,
// which is routine: DoAll answers it by sending the source.
func (t *Transport) countReply(err error) {
	if !redis.HasErrorPrefix(err, "NOSCRIPT") {
		t.errors.Add(1)
	}
}

// failure records a call that did not reach Redis, reports the breaker's
// opening and the failure, and returns err as ErrUnavailable.
func (t *Transport) failure(ctx context.Context, err error) error {
	if t.breaker.State() != breaker.Open && t.breaker.Failed(err, t.op) && t.onBreaker != nil {
		t.onBreaker(ctx, true, err)
	}
	t.errors.Add(1)
	if t.onFailure != nil {
		t.onFailure(ctx, err)
	}
	return fmt.Errorf("%w: %w", ErrUnavailable, err)
}

// success records a call that reached Redis and reports the breaker's
// closing.
func (t *Transport) success(ctx context.Context) {
	if t.breaker.Success() && t.onBreaker != nil {
		t.onBreaker(ctx, false, nil)
	}
}

// IsReply reports whether err is an error reply from Redis (WRONGTYPE,
// OOM, NOSCRIPT, redis.Nil…) rather than a failure to reach it.
func IsReply(err error) bool {
	var rerr redis.Error
	return errors.As(err, &rerr)
}
