package cachemgr_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cachemgr/cachemgr"
	"github.com/cachemgr/cachemgr/internal/redistest"
)

func TestFetchCachesLoadedValue(t *testing.T) {
	redistest.Each(t, func(t *testing.T, s *redistest.Server) {
		ctx := context.Background()
		m, _ := newManager(t, s)
		c := newCache[Product](t, m, "p")
		var loads atomic.Int32
		load := func(context.Context) (Product, error) {
			loads.Add(1)
			return sampleProduct(3), nil
		}
		for i := 0; i < 3; i++ {
			got, err := c.Fetch(ctx, "3", load)
			if err != nil || !equalProduct(got, sampleProduct(3)) {
				t.Fatalf("Fetch() #%d = %+v, %v", i, got, err)
			}
		}
		if n := loads.Load(); n != 1 {
			t.Errorf("loader calls = %d, want 1", n)
		}
		if got, err := c.Get(ctx, "3"); err != nil || got.ID != 3 {
			t.Errorf("Get after Fetch = %+v, %v", got, err)
		}
		if st := m.Stats(); st.Loads != 1 || st.Hits != 3 || st.Misses != 1 {
			t.Errorf("Stats() = %+v, want 1 load, 3 hits, 1 miss", st)
		}
	})
}

// TestFetchStampede proves guarantee 1 in one process: 1000 concurrent
// misses of one key call the loader once.
func TestFetchStampede(t *testing.T) {
	redistest.Each(t, func(t *testing.T, s *redistest.Server) {
		m, _ := newManager(t, s, cachemgr.WithOpTimeout(time.Second))
		c := newCache[Product](t, m, "p")
		var loads atomic.Int32
		release := make(chan struct{})
		load := func(context.Context) (Product, error) {
			loads.Add(1)
			<-release
			return sampleProduct(9), nil
		}
		const n = 1000
		var wg sync.WaitGroup
		var started sync.WaitGroup
		errs := make(chan error, n)
		for i := 0; i < n; i++ {
			wg.Add(1)
			started.Add(1)
			go func() {
				defer wg.Done()
				started.Done()
				p, err := c.Fetch(context.Background(), "9", load)
				if err == nil && p.ID != 9 {
					err = fmt.Errorf("got product %d", p.ID)
				}
				errs <- err
			}()
		}
		started.Wait()
		waitFor(t, "the loader to start", func() bool { return loads.Load() > 0 })
		close(release)
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatalf("Fetch() error = %v", err)
			}
		}
		if got := loads.Load(); got != 1 {
			t.Errorf("loader calls = %d for %d concurrent Fetches, want 1", got, n)
		}
	})
}

func TestFetchWaitersGetPrivateCopies(t *testing.T) {
	m, _ := newManager(t, redistest.StartMini(t))
	c := newCache[Product](t, m, "p")
	release := make(chan struct{})
	var loads atomic.Int32
	load := func(context.Context) (Product, error) {
		loads.Add(1)
		<-release
		return sampleProduct(1), nil
	}
	results := make(chan Product, 8)
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p, _ := c.Fetch(context.Background(), "1", load)
			results <- p
		}()
	}
	waitFor(t, "the loader to start", func() bool { return loads.Load() > 0 })
	close(release)
	wg.Wait()
	close(results)
	var all []Product
	for p := range results {
		p.Tags[0] = "mutated" // a caller mutating its value must not affect others
		all = append(all, p)
	}
	for _, p := range all {
		if p.Tags[0] != "mutated" {
			t.Fatalf("value shared between callers")
		}
	}
	if loads.Load() == 1 && &all[0].Tags[0] == &all[1].Tags[0] {
		t.Errorf("two callers share one Tags slice")
	}
}

