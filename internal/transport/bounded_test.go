package transport

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/cachemgr/cachemgr/internal/breaker"
	"github.com/redis/go-redis/v9"
)

// countHook counts the commands it sees.
type countHook struct{ n atomic.Int64 }

func (h *countHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *countHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmd)
	}
}
func (h *countHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.n.Add(int64(len(cmds)))
		return next(ctx, cmds)
	}
}

// TestBoundedReader: on a *redis.Client with go-redis's defaults, reads go
// through the client's hooks, also one added after New (the diverter
// moves back innermost), and are answered through the bounded clone;
// writes go guarded. miniredis stands in for the server.
func TestBoundedReader(t *testing.T) {
	mr := miniredis.RunT(t)
	mr.Set("k", "v")
	client := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer client.Close()
	life, stop := context.WithCancel(context.Background())
	r := &rig{fake: newFake(), moves: make(chan bool, 16), life: life, stop: stop}
	tr := New(Config{
		Client: client, OpTimeout: 5 * time.Second, Breaker: breaker.New(0, time.Second, time.Now),
		Coalesce: true, Lifetime: life, Closed: &r.closed, Go: r.spawn, Skipped: &r.skipped, Errors: &r.errs,
	})
	r.t = tr
	defer r.close()
	if tr.Direct() || tr.bounded == nil {
		t.Fatal("a default *redis.Client should get the bounded reader")
	}
	ctx := context.Background()
	get := func() {
		t.Helper()
		cmd := redis.NewStringCmd(ctx, "get", "k")
		if err := tr.Do(ctx, cmd); err != nil || cmd.Val() != "v" {
			t.Fatalf("Do(GET) = %q, %v; want v, nil", cmd.Val(), err)
		}
	}
	get()
	h := &countHook{}
	client.AddHook(h) // now outside the diverter, until the next read moves it
	get()
	if h.n.Load() != 1 {
		t.Errorf("a hook added after New saw %d commands of one read, want 1", h.n.Load())
	}
	gets := redis.NewStringCmd(ctx, "get", "k")
	if err := tr.DoAll(ctx, gets, redis.NewStringCmd(ctx, "get", "none")); err != nil || gets.Val() != "v" {
		t.Errorf("DoAll(GET, GET) = %q, %v; want v, nil", gets.Val(), err)
	}
	if err := tr.DoWith(ctx, Policy{Timeout: time.Second, Write: true}, redis.NewStatusCmd(ctx, "set", "w", "1")); err != nil {
		t.Fatalf("guarded write error = %v", err)
	}
	if v, _ := mr.Get("w"); v != "1" {
		t.Errorf("guarded write stored %q, want 1", v)
	}
}
