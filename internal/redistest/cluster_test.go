package redistest

import (
	"context"
	"fmt"
	"testing"
)

func TestCluster(t *testing.T) {
	t.Parallel() // forming a cluster waits 2s, mostly idle
	c := StartCluster(t, 3)
	if n := len(c.Addrs()); n != 3 {
		t.Fatalf("Addrs() has %d nodes, want 3", n)
	}
	ctx := context.Background()
	cc := c.Client(t)
	for i := range 30 {
		key := fmt.Sprintf("k%d", i)
		if err := cc.Set(ctx, key, i, 0).Err(); err != nil {
			t.Fatalf("Set(%q) = %v", key, err)
		}
		if got, err := cc.Get(ctx, key).Int(); got != i || err != nil {
			t.Fatalf("Get(%q) = %d, %v, want %d, nil", key, got, err, i)
		}
	}
	// The keys spread over the slots, so every master holds some.
	for _, s := range c.Nodes() {
		if n, err := s.Do(ctx, "DBSIZE").Int(); n == 0 || err != nil {
			t.Errorf("DBSIZE on %s = %d, %v, want > 0", s.Addr(), n, err)
		}
	}
}

func TestClusterOneMaster(t *testing.T) {
	t.Parallel()
	c := StartCluster(t, 1)
	ctx := context.Background()
	cc := c.Client(t)
	if err := cc.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("Set(k) = %v", err)
	}
	if got, err := cc.Get(ctx, "k").Result(); got != "v" || err != nil {
		t.Fatalf("Get(k) = %q, %v, want v, nil", got, err)
	}
}
