package cachemgr

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/cachemgr/cachemgr/internal/redistest"
	"github.com/redis/go-redis/v9"
)

// TestRingEvents: on a Ring of two shards, A's InvalidateTags (which only
// events carry) reaches B's L1 tier every time. The event channel lives on
// the shard its name hashes to, where every Manager subscribes; a PUBLISH
// sent to the other shard would reach no one.
func TestRingEvents(t *testing.T) {
	const changes = 20
	ctx := context.Background()
	shards := map[string]string{}
	for i := range 2 {
		shards[fmt.Sprint("s", i)] = redistest.Start(t).Addr()
	}
	var cs []*Cache[int]
	for range 2 {
		rdb := redis.NewRing(&redis.RingOptions{Addrs: shards, ReadTimeout: 3 * time.Second, WriteTimeout: 3 * time.Second})
		t.Cleanup(func() { rdb.Close() })
		m, err := New(rdb, WithPrefix("test"), WithLogger(slog.New(slog.DiscardHandler)), WithOpTimeout(3*time.Second), WithWriteTimeout(3*time.Second), WithL1(100), WithL1TTL(time.Hour))
		if err != nil {
			t.Fatalf("New() error = %v", err)
		}
		t.Cleanup(func() { m.Close() })
		c, err := NewCache[int](m, "re", WithTTL(time.Hour))
		if err != nil {
			t.Fatalf("NewCache() error = %v", err)
		}
		waitTrusted(t, m)
		cs = append(cs, c)
	}
	a, b := cs[0], cs[1]
	for i := range changes {
		k := fmt.Sprint("k", i)
		if err := a.Set(ctx, k, i, Tags("t"+k)); err != nil {
			t.Fatalf("Set() error = %v", err)
		}
		fillL1(t, b, k)
		if err := a.m.InvalidateTags(ctx, "t"+k); err != nil {
			t.Fatalf("InvalidateTags() error = %v", err)
		}
		// Only the event can drop it: tracking sees no change of k.
		waitFor(t, fmt.Sprintf("B to drop %q on the event of InvalidateTags %d", k, i), func() bool {
			_, ok := b.l1.get(k, b.l1.now())
			return !ok
		})
	}
}