func TestFetchNegativeCaching(t *testing.T) {
	redistest.Each(t, func(t *testing.T, s *redistest.Server) {
		ctx := context.Background()
		m, rdb := newManager(t, s)
		c := newCache[Product](t, m, "p", cachemgr.WithNegativeTTL(30*time.Second))
		var loads atomic.Int32
		load := func(context.Context) (Product, error) {
			loads.Add(1)
			return Product{}, fmt.Errorf("product 404: %w", cachemgr.ErrNotFound)
		}
		for i := 0; i < 3; i++ {
			if _, err := c.Fetch(ctx, "404", load); !errors.Is(err, cachemgr.ErrNotFound) {
				t.Fatalf("Fetch(absent) error = %v, want ErrNotFound", err)
			}
		}
		if n := loads.Load(); n != 1 {
			t.Errorf("loader calls = %d, want 1 (negative entry cached)", n)
		}
		if _, err := c.Get(ctx, "404"); !errors.Is(err, cachemgr.ErrNotFound) {
			t.Errorf("Get(negative) error = %v, want ErrNotFound", err)
		}
		ttl := rdb.PTTL(ctx, "test:p:{=404}").Val()
		if ttl <= 0 || ttl > 33*time.Second {
			t.Errorf("negative entry PTTL = %v, want about 30s", ttl)
		}
		if st := m.Stats(); st.NegativeHits != 3 || st.LoadErrors != 0 {
			t.Errorf("Stats() = %+v, want 3 negative hits and no load errors", st)
		}
		off := newCache[Product](t, m, "off", cachemgr.WithNegativeTTL(0))
		for i := 0; i < 2; i++ {
			if _, err := off.Fetch(ctx, "404", load); !errors.Is(err, cachemgr.ErrNotFound) {
				t.Fatalf("Fetch(negative caching off) error = %v", err)
			}
		}
		if n := loads.Load(); n != 3 {
			t.Errorf("loader calls with negative caching off = %d, want 3", n)
		}
	})
}

func TestFetchLoaderErrorNotCached(t *testing.T) {
	m, rdb := newManager(t, redistest.StartMini(t))
	c := newCache[int](t, m, "n")
	ctx := context.Background()
	boom := errors.New("database down")
	if _, err := c.Fetch(ctx, "k", func(context.Context) (int, error) { return 0, boom }); !errors.Is(err, boom) {
		t.Fatalf("Fetch() error = %v, want %v", err, boom)
	}
	if n := rdb.Exists(ctx, "test:n:{=k}").Val(); n != 0 {
		t.Errorf("value key exists after loader error")
	}
	if got, err := c.Fetch(ctx, "k", func(context.Context) (int, error) { return 5, nil }); got != 5 || err != nil {
		t.Errorf("Fetch() after error = %d, %v; want 5", got, err)
	}
	if st := m.Stats(); st.LoadErrors != 1 || st.Loads != 2 {
		t.Errorf("Stats() = %+v, want 2 loads, 1 load error", st)
	}
}

func TestFetchLoaderPanic(t *testing.T) {
	m, _ := newManager(t, redistest.StartMini(t))
	c := newCache[int](t, m, "panic")
	release := make(chan struct{})
	var loads atomic.Int32
	load := func(context.Context) (int, error) {
		loads.Add(1)
		<-release
		panic("loader bug")
	}
	errs := make(chan error, 10)
	for i := 0; i < 10; i++ {
		go func() {
			_, err := c.Fetch(context.Background(), "k", load)
			errs <- err
		}()
	}
	waitFor(t, "the loader to start", func() bool { return loads.Load() > 0 })
	close(release)
	for i := 0; i < 10; i++ {
		if err := <-errs; !errors.Is(err, cachemgr.ErrLoaderPanic) {
			t.Errorf("Fetch() error = %v, want ErrLoaderPanic", err)
		}
	}
	got, err := c.Fetch(context.Background(), "k", func(context.Context) (int, error) { return 1, nil })
	if err != nil || got != 1 {
		t.Errorf("Fetch() after panic = %d, %v; want 1 (slot released)", got, err)
	}
}

