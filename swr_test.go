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

// skewedClock is a clock the test moves forward, so values turn stale
// without waiting; Redis TTLs still run on real time.
type skewedClock struct{ offset atomic.Int64 }

func (c *skewedClock) now() time.Time          { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *skewedClock) advance(d time.Duration) { c.offset.Add(int64(d)) }

func TestStaleWhileRevalidate(t *testing.T) {
	redistest.Each(t, func(t *testing.T, s *redistest.Server) {
		ctx := context.Background()
		var clk skewedClock
		m, _ := newManager(t, s, cachemgr.WithClock(clk.now))
		c := newCache[string](t, m, "swr", cachemgr.WithTTL(time.Hour), cachemgr.WithJitter(0), cachemgr.WithStale(time.Hour))
		if err := c.Set(ctx, "k", "old"); err != nil {
			t.Fatalf("Set() error = %v", err)
		}
		clk.advance(time.Hour + time.Minute) // past fresh, inside the stale window
		release := make(chan struct{})
		var loads atomic.Int32
		load := func(context.Context) (string, error) {
			loads.Add(1)
			<-release
			return "new", nil
		}
		start := time.Now()
		v, err := c.Fetch(ctx, "k", load)
		if err != nil || v != "old" {
			t.Fatalf("Fetch(stale) = %q, %v; want old at once", v, err)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("Fetch(stale) waited %v for the loader", d)
		}
		waitFor(t, "the refresh to start", func() bool { return loads.Load() == 1 })
		if v, _ := c.Fetch(ctx, "k", load); v != "old" {
			t.Errorf("Fetch during refresh = %q, want old", v)
		}
		close(release)
		waitFor(t, "the refreshed value", func() bool {
			v, _ := c.Get(ctx, "k")
			return v == "new"
		})
		if n := loads.Load(); n != 1 {
			t.Errorf("loader calls = %d, want one refresh", n)
		}
		st := m.Stats()
		if st.StaleHits != 2 || st.Refreshes != 1 {
			t.Errorf("Stats() = %+v, want 2 stale hits and 1 refresh", st)
		}
	})
}

func TestStaleRefreshFailureKeepsValue(t *testing.T) {
	ctx := context.Background()
	var clk skewedClock
	m, rdb := newManager(t, redistest.StartMini(t), cachemgr.WithClock(clk.now))
	c := newCache[string](t, m, "swr", cachemgr.WithTTL(time.Hour), cachemgr.WithJitter(0),
		cachemgr.WithStale(time.Hour), cachemgr.WithLease(time.Second))
	if err := c.Set(ctx, "k", "old"); err != nil {
		t.Fatalf("Set() error = %v", err)
	}
	clk.advance(time.Hour + time.Minute)
	var loads atomic.Int32
	fail := func(context.Context) (string, error) { loads.Add(1); return "", errors.New("database down") }
	for i := 0; i < 3; i++ {
		if v, err := c.Fetch(ctx, "k", fail); err != nil || v != "old" {
			t.Fatalf("Fetch() with failing refresh = %q, %v; want old (fail-safe)", v, err)
		}
		waitFor(t, "the refresh to end", func() bool { return m.Stats().RefreshErrors+m.Stats().RefreshesElsewhere >= uint64(i+1) })
	}
	if n := loads.Load(); n != 1 {
		t.Errorf("loader calls = %d, want 1: a failed refresh holds its lease as a back-off", n)
	}
	if st := m.Stats(); st.RefreshErrors != 1 {
		t.Errorf("Stats().RefreshErrors = %d, want 1", st.RefreshErrors)
	}
	// After the lease expires, the next stale hit tries again.
	rdb.Del(ctx, "test:swr:{=k}:l")
	c.Fetch(ctx, "k", fail)
	waitFor(t, "a second refresh", func() bool { return loads.Load() == 2 })
}

func TestSoftTimeout(t *testing.T) {
	ctx := context.Background()
	var clk skewedClock
	m, _ := newManager(t, redistest.StartMini(t), cachemgr.WithClock(clk.now))
	c := newCache[string](t, m, "soft", cachemgr.WithTTL(time.Hour), cachemgr.WithJitter(0),
		cachemgr.WithStale(time.Hour), cachemgr.WithSoftTimeout(time.Second))
	tests := []struct {
		name string
		load func(context.Context) (string, error)
		want string
	}{
		{"fast loader gives the fresh value", func(context.Context) (string, error) { return "fresh", nil }, "fresh"},
		{"slow loader is not waited for", func(ctx context.Context) (string, error) {
			<-ctx.Done()
			return "", ctx.Err()
		}, "old"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := fmt.Sprint(i)
			if err := c.Set(ctx, key, "old"); err != nil {
				t.Fatalf("Set() error = %v", err)
			}
			clk.advance(2 * time.Hour)
			start := time.Now()
			v, err := c.Fetch(ctx, key, tt.load)
			if err != nil || v != tt.want {
				t.Errorf("Fetch() = %q, %v; want %q", v, err, tt.want)
			}
			if d := time.Since(start); d > 3*time.Second {
				t.Errorf("Fetch() took %v, want at most about the soft timeout", d)
			}
		})
	}
}

