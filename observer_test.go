package cachemgr_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/cachemgr/cachemgr"
	"github.com/cachemgr/cachemgr/internal/redistest"
)

// countingObserver records what a Manager reports.
type countingObserver struct {
	mu                            sync.Mutex
	hits, l1Hits, misses, errs    int
	loads, loadEnds, loadFailures int
}

func (o *countingObserver) Hit(_ context.Context, _ string, l1, _ bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if l1 {
		o.l1Hits++
	} else {
		o.hits++
	}
}

func (o *countingObserver) Miss(context.Context, string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.misses++
}

func (o *countingObserver) Load(ctx context.Context, _ string) (context.Context, func(error)) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.loads++
	return ctx, func(err error) {
		o.mu.Lock()
		defer o.mu.Unlock()
		o.loadEnds++
		if err != nil {
			o.loadFailures++
		}
	}
}

func (o *countingObserver) Error(context.Context, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.errs++
}

func TestObserver(t *testing.T) {
	s := redistest.Start(t)
	var o countingObserver
	m, _ := newManager(t, s, cachemgr.WithObserver(&o), cachemgr.WithOpTimeout(2*time.Second))
	c := newCache[string](t, m, "obs")
	ctx := context.Background()
	load := func(context.Context) (string, error) { return "v", nil }
	c.Fetch(ctx, "k", load) // miss, load
	c.Fetch(ctx, "k", load) // hit
	c.Fetch(ctx, "bad", func(context.Context) (string, error) { return "", errors.New("boom") })
	s.Pause()
	c.Get(ctx, "k") // Redis error
	s.Resume()
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.hits != 1 || o.misses != 2 || o.loads != 2 || o.loadEnds != 2 || o.loadFailures != 1 || o.errs != 1 {
		t.Errorf("observer saw hits=%d misses=%d loads=%d ends=%d failures=%d errors=%d; want 1 2 2 2 1 1",
			o.hits, o.misses, o.loads, o.loadEnds, o.loadFailures, o.errs)
	}
	if _, err := cachemgr.New(s.Client(t), cachemgr.WithObserver(nil)); !errors.Is(err, cachemgr.ErrInvalidOption) {
		t.Errorf("New(WithObserver(nil)) error = %v, want ErrInvalidOption", err)
	}
}

// breakerObserver is a countingObserver that also records the breaker's
// transitions.
type breakerObserver struct {
	countingObserver
	tmu         sync.Mutex
	transitions []string
}

func (o *breakerObserver) Breaker(_ context.Context, open bool, cause error) {
	o.tmu.Lock()
	defer o.tmu.Unlock()
	switch {
	case open && cause != nil:
		o.transitions = append(o.transitions, "open")
	case open:
		o.transitions = append(o.transitions, "open without a cause")
	default:
		o.transitions = append(o.transitions, "closed")
	}
}

func (o *breakerObserver) seen() []string {
	o.tmu.Lock()
	defer o.tmu.Unlock()
	return append([]string(nil), o.transitions...)
}

// TestObserverBreakerTransitions: a BreakerObserver hears the breaker open
// once while Redis is down, however many calls fail, and close once when
// Redis answers again.
func TestObserverBreakerTransitions(t *testing.T) {
	s := redistest.Start(t)
	var o breakerObserver
	m, _ := newManager(t, s, cachemgr.WithObserver(&o), cachemgr.WithBreaker(2, 50*time.Millisecond))
	c := newCache[string](t, m, "brk")
	ctx := context.Background()
	if err := c.Set(ctx, "k", "v"); err != nil {
		t.Fatalf("Set() error = %v", err)
	}
	s.Kill()
	for range 20 {
		c.Get(ctx, "k")
	}
	if got := o.seen(); len(got) != 1 || got[0] != "open" {
		t.Fatalf("transitions while Redis is down = %q, want [open]", got)
	}
	s.Restart()
	waitFor(t, "the breaker to close", func() bool {
		c.Get(ctx, "k")
		return m.Stats().Breaker == "closed"
	})
	for range 20 {
		c.Get(ctx, "k")
	}
	if got := o.seen(); len(got) != 2 || got[1] != "closed" {
		t.Errorf("transitions = %q, want [open closed]", got)
	}
}
