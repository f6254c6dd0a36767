package cachemgr_test

// Fault tests on a Redis Cluster: slots, resharding and a failed master
// (docs/reliability.md, group G).

import (
	"context"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/cachemgr/cachemgr"
	"github.com/cachemgr/cachemgr/internal/redistest"
)

// TestReliabilityClusterFaults (scenarios 51, 66, 69): on a 3-master Redis
// Cluster, user keys with hash-tag characters work on every path without
// CROSSSLOT; then one master is killed under load. No Fetch fails, no
// value of another key is returned, and Fetch stays in budget while the
// cluster is degraded.
func TestReliabilityClusterFaults(t *testing.T) {
	noLeaks(t)
	// The op timeout is what a loaded machine meets for the set-up calls;
	// the budget while a master is down follows from it.
	const op, load = 300 * time.Millisecond, 2 * time.Millisecond
	cl := redistest.StartCluster(t, 3)
	rdb := cl.Client(t)
	m := managerOn(t, rdb, cachemgr.WithOpTimeout(op), cachemgr.WithWriteTimeout(op), cachemgr.WithBreaker(5, 200*time.Millisecond))
	c := newCache[relItem](t, m, "clf", cachemgr.WithVersioned(true))
	ctx := context.Background()
	braces := []string{"{x}", "}{", "{}", "}", "a}b{c", "{=x}", "}:i", "{x}1", "{x}2"}
	for _, k := range braces {
		if err := c.Set(ctx, k, relItem{Key: k}, cachemgr.Tags(k)); err != nil {
			t.Fatalf("Set(%q) error = %v", k, err)
		}
		if v, err := c.Get(ctx, k); err != nil || v.Key != k {
			t.Errorf("Get(%q) = %+v, %v", k, v, err)
		}
		if err := c.Delete(ctx, k); err != nil {
			t.Errorf("Delete(%q) error = %v", k, err)
		}
		v, err := c.Fetch(ctx, k, func(context.Context) (relItem, error) { return relItem{Key: k}, nil }, cachemgr.Tags(k))
		if err != nil || v.Key != k {
			t.Errorf("Fetch(%q) = %+v, %v", k, v, err)
		}
		if err := m.InvalidateTags(ctx, k); err != nil {
			t.Errorf("InvalidateTags(%q) error = %v", k, err)
		}
	}
	if n, err := c.InvalidatePrefix(ctx, "{"); err != nil {
		t.Errorf("InvalidatePrefix({) = %d, %v", n, err)
	}
	if st := m.Stats(); st.RedisErrors != 0 {
		t.Fatalf("Stats().RedisErrors = %d with brace keys on a cluster, want 0 (no CROSSSLOT)", st.RedisErrors)
	}

	w := relStartWorkload(t, 16, 200, load, c)
	relWaitProgress(t, w.enter("healthy"), 200)
	degraded := w.enter("master killed")
	cl.Nodes()[1].Kill()
	relWaitProgress(t, degraded, 600)
	w.check()
	relCheckLatency(t, degraded, op, load)
	t.Logf("stats with one master of three down: %+v", m.Stats())
	// go-redis redials a dead node from a goroutine of its own, once a
	// second, even after the client is closed; it stops once a dial works.
	cl.Nodes()[1].Restart()
	waitFor(t, "go-redis to stop redialling the killed node", func() bool {
		buf := make([]byte, 1<<20)
		return !strings.Contains(string(buf[:runtime.Stack(buf, true)]), "(*ConnPool).tryDial")
	})
}
