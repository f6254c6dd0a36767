package cachemgr_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/cachemgr/cachemgr"
	"github.com/cachemgr/cachemgr/internal/benchpair"
	"github.com/cachemgr/cachemgr/internal/redistest"
	"github.com/redis/go-redis/v9"
)

// TestL1Isolation: with L1Shared (the default) every L1 hit returns the
// same value, so a caller's change to it is what the next hit returns;
// with L1Copy each hit gets a value of its own.
func TestL1Isolation(t *testing.T) {
	ctx := context.Background()
	s := redistest.Start(t)
	m, _ := newManager(t, s, cachemgr.WithL1(100), cachemgr.WithL1TTL(time.Hour))
	for _, tt := range []struct {
		name   string
		mode   cachemgr.L1Isolation
		shared bool
	}{{"shared", cachemgr.L1Shared, true}, {"copy", cachemgr.L1Copy, false}} {
		t.Run(tt.name, func(t *testing.T) {
			c := newCache[[]int](t, m, "iso-"+tt.name, cachemgr.WithL1Isolation(tt.mode))
			if err := c.Set(ctx, "k", []int{1, 2, 3}); err != nil {
				t.Fatalf("Set() error = %v", err)
			}
			var v []int
			waitFor(t, "an L1 hit", func() bool {
				before := m.Stats().L1Hits
				var err error
				v, err = c.Get(ctx, "k")
				return err == nil && m.Stats().L1Hits == before+1
			})
			v[0] = 100 // what the docs tell callers of L1Shared not to do
			before := m.Stats().L1Hits
			w, err := c.Get(ctx, "k")
			if err != nil || m.Stats().L1Hits != before+1 {
				t.Fatalf("second Get() = %v, %v, L1 hit %v", w, err, m.Stats().L1Hits == before+1)
			}
			if got := w[0] == 100; got != tt.shared {
				t.Errorf("%s: second L1 hit = %v after the first caller changed its value; shared = %v, want %v", tt.name, w, got, tt.shared)
			}
			f, err := c.Fetch(ctx, "k", func(context.Context) ([]int, error) { return nil, nil })
			if err != nil || (f[0] == 100) != tt.shared {
				t.Errorf("%s: Fetch() from L1 = %v, %v", tt.name, f, err)
			}
		})
	}
}

func TestWithCacheL1RejectsBadInput(t *testing.T) {
	m, _ := newManager(t, redistest.StartMini(t))
	for _, opt := range []cachemgr.CacheOption{cachemgr.WithCacheL1(-1, 0), cachemgr.WithCacheL1(0, -1), cachemgr.WithL1Isolation(7)} {
		if _, err := cachemgr.NewCache[int](m, "bad", opt); err == nil {
			t.Errorf("NewCache() with a bad L1 option: nil error")
		}
	}
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	t.Cleanup(func() { rdb.Close() })
	if _, err := cachemgr.New(rdb, cachemgr.WithL1Bytes(-1)); !errors.Is(err, cachemgr.ErrInvalidOption) {
		t.Errorf("New() with WithL1Bytes(-1) error = %v, want ErrInvalidOption", err)
	}
	// WithCacheL1(0, 0) turns the Manager's L1 off for one cache.
	ml, _ := newManager(t, redistest.StartMini(t), cachemgr.WithL1(10))
	c := newCache[int](t, ml, "off", cachemgr.WithCacheL1(0, 0))
	ctx := context.Background()
	c.Set(ctx, "k", 1)
	for range 3 {
		c.Get(ctx, "k")
	}
	if st := ml.Stats(); st.L1Hits != 0 {
		t.Errorf("L1Hits = %d on a cache with WithCacheL1(0, 0)", st.L1Hits)
	}
}

