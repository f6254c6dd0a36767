package coherence

import (
	"context"
	"testing"
	"time"

	"github.com/cachemgr/cachemgr/internal/redistest"
	"github.com/redis/go-redis/v9"
)

// TestPubSubDialer: a stalled subscription drops what is published while
// the client's other connections go on working; a cut one reconnects and
// resubscribes, and receives what is published afterwards.
func TestPubSubDialer(t *testing.T) {
	s := redistest.StartMini(t)
	d := newPubSubDialer()
	rdb := s.ClientWith(t, func(o *redis.Options) { o.Dialer = d.DialContext })
	pub := s.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	ps := rdb.Subscribe(ctx, "ch")
	defer ps.Close()
	receive := func() any {
		t.Helper()
		msg, err := ps.Receive(ctx)
		if err != nil {
			t.Fatalf("Receive() error = %v", err)
		}
		return msg
	}
	if msg, ok := receive().(*redis.Subscription); !ok || msg.Kind != "subscribe" {
		t.Fatalf("first Receive() = %v, want the subscription", msg)
	}
	if err := rdb.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("Set() error = %v", err)
	}
	if n := d.Stall(); n != 1 {
		t.Fatalf("Stall() = %d connections, want 1 (the subscription's, not the data connection)", n)
	}
	type result struct {
		msg any
		err error
	}
	stalled := make(chan result, 1)
	go func() {
		msg, err := ps.Receive(ctx)
		stalled <- result{msg, err}
	}()
	if err := pub.Publish(ctx, "ch", "lost").Err(); err != nil {
		t.Fatalf("Publish() error = %v", err)
	}
	for d.dropped.Load() == 0 {
		select {
		case r := <-stalled:
			t.Fatalf("Receive() on a stalled subscription = %v, %v; want it to wait", r.msg, r.err)
		case <-ctx.Done():
			t.Fatalf("the stalled subscription never read the message published")
		case <-time.After(time.Millisecond):
		}
	}
	if got, err := rdb.Get(ctx, "k").Result(); got != "v" || err != nil {
		t.Fatalf("Get() with the subscription stalled = %q, %v, want v, nil", got, err)
	}
	if n := d.Cut(); n != 1 {
		t.Fatalf("Cut() = %d connections, want 1", n)
	}
	if r := <-stalled; r.err == nil {
		t.Fatalf("Receive() on a stalled, then cut, subscription = %v, want an error", r.msg)
	}
	// The next Receive reconnects and subscribes again.
	if msg, ok := receive().(*redis.Subscription); !ok || msg.Kind != "subscribe" {
		t.Fatalf("Receive() after the cut = %v, want the subscription again", msg)
	}
	if err := pub.Publish(ctx, "ch", "after").Err(); err != nil {
		t.Fatalf("Publish() error = %v", err)
	}
	if m, ok := receive().(*redis.Message); !ok || m.Payload != "after" {
		t.Fatalf("Receive() after the cut = %v, want message after", m)
	}
}
