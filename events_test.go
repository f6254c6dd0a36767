package cachemgr_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cachemgr/cachemgr"
	"github.com/cachemgr/cachemgr/internal/redistest"
)

// l1Pair returns two Managers with an L1 tier on s, as two processes
// would have, each with a cache "p", once both are subscribed.
func l1Pair(t *testing.T, s *redistest.Server) (a, b *cachemgr.Manager, ca, cb *cachemgr.Cache[string]) {
	t.Helper()
	a, _ = newManager(t, s, cachemgr.WithL1(1000), cachemgr.WithL1TTL(time.Minute))
	b, _ = newManager(t, s, cachemgr.WithL1(1000), cachemgr.WithL1TTL(time.Minute))
	ca = newCache[string](t, a, "p")
	cb = newCache[string](t, b, "p")
	waitSubscribed(t, cb)
	waitSubscribed(t, ca)
	return a, b, ca, cb
}

// waitSubscribed waits until c's Manager serves L1 hits, which it does
// only while its event subscription is up.
func waitSubscribed(t *testing.T, c *cachemgr.Cache[string]) {
	t.Helper()
	ctx := context.Background()
	if err := c.Set(ctx, "probe", "x"); err != nil {
		t.Fatalf("Set(probe) error = %v", err)
	}
	waitFor(t, "the event subscription", func() bool {
		c.Get(ctx, "probe")
		_, ok := l1Hit(c, "probe")
		return ok
	})
}

// l1Hit reports whether a Get of key is answered by c's L1 tier.
func l1Hit(c *cachemgr.Cache[string], key string) (string, bool) {
	m := c.Manager()
	before := m.Stats().L1Hits
	v, err := c.Get(context.Background(), key)
	return v, err == nil && m.Stats().L1Hits == before+1
}

func TestL1ServesWithoutRedis(t *testing.T) {
	s := redistest.Start(t)
	_, _, ca, _ := l1Pair(t, s)
	ctx := context.Background()
	if err := ca.Set(ctx, "k", "v"); err != nil {
		t.Fatalf("Set() error = %v", err)
	}
	// A's own Set comes back from Redis's tracking too, and drops what a
	// read filled before it arrived.
	waitFor(t, "A to serve k from its L1", func() bool {
		ca.Get(ctx, "k")
		_, ok := l1Hit(ca, "k")
		return ok
	})
	s.Pause()
	defer s.Resume()
	start := time.Now()
	v, ok := l1Hit(ca, "k")
	if !ok || v != "v" {
		t.Errorf("Get() with Redis frozen = %q, L1 hit %v; want v from L1", v, ok)
	}
	// An L1 hit takes well under a millisecond; what this catches is one
	// that waited for frozen Redis (the op timeout, 3s in tests). A loaded
	// machine can delay any call by hundreds of milliseconds.
	if d := time.Since(start); d > time.Second {
		t.Errorf("L1 hit took %v", d)
	}
}

// TestL1Coherence proves guarantee 5: an invalidation in one process
// removes the entry from the other's L1 within milliseconds.
func TestL1Coherence(t *testing.T) {
	redistest.Each(t, func(t *testing.T, s *redistest.Server) {
		ctx := context.Background()
		tests := []struct {
			name       string
			invalidate func(ca *cachemgr.Cache[string]) error
			want       string // what B reads afterwards ("" for a miss)
		}{
			{"set", func(ca *cachemgr.Cache[string]) error { return ca.Set(ctx, "k", "new") }, "new"},
			{"delete", func(ca *cachemgr.Cache[string]) error { return ca.Delete(ctx, "k") }, ""},
			{"tags", func(ca *cachemgr.Cache[string]) error { return ca.Manager().InvalidateTags(ctx, "t") }, ""},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				_, b, ca, cb := l1Pair(t, s)
				if err := ca.Set(ctx, "k", "old", cachemgr.Tags("t")); err != nil {
					t.Fatalf("Set() error = %v", err)
				}
				// B fills its L1 once A's event for this Set has reached it
				// (a read that the event overtakes does not fill it).
				waitFor(t, "B to serve old from its L1", func() bool {
					cb.Get(ctx, "k")
					v, ok := l1Hit(cb, "k")
					return ok && v == "old"
				})
				if err := tt.invalidate(ca); err != nil {
					t.Fatalf("%s error = %v", tt.name, err)
				}
				// Delivery takes about a millisecond on a quiet machine; the
				// bound is what a loaded one meets, far below the L1 TTL
				// (a minute) that a lost event would cost.
				deadline := time.Now().Add(2 * time.Second)
				for {
					v, err := cb.Get(ctx, "k")
					got := v
					if errors.Is(err, cachemgr.ErrMiss) {
						got = ""
					}
					if got == tt.want {
						break
					}
					if time.Now().After(deadline) {
						t.Fatalf("B still reads %q 2s after A's %s, want %q", v, tt.name, tt.want)
					}
					time.Sleep(time.Millisecond)
				}
				if st := b.Stats(); st.EventsReceived == 0 {
					t.Errorf("B received no event: %+v", st)
				}
			})
		}
	})
}

