package transport

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// boundedReader gives a *redis.Client whose sockets ignore context
// deadlines (go-redis's default) a fast path for reads. Reads go to the
// client as usual, in an opCtx, so every hook of the client sees them; the
// innermost hook, a diverter, hands them to a clone made with
// Client.WithTimeout, which shares the client's connection pool, times its
// socket reads and writes out at the op timeout, carries no hooks and
// makes one attempt (a retry would get a fresh op timeout). Reads then run
// on the caller's goroutine instead of one each. The trade-offs: a read
// whose caller's deadline is sooner than the op timeout cannot use the
// clone (DoWith sends it down the guarded path); a read that fails once is
// not retried; and the client's other callers pay one context lookup per
// command in the diverter.
//
// go-redis calls every hook's DialHook whenever it rebuilds a hook chain
// (AddHook). The diverter counts those calls and wraps no dial; a count
// that moved means a hook was added inside it, so the next read disables
// it (a disabled diverter wraps nothing from the next rebuild on) and adds
// a fresh one, innermost again.
type boundedReader struct {
	client *redis.Client
	clone  *redis.Client
	mu     sync.Mutex // serializes installs
	cur    atomic.Pointer[diverter]
}

func newBoundedReader(client *redis.Client, op time.Duration) *boundedReader {
	clone := client.WithTimeout(op)
	// Options returns the clone's own copy, read at every call: one
	// attempt.
	clone.Options().MaxRetries = 0
	b := &boundedReader{client: client, clone: clone}
	b.install()
	return b
}

// ensure makes sure the diverter is the client's innermost hook. Call it
// before a read.
func (b *boundedReader) ensure() {
	if d := b.cur.Load(); d.gen.Load() != d.seen {
		b.mu.Lock()
		defer b.mu.Unlock()
		if d := b.cur.Load(); d.gen.Load() != d.seen {
			b.install()
		}
	}
}

// install disables the current diverter and adds a fresh one, innermost.
// The caller holds b.mu, or b is not shared yet.
func (b *boundedReader) install() {
	if d := b.cur.Load(); d != nil {
		d.active.Store(false)
	}
	d := &diverter{clone: b.clone}
	d.active.Store(true)
	b.client.AddHook(d)
	d.seen = d.gen.Load()
	b.cur.Store(d)
}

// close disables the diverter: from the client's next hook rebuild on, it
// wraps nothing.
func (b *boundedReader) close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.cur.Load().active.Store(false)
}

// diverter is the go-redis hook that hands reads in an opCtx to the
// bounded clone.
type diverter struct {
	clone  *redis.Client
	gen    atomic.Int64 // hook chains rebuilt with it
	seen   int64        // gen when it became the innermost hook
	active atomic.Bool
}

func (d *diverter) DialHook(redis.DialHook) redis.DialHook {
	d.gen.Add(1)
	return nil
}

func (d *diverter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	if !d.active.Load() {
		return nil
	}
	return func(ctx context.Context, cmd redis.Cmder) error {
		if bounded(ctx) {
			return d.clone.Process(ctx, cmd)
		}
		return next(ctx, cmd)
	}
}

func (d *diverter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	if !d.active.Load() {
		return nil
	}
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if !bounded(ctx) {
			return next(ctx, cmds)
		}
		pipe := d.clone.Pipeline()
		for _, c := range cmds {
			_ = pipe.Process(ctx, c)
		}
		_, err := pipe.Exec(ctx)
		return err
	}
}

// boundedKey is the context key under which an opCtx answers true: hooks
// outside the diverter may wrap the opCtx.
type boundedKey struct{}

// bounded reports whether ctx is, or wraps, an opCtx.
func bounded(ctx context.Context) bool {
	if _, ok := ctx.(*opCtx); ok {
		return true
	}
	return ctx.Value(boundedKey{}) != nil
}
