package cachemgr_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cachemgr/cachemgr"
	"github.com/cachemgr/cachemgr/internal/redistest"
	"github.com/redis/go-redis/v9"
)

// holdScripts, once armed, holds the next round trip that runs a script
// before it is sent, until release is closed: a write-back that has not
// reached Redis yet (add it to a client with sendHook{before: h.hold}).
type holdScripts struct {
	armed   atomic.Bool
	held    chan struct{}
	release chan struct{}
}

func newHoldScripts() *holdScripts {
	return &holdScripts{held: make(chan struct{}), release: make(chan struct{})}
}

// hold holds cmds until release when h is armed and they run a script.
func (h *holdScripts) hold(cmds []redis.Cmder) error {
	for _, cmd := range cmds {
		if isScript(cmd) && h.armed.CompareAndSwap(true, false) {
			close(h.held)
			<-h.release
			return nil
		}
	}
	return nil
}

// writeBehindPair returns a cache with write-behind whose client holds its
// write-back (see holdScripts), and the same cache on a second Manager:
// another process.
func writeBehindPair(t *testing.T) (*cachemgr.Cache[string], *holdScripts, *cachemgr.Cache[string], *cachemgr.Manager) {
	t.Helper()
	s := redistest.Start(t)
	hold := newHoldScripts()
	rdb := s.Client(t)
	rdb.AddHook(sendHook{before: hold.hold})
	m := managerOn(t, rdb)
	t.Cleanup(func() {
		select {
		case <-hold.release:
		default:
			close(hold.release)
		}
	})
	a := newCache[string](t, m, "wb", cachemgr.WithWriteBehind(true), cachemgr.WithTTL(time.Hour))
	other, _ := newManager(t, s)
	b := newCache[string](t, other, "wb", cachemgr.WithTTL(time.Hour))
	return a, hold, b, m
}

// TestWriteBehind: with WithWriteBehind, Fetch returns while its
// write-back has not reached Redis; a read of the key in the same process
// waits for the write-back and finds the value; another process's Fetch
// waits for it through the lease and calls no loader.
func TestWriteBehind(t *testing.T) {
	ctx := context.Background()
	a, hold, b, _ := writeBehindPair(t)
	got, err := a.Fetch(ctx, "k", func(context.Context) (string, error) {
		hold.armed.Store(true) // the next script is the write-back
		return "v1", nil
	})
	if err != nil || got != "v1" {
		t.Fatalf("Fetch = %q, %v; want v1 (returned with its write-back held)", got, err)
	}
	<-hold.held
	// The documented window: another process's Get finds nothing yet.
	if _, err := b.Get(ctx, "k"); !errors.Is(err, cachemgr.ErrMiss) {
		t.Fatalf("other process's Get during the write-back: err = %v, want ErrMiss", err)
	}
	type result struct {
		v   string
		err error
	}
	same := make(chan result, 1)
	go func() {
		v, err := a.Get(ctx, "k")
		same <- result{v, err}
	}()
	var loads atomic.Int32
	other := make(chan result, 1)
	go func() {
		v, err := b.Fetch(ctx, "k", func(context.Context) (string, error) {
			loads.Add(1)
			return "other", nil
		})
		other <- result{v, err}
	}()
	select {
	case r := <-same:
		t.Fatalf("Get in the loading process returned %q, %v while its write-back was held", r.v, r.err)
	case <-time.After(50 * time.Millisecond):
		// Not a timing assertion: a Get that has not returned yet is what
		// is expected; a slow machine only makes this check weaker.
	}
	close(hold.release)
	if r := <-same; r.err != nil || r.v != "v1" {
		t.Fatalf("Get in the loading process = %q, %v; want v1", r.v, r.err)
	}
	if r := <-other; r.err != nil || r.v != "v1" || loads.Load() != 0 {
		t.Fatalf("other process's Fetch = %q, %v with %d loader calls; want v1 and none", r.v, r.err, loads.Load())
	}
	if v, err := b.Get(ctx, "k"); err != nil || v != "v1" {
		t.Fatalf("other process's Get after the write-back = %q, %v; want v1", v, err)
	}
}

// TestWriteBehindKeepsGuard: a Delete that returns while a write-behind
// load runs keeps the load's value out of Redis, as without write-behind.
func TestWriteBehindKeepsGuard(t *testing.T) {
	ctx := context.Background()
	a, hold, b, m := writeBehindPair(t)
	close(hold.release) // nothing is held here
	got, err := a.Fetch(ctx, "k", func(context.Context) (string, error) {
		if err := b.Delete(ctx, "k"); err != nil {
			t.Errorf("Delete during the load: %v", err)
		}
		return "old", nil
	})
	if err != nil || got != "old" {
		t.Fatalf("Fetch = %q, %v; want old (it began before the Delete)", got, err)
	}
	if err := m.Close(); err != nil { // waits for the write-back
		t.Fatalf("Close: %v", err)
	}
	if v, err := b.Get(ctx, "k"); !errors.Is(err, cachemgr.ErrMiss) {
		t.Fatalf("Get after a Delete that ran during the load = %q, %v; want ErrMiss", v, err)
	}
}

// TestWriteBehindCloseWaits: Close lets a write-back that is still on its
// way land before it closes the Manager's connection.
func TestWriteBehindCloseWaits(t *testing.T) {
	ctx := context.Background()
	a, hold, b, m := writeBehindPair(t)
	if _, err := a.Fetch(ctx, "k", func(context.Context) (string, error) {
		hold.armed.Store(true)
		return "v1", nil
	}); err != nil {
		t.Fatal(err)
	}
	<-hold.held
	closed := make(chan error, 1)
	go func() { closed <- m.Close() }()
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) while a write-back was held", err)
	case <-time.After(50 * time.Millisecond):
		// Not a timing assertion: Close must still be waiting; a slow
		// machine only makes this check weaker.
	}
	close(hold.release)
	if err := <-closed; err != nil {
		t.Fatalf("Close: %v", err)
	}
	if v, err := b.Get(ctx, "k"); err != nil || v != "v1" {
		t.Fatalf("Get after Close = %q, %v; want the value written back", v, err)
	}
}
