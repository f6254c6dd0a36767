package cachemgr_test

import (
	"context"
	"errors"
	"math"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cachemgr/cachemgr"
	"github.com/cachemgr/cachemgr/internal/redistest"
	"github.com/redis/go-redis/v9"
)

// defaultClient returns a client of s with go-redis's defaults: socket
// I/O ignores context deadlines, reads time out after 3s, 3 retries.
func defaultClient(t *testing.T, s *redistest.Server) *redis.Client {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: s.Addr()})
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

// countGets is a go-redis hook that counts the GET commands it sees, alone
// or in pipelines.
type countGets struct{ n *atomic.Int64 }

func (h countGets) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h countGets) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if cmd.Name() == "get" {
			h.n.Add(1)
		}
		return next(ctx, cmd)
	}
}

func (h countGets) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, cmd := range cmds {
			if cmd.Name() == "get" {
				h.n.Add(1)
			}
		}
		return next(ctx, cmds)
	}
}

// TestDefaultClientPaused: on a client with go-redis's defaults (3s socket
// timeouts, 3 retries), a Get against a frozen server (SIGSTOP) returns
// ErrUnavailable at about the op timeout, on the caller's goroutine; so
// does a Get whose own deadline is sooner than the op timeout, at that
// deadline. Every call is also bounded from above far below what go-redis
// alone would take (4 attempts of 3s).
func TestDefaultClientPaused(t *testing.T) {
	s := redistest.Start(t)
	redistest.RequireReal(t, s)
	const op = 100 * time.Millisecond
	m, err := cachemgr.New(defaultClient(t, s), testOptions(cachemgr.WithOpTimeout(op), cachemgr.WithBreaker(0, time.Second))...)
	if err != nil {
		t.Fatalf("New() error = %v", err)
	}
	t.Cleanup(func() { m.Close() })
	c := newCache[string](t, m, "paused")
	ctx := context.Background()
	if err := c.Set(ctx, "k", "v"); err != nil {
		t.Fatalf("Set() error = %v", err)
	}
	if v, err := c.Get(ctx, "k"); err != nil || v != "v" {
		t.Fatalf("Get() = %q, %v; want v", v, err)
	}
	s.Pause()
	defer s.Resume()
	// The bound leaves a loaded machine a second of slack and still stays
	// well below one 3s socket timeout of the client.
	const limit = op + time.Second
	for i := range 3 {
		start := time.Now()
		_, err := c.Get(ctx, "k")
		if d := time.Since(start); !errors.Is(err, cachemgr.ErrUnavailable) || d > limit {
			t.Errorf("Get() #%d on a paused server = %v after %v; want ErrUnavailable within %v", i, err, d, limit)
		}
	}
	short, cancel := context.WithTimeout(ctx, op/4)
	defer cancel()
	start := time.Now()
	_, err = c.Get(short, "k")
	if d := time.Since(start); err == nil || d > limit {
		t.Errorf("Get() with a %v deadline on a paused server = %v after %v; want an error within %v", op/4, err, d, limit)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Get() with a %v deadline = %v, want context.DeadlineExceeded", op/4, err)
	}
}

// TestDefaultClientHooks: the Manager's reads on a client with go-redis's
// defaults pass through the client's hooks, those added before New and
// those added after, alone and coalesced.
func TestDefaultClientHooks(t *testing.T) {
	s := redistest.Start(t)
	rdb := defaultClient(t, s)
	var before, after atomic.Int64
	rdb.AddHook(countGets{&before})
	m, err := cachemgr.New(rdb, testOptions()...)
	if err != nil {
		t.Fatalf("New() error = %v", err)
	}
	t.Cleanup(func() { m.Close() })
	c := newCache[string](t, m, "hooks")
	ctx := context.Background()
	if err := c.Set(ctx, "k", "v"); err != nil {
		t.Fatalf("Set() error = %v", err)
	}
	rdb.AddHook(countGets{&after})
	const gets = 50
	done := make(chan error, gets)
	for range gets {
		go func() {
			_, err := c.Get(ctx, "k")
			done <- err
		}()
	}
	for range gets {
		if err := <-done; err != nil {
			t.Fatalf("Get() error = %v", err)
		}
	}
	if b, a := before.Load(), after.Load(); b < gets || a < gets {
		t.Errorf("hooks saw %d GETs (added before New) and %d (after), want at least %d each", b, a, gets)
	}
}

// TestDefaultClientNoGoroutine: a Get hit on a client with go-redis's
// defaults allocates no more than on a client that honours context
// deadlines, where it runs on the caller's goroutine: running it on a
// goroutine of its own, with a channel and a timer, would cost more.
func TestDefaultClientNoGoroutine(t *testing.T) {
	s := redistest.Start(t)
	redistest.RequireReal(t, s) // a miniredis in this process would allocate too
	ctx := context.Background()
	allocs := func(rdb *redis.Client) float64 {
		m, err := cachemgr.New(rdb, testOptions(cachemgr.WithCoalescing(false))...)
		if err != nil {
			t.Fatalf("New() error = %v", err)
		}
		defer m.Close()
		c := newCache[string](t, m, "allocs")
		if err := c.Set(ctx, "k", "v"); err != nil {
			t.Fatalf("Set() error = %v", err)
		}
		// AllocsPerRun counts the whole process's allocations: the least
		// of several rounds is the Get's own, whatever parallel tests do.
		least := math.Inf(1)
		for range 5 {
			least = min(least, testing.AllocsPerRun(100, func() {
				if _, err := c.Get(ctx, "k"); err != nil {
					t.Fatalf("Get() error = %v", err)
				}
			}))
		}
		return least
	}
	direct, def := allocs(s.Client(t)), allocs(defaultClient(t, s))
	if def > direct {
		t.Errorf("Get() allocates %v on a default client, %v on one that honours deadlines; want no more", def, direct)
	}
}
