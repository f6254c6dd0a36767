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
// Each way, the p99 over 200 changes from the change being sent to B's L1
// tier dropping the key (polled every 20 µs of sleep, no Redis call) must
// stay under clusterDeliveryBound.
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
	lat, calls := map[string][]time.Duration{}, map[string][]time.Duration{}
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
		for {
			_, ok := b.l1.get(k, b.l1.now())
			now := time.Now()
			if !ok {
				lat[way] = append(lat[way], now.Sub(start))
				gaps = append(gaps, now.Sub(last))
				break
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
	for _, way := range []string{"tracking", "events"} {
		d := lat[way]
		t.Logf("%-8s p50 %v p99 %v max %v over %d changes (the change's own call: p50 %v p99 %v)", way, pct(d, 50), pct(d, 99), slices.Max(d), len(d), pct(calls[way], 50), pct(calls[way], 99))
		if p99 := pct(d, 99); p99 > clusterDeliveryBound {
			t.Errorf("%s: p99 from a change to B's L1 dropping the key = %v, want <= %v", way, p99, clusterDeliveryBound)
		}
	}
}

// clusterDeliveryBound is TestClusterDelivery's bound on the p99 of a drop.
const clusterDeliveryBound = 5 * time.Millisecond
