package breaker

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

type clock struct{ t atomic.Int64 }

func (c *clock) now() time.Time          { return time.Unix(0, c.t.Load()) }
func (c *clock) advance(d time.Duration) { c.t.Add(int64(d)) }

func TestOpensProbesAndCloses(t *testing.T) {
	var c clock
	b := New(3, time.Second, c.now)
	for i := 0; i < 2; i++ {
		b.Failure()
	}
	if !b.Allow() || b.State() != Closed {
		t.Fatalf("after 2 failures State() = %v, want closed", b.State())
	}
	b.Failure()
	if b.Allow() || b.State() != Open {
		t.Fatalf("after 3 failures Allow() = true or State() = %v, want open", b.State())
	}
	c.advance(999 * time.Millisecond)
	if b.Allow() {
		t.Fatalf("Allow() before cooldown = true, want false")
	}
	c.advance(time.Millisecond)
	if !b.Allow() {
		t.Fatalf("Allow() after cooldown = false, want one probe")
	}
	if b.Allow() {
		t.Fatalf("second Allow() while probing = true, want false")
	}
	b.Failure()
	if b.State() != Open || b.Allow() {
		t.Fatalf("failed probe: State() = %v, want open", b.State())
	}
	c.advance(time.Second)
	if !b.Allow() {
		t.Fatalf("Allow() after second cooldown = false")
	}
	b.Success()
	if b.State() != Closed || !b.Allow() {
		t.Fatalf("successful probe: State() = %v, want closed", b.State())
	}
}

func TestLostProbeDoesNotWedge(t *testing.T) {
	var c clock
	b := New(1, time.Second, c.now)
	b.Failure()
	c.advance(time.Second)
	if !b.Allow() {
		t.Fatalf("Allow() after cooldown = false")
	}
	// The probe's caller never reports back.
	c.advance(time.Second)
	if !b.Allow() {
		t.Errorf("Allow() a cooldown after a lost probe = false, want a new probe")
	}
}

func TestSuccessResetsRun(t *testing.T) {
	var c clock
	b := New(2, time.Second, c.now)
	b.Failure()
	b.Success()
	b.Failure()
	if b.State() != Closed {
		t.Errorf("non-consecutive failures: State() = %v, want closed", b.State())
	}
}

func TestDisabled(t *testing.T) {
	var c clock
	b := New(0, time.Second, c.now)
	for i := 0; i < 100; i++ {
		b.Failure()
	}
	if !b.Allow() {
		t.Errorf("threshold 0: Allow() = false, want true")
	}
}

func TestOneProbeUnderConcurrency(t *testing.T) {
	var c clock
	b := New(1, time.Second, c.now)
	b.Failure()
	c.advance(time.Second)
	var allowed atomic.Int32
	var wg sync.WaitGroup
	for i := 0; i < 64; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if b.Allow() {
				allowed.Add(1)
			}
		}()
	}
	wg.Wait()
	if got := allowed.Load(); got != 1 {
		t.Errorf("concurrent Allow() after cooldown let %d through, want 1", got)
	}
}

// TestTransitionsReportedOnce: of concurrent failures, exactly one reports
// opening the breaker; of concurrent successes, exactly one reports closing
// it; a success or failure that changes nothing reports nothing.
func TestTransitionsReportedOnce(t *testing.T) {
	b := New(3, time.Hour, time.Now)
	var opened, closed atomic.Int32
	var wg sync.WaitGroup
	for range 64 {
		wg.Go(func() {
			if b.Failure() {
				opened.Add(1)
			}
		})
	}
	wg.Wait()
	if opened.Load() != 1 || b.State() != Open {
		t.Fatalf("64 concurrent failures: %d reported opening, state %v; want 1, open", opened.Load(), b.State())
	}
	for range 64 {
		wg.Go(func() {
			if b.Success() {
				closed.Add(1)
			}
		})
	}
	wg.Wait()
	if closed.Load() != 1 || b.State() != Closed {
		t.Fatalf("64 concurrent successes: %d reported closing, state %v; want 1, closed", closed.Load(), b.State())
	}
	if b.Success() || b.Failure() {
		t.Error("a success or a first failure on a closed breaker reported a transition")
	}
	if New(0, time.Second, time.Now).Failure() {
		t.Error("a disabled breaker reported opening")
	}
}
