package cachemgr_test

// Fault tests: loaders that fail, panic or hang, and callers that cancel
// (docs/reliability.md, groups A and F).

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cachemgr/cachemgr"
	"github.com/cachemgr/cachemgr/internal/redistest"
	"go.uber.org/goleak"
)

// TestReliabilityLoaderFailsRedisDown (scenario 11): with Redis down and
// no stale copy, a loader error reaches the caller (errors.Is works on
// it) and is not cached: the next Fetch calls the loader again.
func TestReliabilityLoaderFailsRedisDown(t *testing.T) {
	noLeaks(t)
	s := redistest.Start(t)
	m, _ := newManager(t, s, cachemgr.WithOpTimeout(50*time.Millisecond))
	c := newCache[relItem](t, m, "loaderr")
	ctx := context.Background()
	s.Kill()
	boom := errors.New("database down too")
	for i := range 3 {
		_, err := c.Fetch(ctx, "k", func(context.Context) (relItem, error) { return relItem{}, boom })
		if !errors.Is(err, boom) {
			t.Fatalf("Fetch #%d with Redis and loader down = %v, want the loader's error", i, err)
		}
		if i == 0 {
			t.Logf("Fetch error with Redis and loader down: %v (wraps ErrUnavailable: %v)", err, errors.Is(err, cachemgr.ErrUnavailable))
		}
	}
	if st := m.Stats(); st.Loads != 3 || st.LoadErrors != 3 {
		t.Errorf("Stats() = %+v, want 3 loads and 3 load errors (errors not cached)", st)
	}
	s.Restart()
	waitFor(t, "a Fetch to reach Redis again", func() bool {
		v, err := c.Fetch(ctx, "k", func(context.Context) (relItem, error) { return relItem{Key: "k"}, nil })
		return err == nil && v.Key == "k" && m.Stats().Breaker == "closed"
	})
}

// TestReliabilityCancelMidFetch (scenarios 56, 57, 59): callers cancel at
// every stage of a Fetch (before it, during the Redis lookup, while
// waiting on the shared load, the caller that started the load). Each
// returns its ctx error at once; the others get the value; the load runs
// once; and when it ends no goroutine is left behind, with the Manager
// still open, and no lease or other stray key is left in Redis.
func TestReliabilityCancelMidFetch(t *testing.T) {
	s := redistest.Start(t)
	ctx := context.Background()
	m, rdb := newManager(t, s)
	c := newCache[relItem](t, m, "cancel")
	// Warm the pool and the Manager so the baseline holds what stays.
	if _, err := c.Fetch(ctx, "warm", func(context.Context) (relItem, error) { return relItem{Key: "warm"}, nil }); err != nil {
		t.Fatalf("Fetch(warm) error = %v", err)
	}
	baseline := goleak.IgnoreCurrent()

	release := make(chan struct{})
	var loads atomic.Int32
	load := func(ctx context.Context) (relItem, error) {
		loads.Add(1)
		select {
		case <-release:
			return relItem{Key: "k"}, nil
		case <-ctx.Done():
			return relItem{}, ctx.Err()
		}
	}
	type result struct {
		v    relItem
		err  error
		took time.Duration
	}
	run := func(cctx context.Context) <-chan result {
		ch := make(chan result, 1)
		go func() {
			start := time.Now()
			v, err := c.Fetch(cctx, "k", load)
			ch <- result{v, err, time.Since(start)}
		}()
		return ch
	}
	leaderCtx, cancelLeader := context.WithCancel(ctx)
	leader := run(leaderCtx)
	waitFor(t, "the load to start", func() bool { return loads.Load() == 1 })

	// Each caller's ctx ends at another moment: before its Fetch, during
	// its Redis calls, or while it waits on the shared load.
	var cancelled []<-chan result
	var cancels []context.CancelFunc
	for i := range 20 {
		cctx, cancel := context.WithTimeout(ctx, time.Duration(i)*time.Millisecond)
		cancels = append(cancels, cancel)
		cancelled = append(cancelled, run(cctx))
	}
	defer func() {
		for _, cancel := range cancels {
			cancel()
		}
	}()
	live := run(ctx)
	cancelLeader()
	for i, ch := range append(cancelled, leader) {
		r := <-ch
		if !errors.Is(r.err, context.Canceled) && !errors.Is(r.err, context.DeadlineExceeded) {
			t.Errorf("cancelled caller %d: Fetch = %+v, %v; want its ctx error", i, r.v, r.err)
		}
		if r.took > 20*time.Millisecond+2*time.Second {
			t.Errorf("cancelled caller %d returned after %v, want at once", i, r.took)
		}
	}
	close(release)
	if r := <-live; r.err != nil || r.v.Key != "k" {
		t.Errorf("live caller: Fetch = %+v, %v; want the loaded value", r.v, r.err)
	}
	if n := loads.Load(); n != 1 {
		t.Errorf("loader calls = %d, want 1", n)
	}
	goleak.VerifyNone(t, baseline)
	// The values and their invalidation markers stay; nothing else, such
	// as a lease, may.
	var stray []string
	for _, k := range rdb.Keys(ctx, "*").Val() {
		switch strings.TrimSuffix(k, ":i") {
		case "test:cancel:{=k}", "test:cancel:{=warm}":
		default:
			stray = append(stray, k)
		}
	}
	if len(stray) > 0 {
		t.Errorf("keys left after the cancelled Fetches: %q, want only the values and their markers", stray)
	}
}

