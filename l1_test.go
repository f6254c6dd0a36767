package cachemgr_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/cachemgr/cachemgr"
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

// BenchmarkL1Hit pairs Get and Fetch served by the L1 tier on one 1 KiB
// struct: A and B alternate in blocks of 1,000 inside one loop, so both
// meet the same machine; ns/op, B/op and allocs/op are per hit of either.
// The sub-benchmarks run each alone for its own allocs/op.
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
	if err := c.Set(ctx, "k", newBenchValue(1<<10)); err != nil {
		b.Fatal(err)
	}
	load := func(context.Context) (benchValue, error) { return benchValue{}, nil }
	for deadline := time.Now().Add(time.Minute); ; {
		before := m.Stats().L1Hits
		c.Get(ctx, "k")
		if m.Stats().L1Hits > before {
			break
		}
		if time.Now().After(deadline) {
			b.Fatal("no L1 hit")
		}
		time.Sleep(time.Millisecond)
	}
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
	b.Run("paired", func(b *testing.B) {
		b.ReportAllocs()
		const block = 1000
		var tg, tf time.Duration
		var ng, nf int
		for i := 0; b.Loop(); i++ {
			start := time.Now()
			if (i/block)%2 == 0 {
				get()
				tg += time.Since(start)
				ng++
			} else {
				fetch()
				tf += time.Since(start)
				nf++
			}
		}
		if ng > 0 && nf > 0 {
			b.ReportMetric(float64(tg.Nanoseconds())/float64(ng), "get-ns/op")
			b.ReportMetric(float64(tf.Nanoseconds())/float64(nf), "fetch-ns/op")
			b.ReportMetric((float64(tf)/float64(nf))/(float64(tg)/float64(ng)), "fetch/get")
		}
	})
}
