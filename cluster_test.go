package cachemgr_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/cachemgr/cachemgr"
	"github.com/cachemgr/cachemgr/internal/redistest"
	"github.com/redis/go-redis/v9"
)

// TestCluster runs every operation on a real 3-master Redis Cluster: every
// script touches keys of one slot only, and one cache spreads over slots.
func TestCluster(t *testing.T) {
	cl := redistest.StartCluster(t, 3)
	rdb := cl.Client(t)
	ctx := context.Background()
	m, err := cachemgr.New(rdb, testOptions(cachemgr.WithPrefix("cl"))...)
	if err != nil {
		t.Fatalf("New() error = %v", err)
	}
	t.Cleanup(func() { m.Close() })
	c := newCache[string](t, m, "p", cachemgr.WithVersioned(true))

	const n = 200
	for i := 0; i < n; i++ {
		if err := c.Set(ctx, fmt.Sprint(i), fmt.Sprint("v", i), cachemgr.Tags(fmt.Sprint("group:", i%4))); err != nil {
			t.Fatalf("Set(%d) error = %v", i, err)
		}
	}
	var mu sync.Mutex
	slots := map[int64]bool{}
	err = rdb.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error {
		for _, k := range node.Keys(ctx, "cl:p:v*").Val() {
			slot, err := node.ClusterKeySlot(ctx, k).Result()
			if err != nil {
				return err
			}
			mu.Lock()
			slots[slot] = true
			mu.Unlock()
		}
		return nil
	})
	if err != nil {
		t.Fatalf("KEYS on masters error = %v", err)
	}
	if len(slots) < n/2 {
		t.Errorf("%d keys of one cache landed in %d slots, want them spread", n, len(slots))
	}
	for i := 0; i < n; i++ {
		if v, err := c.Get(ctx, fmt.Sprint(i)); err != nil || v != fmt.Sprint("v", i) {
			t.Fatalf("Get(%d) = %q, %v", i, v, err)
		}
	}
	loads := 0
	load := func(context.Context) (string, error) { loads++; return "loaded", nil }
	for i := 0; i < 2; i++ {
		if v, err := c.Fetch(ctx, "f", load); err != nil || v != "loaded" {
			t.Fatalf("Fetch() = %q, %v", v, err)
		}
	}
	if loads != 1 {
		t.Errorf("loader calls = %d, want 1", loads)
	}
	if err := c.Delete(ctx, "0"); err != nil {
		t.Fatalf("Delete() error = %v", err)
	}
	if err := m.InvalidateTags(ctx, "group:1"); err != nil {
		t.Fatalf("InvalidateTags() error = %v", err)
	}
	for _, tt := range []struct {
		key  string
		miss bool
	}{{"0", true}, {"1", true}, {"5", true}, {"2", false}, {"4", false}} {
		_, err := c.Get(ctx, tt.key)
		if got := errors.Is(err, cachemgr.ErrMiss); got != tt.miss {
			t.Errorf("Get(%q) error = %v, want miss %v", tt.key, err, tt.miss)
		}
	}
	deleted, err := c.InvalidatePrefix(ctx, "1")
	if err != nil || deleted != 110 { // 1, 10-19, 100-199, less the tag-invalidated 1 read above (deleted on read)
		t.Errorf("InvalidatePrefix(1) = %d, %v; want 110", deleted, err)
	}
	if err := c.Bump(ctx); err != nil {
		t.Fatalf("Bump() error = %v", err)
	}
	if _, err := c.Get(ctx, "2"); !errors.Is(err, cachemgr.ErrMiss) {
		t.Errorf("Get after Bump error = %v, want ErrMiss", err)
	}
	if st := m.Stats(); st.RedisErrors != 0 {
		t.Errorf("Stats().RedisErrors = %d on cluster, want 0 (no CROSSSLOT)", st.RedisErrors)
	}
}