// TestCrossProcessStampede proves guarantee 1 across processes: four
// Managers with their own clients, 250 goroutines each, miss one key at
// once; the loader runs once in total.
func TestCrossProcessStampede(t *testing.T) {
	redistest.Each(t, func(t *testing.T, s *redistest.Server) {
		var loads atomic.Int32
		release := make(chan struct{})
		load := func(context.Context) (string, error) {
			loads.Add(1)
			<-release
			return "v", nil
		}
		var caches []*cachemgr.Cache[string]
		var managers []*cachemgr.Manager
		// Not a test of timeouts: an op timeout and a lease that a loaded
		// machine meets with 1,000 goroutines under the race detector (a
		// lookup that timed out would load without a claim, a lease wait
		// that ran out would load again).
		for i := 0; i < 4; i++ {
			m, _ := newManager(t, s, cachemgr.WithOpTimeout(10*time.Second))
			managers = append(managers, m)
			caches = append(caches, newCache[string](t, m, "stampede", cachemgr.WithLease(time.Minute)))
		}
		var wg sync.WaitGroup
		errs := make(chan error, 1000)
		for _, c := range caches {
			for g := 0; g < 250; g++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					v, err := c.Fetch(context.Background(), "hot", load)
					if err == nil && v != "v" {
						err = fmt.Errorf("got %q", v)
					}
					errs <- err
				}()
			}
		}
		waitFor(t, "one loader and three waiting processes", func() bool {
			var waits uint64
			for _, m := range managers {
				waits += m.Stats().LeaseWaits
			}
			return loads.Load() == 1 && waits == 3
		})
		close(release)
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatalf("Fetch() error = %v", err)
			}
		}
		if n := loads.Load(); n != 1 {
			t.Errorf("loader calls = %d across 4 processes, want 1", n)
		}
	})
}

// TestCrossProcessStaleRefresh: a stale key read by four processes at once
// is refreshed once in total.
func TestCrossProcessStaleRefresh(t *testing.T) {
	redistest.Each(t, func(t *testing.T, s *redistest.Server) {
		ctx := context.Background()
		var clk skewedClock
		var loads atomic.Int32
		release := make(chan struct{})
		load := func(context.Context) (string, error) {
			loads.Add(1)
			<-release
			return "new", nil
		}
		var caches []*cachemgr.Cache[string]
		var managers []*cachemgr.Manager
		for i := 0; i < 4; i++ {
			m, _ := newManager(t, s, cachemgr.WithClock(clk.now), cachemgr.WithOpTimeout(time.Second))
			managers = append(managers, m)
			caches = append(caches, newCache[string](t, m, "stale", cachemgr.WithTTL(time.Hour), cachemgr.WithJitter(0), cachemgr.WithStale(time.Hour)))
		}
		if err := caches[0].Set(ctx, "hot", "old"); err != nil {
			t.Fatalf("Set() error = %v", err)
		}
		clk.advance(time.Hour + time.Minute)
		var wg sync.WaitGroup
		for _, c := range caches {
			for g := 0; g < 250; g++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if v, err := c.Fetch(ctx, "hot", load); err != nil || v != "old" {
						t.Errorf("Fetch(stale) = %q, %v; want old", v, err)
					}
				}()
			}
		}
		wg.Wait()
		close(release)
		waitFor(t, "the refreshed value", func() bool {
			v, _ := caches[3].Get(ctx, "hot")
			return v == "new"
		})
		var refreshes uint64
		for _, m := range managers {
			refreshes += m.Stats().Refreshes
		}
		if n := loads.Load(); n != 1 || refreshes != 1 {
			t.Errorf("loader calls = %d, refreshes = %d across 4 processes; want 1 and 1", n, refreshes)
		}
	})
}