func TestL1CoherenceBump(t *testing.T) {
	s := redistest.StartMini(t)
	ctx := context.Background()
	a, _ := newManager(t, s, cachemgr.WithL1(100), cachemgr.WithL1TTL(time.Minute))
	b, _ := newManager(t, s, cachemgr.WithL1(100), cachemgr.WithL1TTL(time.Minute))
	ca := newCache[string](t, a, "v", cachemgr.WithVersioned(true))
	cb := newCache[string](t, b, "v", cachemgr.WithVersioned(true))
	waitSubscribed(t, cb)
	if err := ca.Set(ctx, "k", "old"); err != nil {
		t.Fatalf("Set() error = %v", err)
	}
	// B fills its L1 once A's event for this Set has reached it.
	waitFor(t, "B to serve k from its L1", func() bool {
		cb.Get(ctx, "k")
		_, ok := l1Hit(cb, "k")
		return ok
	})
	if err := ca.Bump(ctx); err != nil {
		t.Fatalf("Bump() error = %v", err)
	}
	waitFor(t, "B to drop k after A's Bump", func() bool {
		_, err := cb.Get(ctx, "k")
		return errors.Is(err, cachemgr.ErrMiss)
	})
}

// TestL1ResyncAfterDisconnect: when the subscription drops, messages sent
// meanwhile are lost, so the L1 is flushed; the subscription comes back.
func TestL1ResyncAfterDisconnect(t *testing.T) {
	s := redistest.Start(t)
	ctx := context.Background()
	_, b, _, cb := l1Pair(t, s)
	if err := cb.Set(ctx, "k", "v"); err != nil {
		t.Fatalf("Set() error = %v", err)
	}
	// B's own Set comes back from Redis's tracking too, and drops what a
	// read filled before it arrived.
	waitFor(t, "B to serve k from its L1", func() bool {
		cb.Get(ctx, "k")
		_, ok := l1Hit(cb, "k")
		return ok
	})
	if err := s.Do(ctx, "client", "kill", "type", "pubsub").Err(); err != nil {
		t.Fatalf("CLIENT KILL TYPE pubsub error = %v", err)
	}
	waitFor(t, "a resync", func() bool { return b.Stats().Resyncs >= 1 })
	before := b.Stats().L1Hits
	cb.Get(ctx, "k")
	if b.Stats().L1Hits != before {
		t.Errorf("k still served from L1 after the resync flush")
	}
	waitFor(t, "L1 hits again", func() bool {
		_, ok := l1Hit(cb, "k")
		return ok
	})

	s.Restart()
	waitFor(t, "a resync after restart", func() bool { return b.Stats().Resyncs >= 2 })
}

func TestEventsOwnAndMalformed(t *testing.T) {
	s := redistest.StartMini(t)
	ctx := context.Background()
	a, rdb := newManager(t, s, cachemgr.WithL1(10))
	ca := newCache[string](t, a, "p")
	waitSubscribed(t, ca)
	if err := ca.Set(ctx, "k", "v"); err != nil {
		t.Fatalf("Set() error = %v", err)
	}
	for _, payload := range []string{"", "not json", `{"o":"x"}`, `{"o":"x","k":"nope"}`, "\x00\xff", `{"o":"x","k":"key","ks":5}`} {
		rdb.Publish(ctx, "test:~events", payload)
	}
	waitFor(t, "bad events counted", func() bool { return a.Stats().BadEvents == 6 })
	if st := a.Stats(); st.EventsReceived != 0 || st.EventsSent == 0 {
		t.Errorf("Stats() = %+v: own events must be ignored, others' malformed ones only counted", st)
	}
}

func TestL1Bounded(t *testing.T) {
	m, _ := newManager(t, redistest.StartMini(t), cachemgr.WithL1(64))
	c := newCache[string](t, m, "b")
	waitSubscribed(t, c)
	ctx := context.Background()
	for i := 0; i < 1000; i++ {
		k := fmt.Sprint(i)
		c.Set(ctx, k, k)
		c.Get(ctx, k)
	}
	if st := m.Stats(); st.L1Evictions < 1000-64-16 {
		t.Errorf("L1Evictions = %d after 1000 entries in a 64-entry tier", st.L1Evictions)
	}
}

func TestUserEvents(t *testing.T) {
	s := redistest.StartMini(t)
	ctx := context.Background()
	a, _ := newManager(t, s)
	b, _ := newManager(t, s)
	type priceChanged struct {
		SKU   string
		Price int
	}
	var got atomic.Value
	stop := cachemgr.Handle(b, "price", func(ctx context.Context, e priceChanged) { got.Store(e) })
	defer stop()
	waitFor(t, "a delivered event", func() bool {
		if err := cachemgr.Publish(ctx, a, "price", priceChanged{"apple", 3}); err != nil {
			t.Fatalf("Publish() error = %v", err)
		}
		e, _ := got.Load().(priceChanged)
		return e == priceChanged{"apple", 3}
	})
	var other atomic.Int32
	cachemgr.Handle(b, "other", func(context.Context, priceChanged) { other.Add(1) })
	cachemgr.Publish(ctx, a, "other", "not a struct")
	waitFor(t, "the undecodable event counted", func() bool { return b.Stats().BadEvents >= 1 })
	if other.Load() != 0 {
		t.Errorf("handler called with an undecodable event")
	}
}
