package transport

import (
	"context"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"
)

// DoAll sends cmds under the read policy: see DoAllWith.
func (t *Transport) DoAll(ctx context.Context, cmds ...redis.Cmder) error {
	return t.DoAllWith(ctx, Policy{Timeout: t.op}, cmds...)
}

// DoAllWith sends cmds in one pipeline (one round trip per node) within
// pol.Timeout, through the breaker, and answers NOSCRIPT replies by sending
// the script's source. The returned error is non-nil only when Redis could
// not answer (ErrUnavailable), the caller's ctx ended, or the Transport is
// closed; replies, redis.Nil included, are in each cmd.
func (t *Transport) DoAllWith(ctx context.Context, pol Policy, cmds ...redis.Cmder) error {
	if err := t.pipeline(ctx, pol, cmds); err != nil {
		return err
	}
	retry, orig := t.noScript(ctx, cmds)
	if len(retry) == 0 {
		return nil
	}
	if w := waitOf(cmds); w != nil {
		retry = append(retry, w)
	}
	if err := t.pipeline(ctx, pol, retry); err != nil {
		return err
	}
	for i, o := range orig {
		o.SetVal(retry[i].(*redis.Cmd).Val())
		o.SetErr(retry[i].Err())
	}
	return nil
}

// noScript returns an EVAL of its source for each script in cmds that
// Redis did not know (NOSCRIPT), and those commands.
func (t *Transport) noScript(ctx context.Context, cmds []redis.Cmder) (retry []redis.Cmder, orig []*redis.Cmd) {
	for _, c := range cmds {
		if cmd, ok := c.(*redis.Cmd); ok && redis.HasErrorPrefix(cmd.Err(), "NOSCRIPT") {
			args := append([]any(nil), cmd.Args()...)
			args[0], args[1] = "eval", t.sources[args[1].(string)]
			retry = append(retry, redis.NewCmd(ctx, args...))
			orig = append(orig, cmd)
		}
	}
	return retry, orig
}

// waitOf returns the WAIT that closes cmds (see cachemgr's withWait), or
// nil. A script that had to be sent again after NOSCRIPT ran after it, so
// DoAllWith sends it once more behind them.
func waitOf(cmds []redis.Cmder) redis.Cmder {
	if len(cmds) < 2 {
		return nil
	}
	if w, ok := cmds[len(cmds)-1].(*redis.IntCmd); ok && w.Name() == "wait" {
		return w
	}
	return nil
}

// pipeline sends cmds in one round trip per node and records the outcome:
// nil when every command holds Redis' reply.
func (t *Transport) pipeline(ctx context.Context, pol Policy, cmds []redis.Cmder) error {
	if len(cmds) == 1 {
		if err := t.DoWith(ctx, pol, cmds[0]); err != nil && !IsReply(err) {
			return err
		}
		return nil
	}
	if err := t.admit(ctx, pol); err != nil {
		return err
	}
	abandoned, err := t.execPipeline(ctx, pol, cmds)
	if !abandoned {
		err = t.pipelineErr(cmds, err)
	}
	if err := t.record(ctx, pol, err); err != nil {
		return err
	}
	return nil
}

// execPipeline sends cmds within pol.Timeout: on the caller's goroutine
// when the client bounds it (direct, or a read t.bounded diverts), else
// guarded. abandoned reports a guarded call that was still running at the
// deadline: then cmds belong to its goroutine.
func (t *Transport) execPipeline(ctx context.Context, pol Policy, cmds []redis.Cmder) (abandoned bool, err error) {
	callCtx, cancel := context.WithTimeout(ctx, pol.Timeout)
	defer cancel()
	inline := t.direct
	if !inline && t.divertible(ctx, pol) {
		t.bounded.ensure()
		callCtx, inline = &opCtx{Context: ctx, bound: callCtx}, true // diverted
	}
	exec := func() error {
		pipe := t.client.Pipeline()
		for _, c := range cmds {
			_ = pipe.Process(callCtx, c)
		}
		_, err := pipe.Exec(callCtx)
		return err
	}
	if inline {
		return false, exec()
	}
	return t.guardedFn(callCtx, exec)
}

// divertible reports whether t.bounded may run a pipeline under pol on
// the caller's goroutine: a read, whose caller's deadline (if any) comes
// no sooner than the op timeout.
func (t *Transport) divertible(ctx context.Context, pol Policy) bool {
	d, ok := ctx.Deadline()
	return !pol.Write && t.bounded != nil && (!ok || time.Until(d) >= pol.Timeout)
}

// pipelineErr returns the failure to reach Redis that cmds carry, and
// counts their error replies. Exec reports the first failed command; only
// a failure to reach Redis concerns the breaker. An Exec error that no
// command carries (a hook failing the whole pipeline) is a failure too: the
// commands hold no replies.
func (t *Transport) pipelineErr(cmds []redis.Cmder, execErr error) error {
	marked := false
	for _, c := range cmds {
		e := c.Err()
		switch {
		case e == nil || errors.Is(e, redis.Nil):
		case !IsReply(e):
			return e
		default:
			t.countReply(e) // WRONGTYPE, OOM…: Redis is up
		}
		marked = marked || e != nil
	}
	if marked {
		return nil
	}
	return execErr
}
