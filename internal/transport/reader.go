package transport

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"
)

// Reader sends reads to a secondary client (replicas of the Transport's
// master) within the op timeout. It does not go through the Transport's
// breaker or record outcomes: its user keeps a breaker of its own and asks
// the master when the secondary fails.
type Reader struct {
	t      *Transport
	client redis.UniversalClient
	direct bool       // client bounds socket I/O by the context
	co     *coalescer // nil: each read goes out on its own
}

// Reader returns a Reader of client. Its reads share pipelines, as the
// master's do, when the Transport coalesces and client bounds socket I/O
// by the context deadline.
func (t *Transport) Reader(client redis.UniversalClient) *Reader {
	r := &Reader{t: t, client: client, direct: honoursContext(client)}
	if t.co != nil && r.direct {
		r.co = newCoalescer(t, client, nil)
	}
	return r
}

// Do sends cmd, which carries no []byte argument, to the secondary client
// within the op timeout, and returns cmd's error or the failure. After an
// error from ctx or the timeout, the caller must not touch cmd.
func (r *Reader) Do(ctx context.Context, cmd redis.Cmder) error {
	t := r.t
	if t.closed.Load() {
		return ErrClosed
	}
	caller := ctx
	if !r.direct {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, t.op)
		defer cancel()
	} else if d, ok := ctx.Deadline(); !ok || time.Until(d) > t.op {
		// As the master's reads: a deadline shared with other calls, no
		// timer of its own.
		ctx = &opCtx{Context: ctx, bound: t.deadlines.get(t.life, t.op)}
	}
	switch {
	case r.co != nil:
		return r.co.process(caller, ctx, cmd)
	case r.direct:
		return r.client.Process(ctx, cmd)
	}
	_, err := t.guardedFn(ctx, func() error { return r.client.Process(ctx, cmd) })
	return err
}

// Close fails the reads queued for the secondary with ErrClosed.
func (r *Reader) Close() {
	if r.co != nil {
		r.co.close()
	}
}