// BenchmarkL1Hit measures Get and Fetch served by the L1 tier on one
// 1 KiB struct, against a baseline that does no more than a cache must: a
// lookup in a plain map behind a read lock. "get-vs-map", "fetch-vs-map"
// and "fetch-vs-get" pair two of them (benchpair: blocks of 100 calls,
// alternating inside one loop, the median of the per-block ratios), with
// B/op and allocs/op of each counted outside the timed loop. The
// sub-benchmarks "get" and "fetch" run each alone.
func BenchmarkL1Hit(b *testing.B) {
	ctx := context.Background()
	s := benchServer(b)
	m, err := cachemgr.New(s.Client(b), cachemgr.WithPrefix("bench"), cachemgr.WithLogger(quiet), cachemgr.WithL1(100), cachemgr.WithL1TTL(time.Hour))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { m.Close() })
	c, err := cachemgr.NewCache[benchValue](m, "l1hit", cachemgr.WithTTL(time.Hour))
	if err != nil {
		b.Fatal(err)
	}
	v := newBenchValue(1 << 10)
	if err := c.Set(ctx, "k", v); err != nil {
		b.Fatal(err)
	}
	waitL1Hit(b, c, "k")
	load := func(context.Context) (benchValue, error) { return benchValue{}, nil }
	get := func() {
		if _, err := c.Get(ctx, "k"); err != nil {
			b.Fatal(err)
		}
	}
	fetch := func() {
		if _, err := c.Fetch(ctx, "k", load); err != nil {
			b.Fatal(err)
		}
	}
	var mu sync.RWMutex
	plain := map[string]*benchValue{"k": &v}
	var sink *benchValue
	lookup := func() {
		mu.RLock()
		sink = plain["k"]
		mu.RUnlock()
		if sink == nil {
			b.Fatal("map lookup missed")
		}
	}
	b.Run("get", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			get()
		}
	})
	b.Run("fetch", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			fetch()
		}
	})
	for _, pair := range []struct {
		a, base string
		fa, fb  func()
	}{{"get", "map", get, lookup}, {"fetch", "map", fetch, lookup}, {"fetch", "get", fetch, get}} {
		b.Run(pair.a+"-vs-"+pair.base, func(b *testing.B) {
			benchpair.Run(b, 100, pair.fa, pair.fb).Report(b, pair.a, pair.base)
			benchpair.ReportAllocs(b, pair.a, 1000, 1, pair.fa)
			benchpair.ReportAllocs(b, pair.base, 1000, 1, pair.fb)
		})
	}
}

// TestL1HitAllocatesNothing: Get and Fetch answered by the L1 tier (shared
// values) allocate nothing.
func TestL1HitAllocatesNothing(t *testing.T) {
	ctx := context.Background()
	s := redistest.Start(t)
	m, _ := newManager(t, s, cachemgr.WithL1(100), cachemgr.WithL1TTL(time.Hour))
	c := newCache[[]int](t, m, "allocs")
	if err := c.Set(ctx, "k", []int{1, 2, 3}); err != nil {
		t.Fatalf("Set() error = %v", err)
	}
	load := func(context.Context) ([]int, error) { return nil, nil }
	ops := []struct {
		name string
		f    func() error
	}{
		{"Get", func() error { _, err := c.Get(ctx, "k"); return err }},
		{"Fetch", func() error { _, err := c.Fetch(ctx, "k", load); return err }},
	}
	// The Set's own tracking message may drop the entry after its first
	// hit; a run with any call not answered by L1 is done again.
	for attempt := 0; ; attempt++ {
		waitL1Hit(t, c, "k")
		hits := m.Stats().L1Hits
		var allocs [2]float64
		var err error
		for i, op := range ops {
			allocs[i] = testing.AllocsPerRun(1000, func() {
				if e := op.f(); e != nil {
					err = e
				}
			})
		}
		if err != nil {
			t.Fatalf("error = %v", err)
		}
		// AllocsPerRun calls once more to warm up.
		if m.Stats().L1Hits-hits != 2*1001 {
			if attempt == 5 {
				t.Fatalf("5 runs had calls not answered by the L1 tier")
			}
			continue
		}
		for i, op := range ops {
			if allocs[i] != 0 {
				t.Errorf("%s from L1 allocates %v times per call, want 0", op.name, allocs[i])
			}
		}
		return
	}
}

// waitL1Hit reads key until c's L1 tier answers (its sources are up and
// the entry is held).
func waitL1Hit[T any](tb testing.TB, c *cachemgr.Cache[T], key string) {
	tb.Helper()
	ctx := context.Background()
	m := c.Manager()
	for deadline := time.Now().Add(time.Minute); ; { // only stops a hung test
		before := m.Stats().L1Hits
		c.Get(ctx, key)
		if m.Stats().L1Hits > before {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatal("no L1 hit within a minute")
		}
		time.Sleep(time.Millisecond)
	}
}
