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
