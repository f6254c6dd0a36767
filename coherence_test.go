package cachemgr_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cachemgr/cachemgr"
	"github.com/cachemgr/cachemgr/internal/faultproxy"
	"github.com/cachemgr/cachemgr/internal/redistest"
	"github.com/redis/go-redis/v9"
)

// fetchResult is what a Fetch on another goroutine returned.
type fetchResult struct {
	v   int64
	err error
}

// TestBumpElsewhereThenJoin: process B is loading key x of a versioned
// cache when process A changes the source and Bumps. A Fetch of x that B
// begins after the Bump returned must not take the result of the load that
// began before it, although it joins that load in B.
func TestBumpElsewhereThenJoin(t *testing.T) {
	redistest.Each(t, func(t *testing.T, s *redistest.Server) {
		ctx := context.Background()
		a, _ := newManager(t, s)
		b, _ := newManager(t, s)
		ca := newCache[int64](t, a, "hole1", cachemgr.WithVersioned(true))
		cb := newCache[int64](t, b, "hole1", cachemgr.WithVersioned(true))
		var db atomic.Int64
		db.Store(1)

		entered, release := make(chan struct{}), make(chan struct{})
		first := make(chan fetchResult, 1)
		go func() {
			v, err := cb.Fetch(ctx, "x", func(context.Context) (int64, error) {
				v := db.Load()
				close(entered)
				<-release
				return v, nil
			})
			first <- fetchResult{v, err}
		}()
		<-entered
		db.Store(2)
		if err := ca.Bump(ctx); err != nil {
			t.Fatalf("Bump() error = %v", err)
		}
		// B's second Fetch begins now, after the Bump returned, and joins
		// the load in flight.
		second := make(chan fetchResult, 1)
		go func() {
			v, err := cb.Fetch(ctx, "x", func(context.Context) (int64, error) { return db.Load(), nil })
			second <- fetchResult{v, err}
		}()
		waitFor(t, "the second Fetch to join the load", func() bool { return b.Stats().Joins == 1 })
		close(release)
		if r := <-first; r.err != nil || r.v != 1 {
			t.Errorf("first Fetch() = %d, %v; want 1 (it began before the Bump)", r.v, r.err)
		}
		if r := <-second; r.err != nil || r.v != 2 {
			t.Errorf("Fetch() begun after Bump returned = %d, %v; want 2", r.v, r.err)
		}
		if v, err := cb.Get(ctx, "x"); err == nil && v != 2 {
			t.Errorf("Get() after the Bump = %d, want 2 or a miss", v)
		}
	})
}

// TestL1LateFill: B reads a key from Redis; A's Set of it, and its event,
// reach B while B's reply is still on its way. B must not fill its L1 tier
// with the value it read: that would serve the retired value for the whole
// L1 TTL although no event was lost.
func TestL1LateFill(t *testing.T) {
	for _, tt := range []struct {
		name       string
		invalidate func(ctx context.Context, m *cachemgr.Manager, c *cachemgr.Cache[string]) error
	}{
		{"set", func(ctx context.Context, _ *cachemgr.Manager, c *cachemgr.Cache[string]) error {
			return c.Set(ctx, "late", "new")
		}},
		{"delete", func(ctx context.Context, _ *cachemgr.Manager, c *cachemgr.Cache[string]) error {
			return c.Delete(ctx, "late")
		}},
		{"tags", func(ctx context.Context, m *cachemgr.Manager, _ *cachemgr.Cache[string]) error {
			return m.InvalidateTags(ctx, "t")
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			s := redistest.Start(t)
			a, _ := newManager(t, s, cachemgr.WithL1(100), cachemgr.WithL1TTL(time.Hour))
			rdb := s.Client(t)
			hold := redistest.NewHoldGet("late")
			rdb.AddHook(hold)
			b, err := cachemgr.New(rdb, testOptions(cachemgr.WithL1(100), cachemgr.WithL1TTL(time.Hour), cachemgr.WithCoalescing(false))...)
			if err != nil {
				t.Fatalf("New() error = %v", err)
			}
			t.Cleanup(func() { b.Close() })
			ca, cb := newCache[string](t, a, "p"), newCache[string](t, b, "p")
			waitSubscribed(t, ca)
			waitSubscribed(t, cb)

			events := b.Stats().EventsReceived
			if err := ca.Set(ctx, "late", "old", cachemgr.Tags("t")); err != nil {
				t.Fatalf("Set(old) error = %v", err)
			}
			waitFor(t, "B to receive the first Set's event", func() bool { return b.Stats().EventsReceived > events })

			// B's GET gets its reply, "old", and does not use it yet.
			read := hold.Read(func() string { v, _ := cb.Get(ctx, "late"); return v })
			events = b.Stats().EventsReceived
			if err := tt.invalidate(ctx, a, ca); err != nil {
				t.Fatalf("invalidate error = %v", err)
			}
			waitFor(t, "B to receive the invalidation's event", func() bool { return b.Stats().EventsReceived > events })
			close(hold.Release)
			// The read began before the invalidation: the old value, or a
			// miss (a tag check after the read sees the new stamp), is right.
			if v := <-read; v != "old" && v != "" {
				t.Fatalf("Get() begun before the invalidation = %q, want old or a miss", v)
			}
			if v, err := cb.Get(ctx, "late"); v == "old" {
				t.Errorf("Get() after the invalidation's event arrived = %q, %v; want anything but old", v, err)
			}
		})
	}
}