func TestFetchNilLoader(t *testing.T) {
	m, _ := newManager(t, redistest.StartMini(t))
	c := newCache[int](t, m, "n")
	if _, err := c.Fetch(context.Background(), "k", nil); !errors.Is(err, cachemgr.ErrNilLoader) {
		t.Errorf("Fetch(nil loader) error = %v, want ErrNilLoader", err)
	}
}

func TestFetchLoaderChoosesTTL(t *testing.T) {
	m, rdb := newManager(t, redistest.StartMini(t))
	c := newCache[int](t, m, "ttl", cachemgr.WithJitter(0))
	ctx := context.Background()
	_, err := c.Fetch(ctx, "k", func(ctx context.Context) (int, error) {
		cachemgr.EntryFrom(ctx).SetTTL(42 * time.Second)
		return 1, nil
	})
	if err != nil {
		t.Fatalf("Fetch() error = %v", err)
	}
	if ttl := rdb.PTTL(ctx, "test:ttl:{=k}").Val(); ttl < 41*time.Second || ttl > 42*time.Second {
		t.Errorf("PTTL after EntryFrom(ctx).SetTTL(42s) = %v", ttl)
	}
	got, err := c.Fetch(ctx, "bad", func(ctx context.Context) (int, error) {
		cachemgr.EntryFrom(ctx).SetTTL(-time.Second)
		return 2, nil
	})
	if err != nil || got != 2 {
		t.Errorf("Fetch() with invalid loader TTL = %d, %v; want the value", got, err)
	}
	if n := rdb.Exists(ctx, "test:ttl:{=bad}").Val(); n != 0 {
		t.Errorf("value with invalid TTL was cached")
	}
	cachemgr.EntryFrom(ctx).SetTTL(time.Second) // outside a loader: a no-op, no panic
}

