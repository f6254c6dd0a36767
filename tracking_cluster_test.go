package cachemgr

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cachemgr/cachemgr/internal/redistest"
)

// TestClusterDelivery: on a 3-master Cluster, Manager B holds keys spread
// over the masters in its L1 tier, and learns of changes both ways:
//   - tracking: a plain client's SET of the key (no cachemgr call) reaches
//     B through its tracking connection to the master that holds the key;
//   - events: A's InvalidateTags of the key's tag, which tracking cannot
//     see, reaches B on the event channel.
//
// Each way, B's L1 tier is polled every 20 µs of sleep (no Redis call)
// until the key is gone; the p99 over 200 changes is logged from the
// change being sent and asserted from the change's call returning (see
// the bound at the end).
func TestClusterDelivery(t *testing.T) {
	const changes = 200
	ctx := context.Background()
	cl := redistest.StartCluster(t, 3)
	plain := cl.Client(t)
	var ms []*Manager
	var cs []*Cache[int]
	for range 2 {
		rdb := cl.Client(t)
		m, err := New(rdb, WithPrefix("test"), WithLogger(slog.New(slog.DiscardHandler)), WithOpTimeout(3*time.Second), WithWriteTimeout(3*time.Second), WithL1(1000), WithL1TTL(time.Hour))
		if err != nil {
			t.Fatalf("New() error = %v", err)
		}
		t.Cleanup(func() { m.Close() })
		c, err := NewCache[int](m, "cd", WithTTL(time.Hour))
		if err != nil {
			t.Fatalf("NewCache() error = %v", err)
		}
		ms, cs = append(ms, m), append(cs, c)
	}
	for _, m := range ms {
		waitTrusted(t, m)
	}
	a, b := cs[0], cs[1]
	lat, calls, after := map[string][]time.Duration{}, map[string][]time.Duration{}, map[string][]time.Duration{}
	var gaps []time.Duration
	for i := range 2 * changes {
		way := []string{"tracking", "events"}[i%2]
		k := fmt.Sprint("k", i%30)
		tag := "t" + k
		if err := a.Set(ctx, k, i, Tags(tag)); err != nil {
			t.Fatalf("Set() error = %v", err)
		}
		fillL1(t, b, k)
		start := time.Now()
		switch way {
		case "tracking":
			if err := plain.Expire(ctx, b.keys.Key(k), time.Hour).Err(); err != nil {
				t.Fatalf("EXPIRE error = %v", err)
			}
		case "events":
			if err := a.m.InvalidateTags(ctx, tag); err != nil {
				t.Fatalf("InvalidateTags() error = %v", err)
			}
		}
		calls[way] = append(calls[way], time.Since(start))
		last := start
		for giveUp := start.Add(30 * time.Second); ; {
			_, ok := b.l1.get(k, b.l1.now())
			now := time.Now()
			if !ok {
				lat[way] = append(lat[way], now.Sub(start))
				after[way] = append(after[way], now.Sub(start)-calls[way][len(calls[way])-1])
				gaps = append(gaps, now.Sub(last))
				break
			}
			if now.After(giveUp) {
				t.Fatalf("%s: B's L1 tier still holds %q 30s after the change", way, k)
			}
			last = now
			time.Sleep(20 * time.Microsecond)
		}
	}
	pct := func(ds []time.Duration, p int) time.Duration {
		ds = slices.Clone(ds)
		slices.Sort(ds)
		return ds[(len(ds)-1)*p/100]
	}
	load, _ := os.ReadFile("/proc/loadavg")
	t.Logf("observation gap p50 %v p99 %v; load average %s", pct(gaps, 50), pct(gaps, 99), strings.TrimSpace(string(load)))
	// The bound. Measured from the change being sent, p99 stayed under
	// 5 ms while the machine was otherwise quiet, but not at a load
	// average of 12 to 15: 10 and 58 ms in 2 of 8 runs, and in both the
	// change's own call took as long (p99 10.19 and 58.09 ms): the time
	// went to the writer's round trip on a loaded machine, not to the
	// delivery. So the bound is on what a writer can rely on: once its
	// call has returned, the other process's L1 tier drops the key within
	// 5 ms, plus the watcher's own wake-up gap measured in the same run.
	for _, way := range []string{"tracking", "events"} {
		d := lat[way]
		t.Logf("%-8s p50 %v p99 %v max %v over %d changes; after the call returned p50 %v p99 %v (the call: p50 %v p99 %v)", way, pct(d, 50), pct(d, 99), slices.Max(d), len(d), pct(after[way], 50), pct(after[way], 99), pct(calls[way], 50), pct(calls[way], 99))
		if p99, bound := pct(after[way], 99), clusterDeliveryBound+pct(gaps, 99); p99 > bound {
			t.Errorf("%s: p99 from the change's call returning to B's L1 dropping the key = %v, want <= %v (5 ms + the watcher's p99 wake-up gap)", way, p99, bound)
		}
	}
}

// clusterDeliveryBound is the target for the p99 of a drop on a
// Cluster.
const clusterDeliveryBound = 5 * time.Millisecond