// TestL1SilentSubscription: B's connections to Redis go silent without
// being closed (a stalled proxy). B must stop serving its L1 tier within
// the liveness bound, although its subscription never reported an error,
// and flush it once a new subscription is up: an invalidation sent while
// it was deaf is not served afterwards.
func TestL1SilentSubscription(t *testing.T) {
	ctx := context.Background()
	s := redistest.Start(t)
	p := faultproxy.New(t, s.Addr())
	const liveness = 200 * time.Millisecond
	a, _ := newManager(t, s, cachemgr.WithL1(100), cachemgr.WithL1TTL(time.Hour))
	b, err := cachemgr.New(s.ClientWith(t, func(o *redis.Options) { o.Addr = p.Addr() }),
		testOptions(cachemgr.WithL1(100), cachemgr.WithL1TTL(time.Hour), cachemgr.WithEventsLiveness(liveness), cachemgr.WithOpTimeout(liveness))...)
	if err != nil {
		t.Fatalf("New() error = %v", err)
	}
	t.Cleanup(func() { b.Close() })
	ca, cb := newCache[string](t, a, "p"), newCache[string](t, b, "p")
	waitSubscribed(t, ca)
	waitSubscribed(t, cb)
	if err := ca.Set(ctx, "k", "old"); err != nil {
		t.Fatalf("Set(old) error = %v", err)
	}
	waitFor(t, "B to serve old from its L1", func() bool {
		cb.Get(ctx, "k")
		v, ok := l1Hit(cb, "k")
		return ok && v == "old"
	})

	p.Blackhole(true)
	stalled := time.Now()
	if err := ca.Set(ctx, "k", "new"); err != nil {
		t.Fatalf("Set(new) error = %v", err)
	}
	waitFor(t, "B to stop serving its L1", func() bool {
		_, ok := l1Hit(cb, "k")
		return !ok
	})
	took := time.Since(stalled)
	t.Logf("B stopped serving its L1 %v after its connections went silent (liveness %v)", took, liveness)
	// The bound is what the option promises; the slack is what a loaded
	// machine adds to the listener's wake-ups, and stays far below the L1
	// TTL (an hour) that the test would otherwise see.
	if limit := liveness + 2*time.Second; took > limit {
		t.Errorf("L1 served for %v after the subscription went silent, want <= %v", took, limit)
	}
	if st := b.Stats(); st.LivenessLost == 0 {
		t.Errorf("Stats().LivenessLost = 0 after a silent subscription: %+v", st)
	}

	p.Blackhole(false)
	p.CutAll() // the stalled connections are useless: start afresh
	waitFor(t, "B to read the new value", func() bool {
		v, err := cb.Get(ctx, "k")
		return err == nil && v == "new"
	})
	if v, ok := l1Hit(cb, "k"); ok && v == "old" {
		t.Errorf("B's L1 serves old after the subscription came back")
	}
}

// onScan is a go-redis hook that calls fn once, before the first SCAN is
// sent.
type onScan struct {
	once sync.Once
	fn   func()
}

func (h *onScan) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *onScan) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if cmd.Name() == "scan" {
			h.once.Do(h.fn)
		}
		return next(ctx, cmd)
	}
}

func (h *onScan) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// TestL1OwnInvalidatePrefix: in the process that calls InvalidatePrefix, a
// read that begins after InvalidatePrefix dropped its L1 entries, and reads
// a key before the scan deletes it, must not fill the L1 with it once
// InvalidatePrefix has returned.
func TestL1OwnInvalidatePrefix(t *testing.T) {
	ctx := context.Background()
	s := redistest.Start(t)
	rdb := s.Client(t)
	hold := redistest.NewHoldGet("p:g")
	scan := &onScan{}
	rdb.AddHook(hold)
	rdb.AddHook(scan)
	m, err := cachemgr.New(rdb, testOptions(cachemgr.WithL1(100), cachemgr.WithL1TTL(time.Hour), cachemgr.WithCoalescing(false))...)
	if err != nil {
		t.Fatalf("New() error = %v", err)
	}
	t.Cleanup(func() { m.Close() })
	c := newCache[string](t, m, "own")
	waitSubscribed(t, c)
	if err := c.Set(ctx, "p:g", "old"); err != nil {
		t.Fatalf("Set() error = %v", err)
	}
	var read <-chan string
	scan.fn = func() {
		// InvalidatePrefix has dropped its L1 entries and is about to scan:
		// a read begins now and gets its reply before the key is deleted.
		read = hold.Read(func() string { v, _ := c.Get(ctx, "p:g"); return v })
	}
	if n, err := c.InvalidatePrefix(ctx, "p:"); err != nil || n != 1 {
		t.Fatalf("InvalidatePrefix() = %d, %v; want 1", n, err)
	}
	close(hold.Release)
	if v := <-read; v != "old" {
		t.Fatalf("Get() begun before InvalidatePrefix returned = %q, want old", v)
	}
	if v, err := c.Get(ctx, "p:g"); v == "old" {
		t.Errorf("Get() after InvalidatePrefix returned = %q, %v; want a miss", v, err)
	}
}
