package httpcache_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/cachemgr/cachemgr"
	"github.com/cachemgr/cachemgr/httpcache"
	"github.com/cachemgr/cachemgr/internal/redistest"
)

// TestL1: responses go into the Manager's L1 tier only with WithL1, even
// when the Manager gives every cache one.
func TestL1(t *testing.T) {
	s := redistest.Start(t)
	for _, tt := range []struct {
		name string
		opts []httpcache.Option
		l1   bool
	}{{"default", nil, false}, {"WithL1", []httpcache.Option{httpcache.WithL1(100, 1<<20)}, true}} {
		t.Run(tt.name, func(t *testing.T) {
			m := newManager(t, s, cachemgr.WithPrefix("l1"+tt.name), cachemgr.WithL1(100), cachemgr.WithL1TTL(time.Hour))
			h := newCache(t, m, "pages", tt.opts...).Middleware(text("hello"))
			// A cache of the Manager's own serves from L1 first: its L1 tier
			// is trusted from then on.
			ctx := context.Background()
			probe, err := cachemgr.NewCache[string](m, "probe")
			if err != nil {
				t.Fatalf("NewCache() error = %v", err)
			}
			if err := probe.Set(ctx, "k", "v"); err != nil {
				t.Fatalf("Set() error = %v", err)
			}
			deadline := time.Now().Add(time.Minute) // only stops a hung test
			for m.Stats().L1Hits == 0 {
				if time.Now().After(deadline) {
					t.Fatal("no L1 hit on the probe cache")
				}
				probe.Get(ctx, "k")
				time.Sleep(time.Millisecond)
			}
			base := m.Stats().L1Hits
			for range 50 {
				if r := do(h, "GET", "/x"); r.body != "hello" {
					t.Fatalf("body = %q", r.body)
				}
				time.Sleep(time.Millisecond)
			}
			if got := m.Stats().L1Hits > base; got != tt.l1 {
				t.Errorf("pages served from L1 %v, want %v", got, tt.l1)
			}
		})
	}
	m := newManager(t, s)
	if _, err := httpcache.New(m, "bad", httpcache.WithL1(-1, 0)); !errors.Is(err, cachemgr.ErrInvalidOption) {
		t.Errorf("New() with WithL1(-1, 0) error = %v, want ErrInvalidOption", err)
	}
}
