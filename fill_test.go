package cachemgr_test

import (
	"context"
	"encoding/json"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cachemgr/cachemgr"
	"github.com/cachemgr/cachemgr/internal/redistest"
	"github.com/redis/go-redis/v9"
)

// TestFilledEvent: when a process waits for another's lease, the holder's
// write-back publishes a "filled" event of the key on the events channel,
// and the waiter returns the holder's value without a load of its own; a
// miss that nobody waited for publishes nothing.
func TestFilledEvent(t *testing.T) {
	ctx := context.Background()
	s := redistest.Start(t)
	if !s.Real() {
		t.Skip("needs redis-server: miniredis scripts do not publish")
	}
	ma, rdb := newManager(t, s)
	mb, _ := newManager(t, s)
	a := newCache[string](t, ma, "fill", cachemgr.WithTTL(time.Hour))
	b := newCache[string](t, mb, "fill", cachemgr.WithTTL(time.Hour))
	sub := rdb.Subscribe(ctx, "test:~events")
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil { // the subscription's confirmation
		t.Fatal(err)
	}
	msgs := sub.Channel()

	// A plain miss, then a message of ours: the first to arrive is ours.
	if _, err := a.Fetch(ctx, "alone", func(context.Context) (string, error) { return "v", nil }); err != nil {
		t.Fatal(err)
	}
	if err := rdb.Publish(ctx, "test:~events", "marker").Err(); err != nil {
		t.Fatal(err)
	}
	if m := <-msgs; m.Payload != "marker" {
		t.Fatalf("a miss nobody waited for published %q", m.Payload)
	}

	awaitedLoad(t, a, b)
	m := <-msgs
	var e struct {
		Kind string   `json:"k"`
		Keys []string `json:"ks"`
	}
	if err := json.Unmarshal([]byte(m.Payload), &e); err != nil || e.Kind != "filled" || len(e.Keys) != 1 || e.Keys[0] != "test:fill:{=k}" {
		t.Fatalf("event after a waited-for write-back = %q (%v), want filled of test:fill:{=k}", m.Payload, err)
	}
}

// TestFilledEventRefusedByACL: where an ACL refuses PUBLISH, the write-back
// that frees a waited-for lease still succeeds (the refused event is not its
// failure) and the waiting process gets the value by polling, without a
// load of its own.
func TestFilledEventRefusedByACL(t *testing.T) {
	s := redistest.Start(t)
	if !s.Real() {
		t.Skip("needs redis-server for ACLs")
	}
	relACL(t, s.Client(t), "+@all", "-publish")
	limited := func(o *redis.Options) { o.Username, o.Password = "limited", "pw" }
	ma := managerOn(t, s.ClientWith(t, limited))
	mb := managerOn(t, s.ClientWith(t, limited))
	a := newCache[string](t, ma, "acl", cachemgr.WithTTL(time.Hour))
	b := newCache[string](t, mb, "acl", cachemgr.WithTTL(time.Hour))
	awaitedLoad(t, a, b)
	if n := a.Stats().WriteErrors; n != 0 {
		t.Fatalf("a's write-back counted %d write errors; a refused PUBLISH must not fail it", n)
	}
}

// awaitedLoad has a load a Fetch of "k" whose loader waits until b, the
// same cache in another process, is waiting for its lease; b must return
// a's value without a load of its own.
func awaitedLoad(t *testing.T, a, b *cachemgr.Cache[string]) {
	t.Helper()
	ctx := context.Background()
	release := make(chan struct{})
	loading := make(chan struct{})
	got := make(chan string, 1)
	go func() {
		v, err := a.Fetch(ctx, "k", func(context.Context) (string, error) {
			close(loading)
			<-release
			return "from a", nil
		})
		if err != nil {
			t.Error(err)
		}
		got <- v
	}()
	<-loading
	var loads atomic.Int32
	waiter := make(chan string, 1)
	go func() {
		v, err := b.Fetch(ctx, "k", func(context.Context) (string, error) {
			loads.Add(1)
			return "from b", nil
		})
		if err != nil {
			t.Error(err)
		}
		waiter <- v
	}()
	waitFor(t, "b to wait for a's lease", func() bool { return b.Stats().LeaseWaits > 0 })
	close(release)
	if v := <-got; v != "from a" {
		t.Fatalf("a's Fetch = %q", v)
	}
	if v := <-waiter; v != "from a" || loads.Load() != 0 {
		t.Fatalf("b's Fetch = %q with %d loads; want a's value and none", v, loads.Load())
	}
}
