package transport

import (
	"context"
	"errors"
	"sync"

	"github.com/redis/go-redis/v9"
)

const (
	// coalesceBatch bounds the commands of one pipeline, so a burst of
	// callers does not wait behind one huge reply.
	coalesceBatch = 128
	// coalescePipelines bounds the round trips the coalescer has in flight.
	// Two measured as fast as one, and a second lets queued commands go
	// out while one round trip is slow.
	coalescePipelines = 2
)

// coalescer pipelines the single commands of concurrent callers.
//
// A caller that finds no round trip in flight and nothing queued sends its
// command itself, on its own goroutine. Otherwise it queues the command and
// waits for its reply or the end of its context, whichever comes first.
// Workers send what is queued, up to coalesceBatch commands a pipeline and
// coalescePipelines round trips at a time (the lone caller's included),
// each under a fresh op timeout. A caller that leaves never touches its
// command again; a command whose caller left before it was sent is dropped.
type coalescer struct {
	t       *Transport
	client  redis.UniversalClient // t.client, or a Reader's
	bounded *boundedReader        // t.bounded for t.client; nil otherwise
	wake    chan struct{}         // a worker should look at the queue

	mu       sync.Mutex
	queue    []*call
	inflight int // round trips in flight, a lone caller's or a worker's
	closed   bool

	calls sync.Pool // *call
}

// call is one queued command: its caller's context, the context of the
// call (the caller's, or an opCtx bounded by the op timeout) and its reply.
// done is buffered, so a worker never waits for a caller that left.
type call struct {
	caller, ctx context.Context
	cmd         redis.Cmder
	done        chan error
}

// gone reports that c's caller left or its op timeout passed.
func (c *call) gone() error {
	if err := c.caller.Err(); err != nil {
		return err
	}
	return c.ctx.Err()
}

// newCoalescer returns a coalescer sending on client, which must bound
// socket I/O by the context deadline or be diverted by bounded, and starts
// its workers.
func newCoalescer(t *Transport, client redis.UniversalClient, bounded *boundedReader) *coalescer {
	co := &coalescer{
		t:       t,
		client:  client,
		bounded: bounded,
		wake:    make(chan struct{}, coalescePipelines),
	}
	for range coalescePipelines {
		t.spawn(co.run)
	}
	return co
}

// process sends cmd within ctx, the call's context (caller's, or an opCtx
// over it that ends at the op timeout only): on the caller's goroutine when
// nothing else is in flight, else in the next pipeline. A queued caller
// leaves when caller or ctx ends. The caller must not touch cmd after such
// an error: a worker may still be writing its reply. A command with a
// []byte argument is written before process returns, so the caller may
// reuse that (see Buffers).
func (co *coalescer) process(caller, ctx context.Context, cmd redis.Cmder) error {
	if hasBytes(cmd) {
		// A write of an encoded value: in direct mode the caller returns
		// the []byte to a pool once this returns, so the command must be
		// written by then. It goes out alone.
		return co.client.Process(ctx, cmd)
	}
	co.mu.Lock()
	if co.closed {
		co.mu.Unlock()
		return ErrClosed
	}
	if co.inflight == 0 && len(co.queue) == 0 {
		co.inflight++
		co.mu.Unlock()
		return co.alone(ctx, cmd)
	}
	c := co.newCall(caller, ctx, cmd)
	co.queue = append(co.queue, c)
	idle := co.inflight < coalescePipelines
	co.mu.Unlock()
	if idle {
		co.signal()
	}
	return co.wait(c)
}

// newCall returns a call, from the pool when one is there, for cmd sent
// within ctx on behalf of caller.
func (co *coalescer) newCall(caller, ctx context.Context, cmd redis.Cmder) *call {
	c, _ := co.calls.Get().(*call)
	if c == nil {
		c = &call{done: make(chan error, 1)}
	}
	c.caller, c.ctx, c.cmd = caller, ctx, cmd
	return c
}

// wait returns the result of the queued call c, which goes back to the
// pool, or the reason the caller left first. An opCtx is Done only at the
// op timeout: the caller's own cancellation is watched too, since nothing
// here needs the caller's goroutine.
func (co *coalescer) wait(c *call) error {
	select {
	case err := <-c.done:
		c.caller, c.ctx, c.cmd = nil, nil, nil
		co.calls.Put(c)
		return err
	case <-c.ctx.Done():
	case <-c.caller.Done():
	}
	// c stays with the worker, which may still send on done.
	return c.gone()
}