// TestStalledLeaseHolder: a holder that stalls past its lease cannot free
// the next holder's lease, and the next process takes over after expiry.
func TestStalledLeaseHolder(t *testing.T) {
	redistest.Each(t, func(t *testing.T, s *redistest.Server) {
		ctx := context.Background()
		a, rdb := newManager(t, s, cachemgr.WithOpTimeout(time.Second))
		b, _ := newManager(t, s, cachemgr.WithOpTimeout(time.Second))
		ca := newCache[string](t, a, "lease", cachemgr.WithLease(100*time.Millisecond))
		cb := newCache[string](t, b, "lease", cachemgr.WithLease(time.Hour))
		const leaseKey = "test:lease:{=k}:l"

		releaseA, releaseB := make(chan struct{}), make(chan struct{})
		doneA := make(chan struct{})
		go func() {
			defer close(doneA)
			ca.Fetch(ctx, "k", func(context.Context) (string, error) { <-releaseA; return "from a", nil })
		}()
		waitFor(t, "a's lease", func() bool { return rdb.Exists(ctx, leaseKey).Val() == 1 })
		doneB := make(chan string)
		var bLoads atomic.Int32
		go func() {
			v, _ := cb.Fetch(ctx, "k", func(context.Context) (string, error) {
				bLoads.Add(1)
				<-releaseB
				return "from b", nil
			})
			doneB <- v
		}()
		// a's lease expires; b takes over and holds a lease of its own.
		waitFor(t, "b to take over", func() bool {
			if s.Kind() == redistest.KindMiniredis {
				s.FastForward(10 * time.Millisecond) // miniredis expires keys only when told
			}
			return bLoads.Load() == 1
		})
		bToken := rdb.Get(ctx, leaseKey).Val()
		close(releaseA)
		<-doneA
		if got := rdb.Get(ctx, leaseKey).Val(); got != bToken || got == "" {
			t.Errorf("lease after a's late release = %q, want b's %q", got, bToken)
		}
		close(releaseB)
		if v := <-doneB; v != "from b" {
			t.Errorf("b's Fetch = %q, want from b", v)
		}
		if st := b.Stats(); st.LeaseWaits != 1 {
			t.Errorf("b's LeaseWaits = %d, want 1", st.LeaseWaits)
		}
	})
}

func TestXFetch(t *testing.T) {
	var clk skewedClock
	m, _ := newManager(t, redistest.StartMini(t), cachemgr.WithClock(clk.now))
	c := newCache[string](t, m, "x", cachemgr.WithTTL(time.Hour), cachemgr.WithJitter(0), cachemgr.WithEarlyRefresh(10))
	ctx := context.Background()
	var loads atomic.Int32
	load := func(context.Context) (string, error) {
		time.Sleep(20 * time.Millisecond) // the recorded load time feeds XFetch
		loads.Add(1)
		return "v", nil
	}
	if _, err := c.Fetch(ctx, "k", load); err != nil {
		t.Fatalf("Fetch() error = %v", err)
	}
	// Far from expiry, XFetch does not refresh.
	for i := 0; i < 20; i++ {
		c.Fetch(ctx, "k", load)
	}
	if n := loads.Load(); n != 1 {
		t.Fatalf("loader calls far from expiry = %d, want 1", n)
	}
	// 100 ms before expiry, 20 ms of load time and beta 10 make each hit
	// refresh with probability 1-e^-0.5: a refresh comes early, in the
	// background, while hits return the cached value.
	clk.advance(time.Hour - 100*time.Millisecond)
	for i := 0; i < 50 && loads.Load() < 2; i++ {
		if v, err := c.Fetch(ctx, "k", load); err != nil || v != "v" {
			t.Fatalf("Fetch() = %q, %v", v, err)
		}
		time.Sleep(time.Millisecond)
	}
	waitFor(t, "an early refresh", func() bool { return m.Stats().Refreshes >= 1 })
	if st := m.Stats(); st.StaleHits != 0 || st.Refreshes == 0 {
		t.Errorf("Stats() = %+v, want refreshes and no stale hit", st)
	}
}

func TestSWROptionsReject(t *testing.T) {
	m, _ := newManager(t, redistest.StartMini(t))
	for _, opt := range []cachemgr.CacheOption{
		cachemgr.WithStale(-time.Second), cachemgr.WithSoftTimeout(-1),
		cachemgr.WithEarlyRefresh(-1), cachemgr.WithLease(-time.Second),
	} {
		if _, err := cachemgr.NewCache[int](m, "bad", opt); !errors.Is(err, cachemgr.ErrInvalidOption) {
			t.Errorf("NewCache(bad SWR option) error = %v, want ErrInvalidOption", err)
		}
	}
}

// TestCloseDuringRefresh: Close cancels a refresh in flight and waits for
// it (goleak in TestMain checks nothing is left).
func TestCloseDuringRefresh(t *testing.T) {
	ctx := context.Background()
	var clk skewedClock
	m, _ := newManager(t, redistest.StartMini(t), cachemgr.WithClock(clk.now))
	c := newCache[string](t, m, "close", cachemgr.WithTTL(time.Hour), cachemgr.WithStale(time.Hour))
	c.Set(ctx, "k", "old")
	clk.advance(2 * time.Hour)
	started := make(chan struct{})
	c.Fetch(ctx, "k", func(ctx context.Context) (string, error) {
		close(started)
		<-ctx.Done()
		return "", ctx.Err()
	})
	<-started
	done := make(chan struct{})
	go func() { m.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close() did not return while a refresh was running")
	}
}
