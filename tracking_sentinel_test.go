package cachemgr

import (
	"context"
	"testing"
	"time"

	"github.com/cachemgr/cachemgr/internal/redistest"
	"github.com/redis/go-redis/v9"
)

// TestTrackingSentinelFailover: a Manager on a Sentinel failover client
// holds a key in its L1 tier when the master is killed. Losing the
// tracking connection flushes the tier (the key is gone before any
// failover); once Sentinel has promoted the replica, tracking is
// re-established on the new master: a change made there by a plain
// client, no cachemgr call involved, drops the key again.
func TestTrackingSentinelFailover(t *testing.T) {
	ctx := context.Background()
	master, replica := redistest.Start(t), redistest.Start(t)
	replica.ReplicaOf(master)
	sentinel := redistest.StartSentinel(t, "tracked", master, time.Second)
	rdb := redis.NewFailoverClient(&redis.FailoverOptions{
		MasterName:    "tracked",
		SentinelAddrs: []string{sentinel.Addr()},
		DialTimeout:   time.Second,
		ReadTimeout:   3 * time.Second,
		WriteTimeout:  3 * time.Second,
	})
	t.Cleanup(func() { rdb.Close() })
	m := newL1TestManager(t, rdb, WithL1(100), WithEventsLiveness(200*time.Millisecond))
	c, err := NewCache[int](m, "sf", WithTTL(time.Hour))
	if err != nil {
		t.Fatalf("NewCache() error = %v", err)
	}
	waitTrusted(t, m)
	if err := c.Set(ctx, "k", 1); err != nil {
		t.Fatalf("Set() error = %v", err)
	}
	fillL1(t, c, "k")
	// The write reached the replica, which will be promoted with it.
	if n, err := rdb.Wait(ctx, 1, 10*time.Second).Result(); n != 1 || err != nil {
		t.Fatalf("WAIT = %d, %v", n, err)
	}

	old := master.Addr()
	master.Kill()
	waitFor(t, "the L1 tier flushed after the tracking connection was lost", func() bool {
		_, ok := c.l1.get("k", c.l1.now())
		return !ok && !m.l1Trusted.Load()
	})
	// Flushed at the loss, not later when a connection to the new master
	// is up: Sentinel takes a second to see the master down.
	if addr, err := sentinel.MasterAddr(ctx); addr != old || err != nil {
		t.Errorf("the L1 tier was flushed only once Sentinel named %s (%v), not when tracking was lost", addr, err)
	}
	addr := sentinel.WaitFailover(old)
	if addr != replica.Addr() {
		t.Fatalf("Sentinel promoted %s, want the replica %s", addr, replica.Addr())
	}
	waitTrusted(t, m) // every source up again, on the new master
	if v, err := c.Get(ctx, "k"); v != 1 || err != nil {
		t.Fatalf("Get() from the new master = %d, %v; want 1", v, err)
	}
	fillL1(t, c, "k")
	resyncs, msgs := m.stats.resyncs.Load(), m.ev.tr.messages.Load()
	plain := replica.Client(t)
	if n, err := plain.Del(ctx, "test:sf:{=k}").Result(); n != 1 || err != nil {
		t.Fatalf("DEL on the new master = %d, %v", n, err)
	}
	waitFor(t, "the new master's DEL to drop k from L1", func() bool {
		_, ok := c.l1.get("k", c.l1.now())
		return !ok
	})
	// Dropped by the DEL's tracking message, not by a flush: no source
	// was lost (that would have left the tier untrusted or resubscribed).
	if !m.l1Trusted.Load() || m.stats.resyncs.Load() != resyncs || m.ev.tr.messages.Load() == msgs {
		t.Errorf("k left L1 without a tracking message from the new master: trusted %v, resubscriptions %d, tracking messages %d", m.l1Trusted.Load(), m.stats.resyncs.Load()-resyncs, m.ev.tr.messages.Load()-msgs)
	}
}
