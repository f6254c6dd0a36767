package cachemgr_test

import (
	"context"
	"errors"
	"testing"

	"github.com/cachemgr/cachemgr"
	"github.com/cachemgr/cachemgr/internal/redistest"
)

// TestCacheStats: each cache name counts its own reads and loads (two
// Cache values of one name share them), the Manager's Stats are their sum,
// and the Manager's own counters stay out of Cache.Stats.
func TestCacheStats(t *testing.T) {
	m, _ := newManager(t, redistest.StartMini(t), cachemgr.WithL1(100)) // the L1 tier turns events on
	ctx := context.Background()
	a := newCache[string](t, m, "a")
	a2 := newCache[string](t, m, "a")
	b := newCache[string](t, m, "b")
	load := func(context.Context) (string, error) { return "v", nil }
	for _, k := range []string{"1", "2", "3"} {
		if _, err := a.Fetch(ctx, k, load); err != nil { // 3 misses, 3 loads
			t.Fatal(err)
		}
	}
	for _, k := range []string{"1", "2"} {
		if _, err := a2.Get(ctx, k); err != nil { // 2 hits
			t.Fatal(err)
		}
	}
	if _, err := b.Fetch(ctx, "x", func(context.Context) (string, error) { return "", errors.New("down") }); err == nil {
		t.Fatal("Fetch with a failing loader succeeded")
	}
	if _, err := b.Fetch(ctx, "y", func(context.Context) (string, error) { return "", cachemgr.ErrNotFound }); !errors.Is(err, cachemgr.ErrNotFound) {
		t.Fatal(err)
	}
	if _, err := b.Get(ctx, "y"); !errors.Is(err, cachemgr.ErrNotFound) { // a negative hit
		t.Fatal(err)
	}
	if err := a.Delete(ctx, "3"); err != nil { // an event
		t.Fatal(err)
	}
	sa, sa2, sb, sm := a.Stats(), a2.Stats(), b.Stats(), m.Stats()
	if sa != sa2 {
		t.Errorf("Stats of two Caches of one name differ: %+v and %+v", sa, sa2)
	}
	if sa.Hits != 2 || sa.Misses != 3 || sa.Loads != 3 || sa.LoadErrors != 0 || sa.NegativeHits != 0 {
		t.Errorf("a.Stats() = %+v; want 2 hits, 3 misses, 3 loads", sa)
	}
	if sb.Hits != 1 || sb.NegativeHits != 1 || sb.Misses != 2 || sb.Loads != 2 || sb.LoadErrors != 1 {
		t.Errorf("b.Stats() = %+v; want 1 (negative) hit, 2 misses, 2 loads, 1 load error", sb)
	}
	if sm.Hits != sa.Hits+sb.Hits || sm.Misses != sa.Misses+sb.Misses || sm.Loads != sa.Loads+sb.Loads || sm.LoadErrors != 1 {
		t.Errorf("m.Stats() = %+v; want the sum of a's and b's", sm)
	}
	if sa.EventsSent != 0 || sb.EventsSent != 0 || sm.EventsSent == 0 {
		t.Errorf("events sent: a %d, b %d, manager %d; want them on the Manager only", sa.EventsSent, sb.EventsSent, sm.EventsSent)
	}
	if sa.Breaker != "closed" {
		t.Errorf("a.Stats().Breaker = %q, want the Manager's (closed)", sa.Breaker)
	}
}