// TestReliabilityLoaderPanicsRedisDown (scenario 58): a loader that panics
// while Redis is down (the fail-open path) reaches every waiter as
// ErrLoaderPanic, and the next Fetch loads again.
func TestReliabilityLoaderPanicsRedisDown(t *testing.T) {
	noLeaks(t)
	s := redistest.Start(t)
	m, _ := newManager(t, s, cachemgr.WithOpTimeout(50*time.Millisecond))
	c := newCache[relItem](t, m, "panic")
	s.Kill()
	release := make(chan struct{})
	var loads atomic.Int32
	errs := make(chan error, 10)
	for range 10 {
		go func() {
			_, err := c.Fetch(context.Background(), "k", func(context.Context) (relItem, error) {
				loads.Add(1)
				<-release
				panic("loader bug")
			})
			errs <- err
		}()
	}
	waitFor(t, "the loader to start", func() bool { return loads.Load() > 0 })
	close(release)
	for range 10 {
		if err := <-errs; !errors.Is(err, cachemgr.ErrLoaderPanic) {
			t.Errorf("Fetch() with Redis down and a panicking loader = %v, want ErrLoaderPanic", err)
		}
	}
	v, err := c.Fetch(context.Background(), "k", func(context.Context) (relItem, error) { return relItem{Key: "k"}, nil })
	if err != nil || v.Key != "k" {
		t.Errorf("Fetch() after the panic = %+v, %v; want a new load", v, err)
	}
}

// TestReliabilityLoaderHangs (scenario 58): the load timeout cuts a
// loader that honours its ctx, and the error reaches every waiter; a
// loader that ignores its ctx is waited for by callers without a deadline
// (its late result is returned, as WithLoadTimeout documents, but not
// cached), while callers with a deadline leave at it.
func TestReliabilityLoaderHangs(t *testing.T) {
	noLeaks(t)
	const loadTimeout, op = 150 * time.Millisecond, 500 * time.Millisecond
	s := redistest.Start(t)
	m, _ := newManager(t, s, cachemgr.WithLoadTimeout(loadTimeout), cachemgr.WithOpTimeout(op), cachemgr.WithWriteTimeout(op))
	c := newCache[relItem](t, m, "hang")
	ctx := context.Background()

	t.Run("loader honours ctx", func(t *testing.T) {
		var wg sync.WaitGroup
		for range 5 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				start := time.Now()
				_, err := c.Fetch(ctx, "honours", func(ctx context.Context) (relItem, error) {
					<-ctx.Done()
					return relItem{}, ctx.Err()
				})
				if took := time.Since(start); !errors.Is(err, context.DeadlineExceeded) || took > loadTimeout+2*time.Second {
					t.Errorf("Fetch() with a hung loader = %v after %v, want DeadlineExceeded after the %v load timeout", err, took, loadTimeout)
				}
			}()
		}
		wg.Wait()
		v, err := c.Fetch(ctx, "honours", func(context.Context) (relItem, error) { return relItem{Key: "honours"}, nil })
		if err != nil || v.Key != "honours" {
			t.Errorf("Fetch() after the timed-out load = %+v, %v; want a new load", v, err)
		}
	})
	t.Run("loader ignores ctx", func(t *testing.T) {
		release := make(chan struct{})
		started := make(chan struct{})
		load := func(context.Context) (relItem, error) {
			close(started)
			<-release
			return relItem{Key: "ignores"}, nil
		}
		patient := make(chan error, 1)
		go func() {
			v, err := c.Fetch(ctx, "ignores", load)
			if err == nil && v.Key != "ignores" {
				err = fmt.Errorf("got %+v", v)
			}
			patient <- err
		}()
		<-started
		dctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		defer cancel()
		start := time.Now()
		if _, err := c.Fetch(dctx, "ignores", load); !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > time.Second {
			t.Errorf("Fetch() with a deadline, loader hung = %v after %v; want DeadlineExceeded at the deadline", err, time.Since(start))
		}
		waitFor(t, "the load to outlive its timeout and write-back window", func() bool {
			// A write-back is allowed until the load timeout plus an op
			// timeout after the claim.
			return time.Since(start) > loadTimeout+op+300*time.Millisecond
		})
		close(release)
		if err := <-patient; err != nil {
			t.Errorf("Fetch() without a deadline = %v, want the late value", err)
		}
		if v, err := c.Get(ctx, "ignores"); !errors.Is(err, cachemgr.ErrMiss) {
			t.Errorf("Get() after a load that outlived its timeout = %+v, %v; want ErrMiss (late results are not cached)", v, err)
		}
	})
}