// TestFetchWaiterLeavesOnCancel: a waiter whose ctx ends returns at once;
// the leader's cancellation does not fail the other waiters.
func TestFetchWaiterLeavesOnCancel(t *testing.T) {
	m, _ := newManager(t, redistest.StartMini(t))
	c := newCache[int](t, m, "w")
	release := make(chan struct{})
	var loads atomic.Int32
	load := func(ctx context.Context) (int, error) {
		loads.Add(1)
		select {
		case <-release:
			return 7, nil
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
	leaderCtx, cancelLeader := context.WithCancel(context.Background())
	leaderErr := make(chan error, 1)
	go func() {
		_, err := c.Fetch(leaderCtx, "k", load)
		leaderErr <- err
	}()
	waitFor(t, "the loader to start", func() bool { return loads.Load() > 0 })

	waiterCtx, cancelWaiter := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancelWaiter()
	start := time.Now()
	if _, err := c.Fetch(waiterCtx, "k", load); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("cancelled waiter error = %v, want DeadlineExceeded", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("cancelled waiter returned after %v", d)
	}

	live := make(chan int, 1)
	go func() {
		v, _ := c.Fetch(context.Background(), "k", load)
		live <- v
	}()
	cancelLeader()
	if err := <-leaderErr; !errors.Is(err, context.Canceled) {
		t.Errorf("leader error = %v, want Canceled", err)
	}
	close(release)
	if v := <-live; v != 7 {
		t.Errorf("live waiter got %d after the leader left, want 7", v)
	}
	if n := loads.Load(); n != 1 {
		t.Errorf("loader calls = %d, want 1", n)
	}
}

// TestFetchDeleteDuringLoad proves guarantee 3 for Delete: a value loaded
// before a Delete is never written back after it.
func TestFetchDeleteDuringLoad(t *testing.T) {
	redistest.Each(t, func(t *testing.T, s *redistest.Server) {
		ctx := context.Background()
		m, _ := newManager(t, s)
		c := newCache[string](t, m, "race")
		inLoad, release := make(chan struct{}), make(chan struct{})
		done := make(chan string)
		go func() {
			v, _ := c.Fetch(ctx, "k", func(context.Context) (string, error) {
				close(inLoad)
				<-release
				return "old", nil // read from the database before the update
			})
			done <- v
		}()
		<-inLoad
		// The database changes, then the cache is invalidated.
		if err := c.Delete(ctx, "k"); err != nil {
			t.Fatalf("Delete() error = %v", err)
		}
		close(release)
		if v := <-done; v != "old" {
			t.Fatalf("Fetch() = %q, want the loaded value", v)
		}
		if v, err := c.Get(ctx, "k"); !errors.Is(err, cachemgr.ErrMiss) {
			t.Errorf("Get after Delete during load = %q, %v; want ErrMiss (no stale write-back)", v, err)
		}
		got, err := c.Fetch(ctx, "k", func(context.Context) (string, error) { return "new", nil })
		if err != nil || got != "new" {
			t.Errorf("next Fetch = %q, %v; want new", got, err)
		}
		if v, _ := c.Get(ctx, "k"); v != "new" {
			t.Errorf("Get after reload = %q, want new", v)
		}
	})
}

// TestFetchSetDuringLoad: a Set during a load wins over the load's result.
func TestFetchSetDuringLoad(t *testing.T) {
	m, _ := newManager(t, redistest.StartMini(t))
	c := newCache[string](t, m, "race")
	ctx := context.Background()
	inLoad, release := make(chan struct{}), make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.Fetch(ctx, "k", func(context.Context) (string, error) {
			close(inLoad)
			<-release
			return "old", nil
		})
	}()
	<-inLoad
	if err := c.Set(ctx, "k", "new"); err != nil {
		t.Fatalf("Set() error = %v", err)
	}
	close(release)
	<-done
	if v, _ := c.Get(ctx, "k"); v != "new" {
		t.Errorf("Get after Set during load = %q, want new", v)
	}
}

func TestEveryKeyHasTTL(t *testing.T) {
	redistest.Each(t, func(t *testing.T, s *redistest.Server) {
		ctx := context.Background()
		m, rdb := newManager(t, s)
		c := newCache[int](t, m, "all")
		c.Set(ctx, "a", 1)
		c.Fetch(ctx, "b", func(context.Context) (int, error) { return 2, nil })
		c.Fetch(ctx, "c", func(context.Context) (int, error) { return 0, cachemgr.ErrNotFound })
		c.Delete(ctx, "a")
		c.Fetch(ctx, "a", func(context.Context) (int, error) { return 3, nil })
		keys := rdb.Keys(ctx, "*").Val()
		if len(keys) < 4 {
			t.Fatalf("KEYS = %q, want values and markers", keys)
		}
		for _, k := range keys {
			if ttl := rdb.PTTL(ctx, k).Val(); ttl <= 0 {
				t.Errorf("PTTL(%q) = %v, want a TTL on every key", k, ttl)
			}
		}
	})
}

func TestCancelledContextIsNotRedisFailure(t *testing.T) {
	m, _ := newManager(t, redistest.StartMini(t))
	c := newCache[int](t, m, "cancel")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	loads := 0
	if _, err := c.Fetch(ctx, "k", func(context.Context) (int, error) { loads++; return 1, nil }); !errors.Is(err, context.Canceled) || loads != 0 {
		t.Errorf("Fetch(cancelled ctx) = %v with %d loads, want Canceled and no load", err, loads)
	}
	_, err := c.Get(ctx, "k")
	if !errors.Is(err, context.Canceled) || errors.Is(err, cachemgr.ErrUnavailable) {
		t.Errorf("Get(cancelled ctx) error = %v, want Canceled, not ErrUnavailable", err)
	}
	if st := m.Stats(); st.RedisErrors != 0 || st.Breaker != "closed" {
		t.Errorf("Stats() after cancelled calls = %+v, want no Redis errors", st)
	}
}