// alone sends cmd on the caller's goroutine, holding one of the round
// trips in flight, and wakes a worker for what queued meanwhile.
func (co *coalescer) alone(ctx context.Context, cmd redis.Cmder) error {
	err := co.client.Process(ctx, cmd)
	co.mu.Lock()
	co.inflight--
	queued := len(co.queue) > 0
	co.mu.Unlock()
	if queued {
		co.signal()
	}
	return err
}

// hasBytes reports whether cmd has a []byte argument.
func hasBytes(cmd redis.Cmder) bool {
	for _, a := range cmd.Args() {
		if _, ok := a.([]byte); ok {
			return true
		}
	}
	return false
}

// signal wakes a worker, unless enough are awake already.
func (co *coalescer) signal() {
	select {
	case co.wake <- struct{}{}:
	default:
	}
}

// run is a worker: it sends queued commands until the Transport's
// lifetime ends.
func (co *coalescer) run() {
	batch := make([]*call, 0, coalesceBatch)
	cmds := make([]redis.Cmder, 0, coalesceBatch)
	for {
		select {
		case <-co.wake:
		case <-co.t.life.Done():
			return
		}
		sent := false
		for {
			batch = co.take(batch[:0], sent)
			if len(batch) == 0 {
				break
			}
			sent = true
			cmds = co.exec(batch, cmds[:0])
			clear(batch)
		}
	}
}

// take moves up to coalesceBatch queued commands whose callers still wait
// into batch. done reports that the worker's previous batch has finished.
// An empty result means the worker holds no round trip.
func (co *coalescer) take(batch []*call, done bool) []*call {
	co.mu.Lock()
	defer co.mu.Unlock()
	if done {
		co.inflight--
	}
	for len(batch) == 0 && co.sendable() && !co.closed {
		batch = co.dequeue(batch)
		if len(batch) > 0 {
			co.inflight++
		}
	}
	if co.sendable() {
		co.signal() // room for another pipeline
	}
	return batch
}

// sendable reports whether commands are queued and a pipeline is free for
// them. The caller holds co.mu.
func (co *coalescer) sendable() bool {
	return len(co.queue) > 0 && co.inflight < coalescePipelines
}

// dequeue moves the queue's first commands into batch, up to
// coalesceBatch of them, dropping those whose callers have left. The
// caller holds co.mu.
func (co *coalescer) dequeue(batch []*call) []*call {
	n := 0
	for _, c := range co.queue {
		if len(batch) == coalesceBatch {
			break
		}
		n++
		if c.gone() == nil {
			batch = append(batch, c)
		}
	}
	rest := copy(co.queue, co.queue[n:])
	clear(co.queue[rest:])
	co.queue = co.queue[:rest]
	return batch
}

// exec sends batch as one pipeline and hands each caller its own result.
func (co *coalescer) exec(batch []*call, cmds []redis.Cmder) []redis.Cmder {
	// Not any caller's context: one caller's cancellation must not fail
	// the others. Each caller still leaves at its own deadline.
	ctx := &opCtx{Context: co.t.life, bound: co.t.deadlines.get(co.t.life, co.t.op)}
	if co.bounded != nil {
		co.bounded.ensure()
	}
	for _, c := range batch {
		cmds = append(cmds, c.cmd)
	}
	pipe := co.client.Pipeline()
	_ = pipe.BatchProcess(ctx, cmds...)
	_, perr := pipe.Exec(ctx)
	if errors.Is(perr, redis.Nil) || IsReply(perr) {
		perr = nil // one command's reply, which that command carries
	}
	for _, c := range batch {
		err := c.cmd.Err()
		if err == nil {
			// go-redis marks every command when the round trip fails,
			// but a hook that fails the pipeline may mark none.
			err = perr
		}
		c.done <- err
	}
	clear(cmds)
	return cmds
}

// close fails the queued commands with ErrClosed and refuses new ones. The
// workers exit when the Transport's lifetime ends.
func (co *coalescer) close() {
	co.mu.Lock()
	co.closed = true
	queue := co.queue
	co.queue = nil
	co.mu.Unlock()
	for _, c := range queue {
		c.done <- ErrClosed
	}
}
