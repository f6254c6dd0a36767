package breaker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
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

// TestTimeoutWhileOthersAnswer: timeouts while calls still succeed within
// the window (a live but slow Redis, a burst queueing behind itself) do not
// open the breaker; once nothing has answered for a window, they count.
func TestTimeoutWhileOthersAnswer(t *testing.T) {
	var c clock
	c.advance(time.Hour)
	b := New(3, time.Second, c.now)
	const window = 10 * time.Millisecond
	if b.answering(window) {
		t.Fatalf("answering() before any success = true")
	}
	for range 10 {
		b.Success()
		c.advance(window / 2)
		if !b.answering(window) {
			t.Fatalf("answering() %v after a success = false", window/2)
		}
		if b.Timeout(window) || b.State() != Closed {
			t.Fatalf("a timeout %v after a success opened the breaker", window/2)
		}
	}
	c.advance(window)
	if b.answering(window) {
		t.Fatalf("answering() %v after the last success = true", 3*window/2)
	}
	for i := range 3 {
		opened := b.Timeout(window)
		if want := i == 2; opened != want {
			t.Fatalf("timeout %d with no reply for a window: opened = %v, want %v", i+1, opened, want)
		}
		c.advance(window)
	}
	if b.State() != Open {
		t.Fatalf("State() after 3 timeouts a window apart = %v, want open", b.State())
	}
}

// TestConcurrentTimeoutsCountOnce: the timeouts of a burst, within one
// window of each other, count as one failure; a failure that is not a
// timeout counts on its own.
func TestConcurrentTimeoutsCountOnce(t *testing.T) {
	var c clock
	c.advance(time.Hour)
	b := New(2, time.Second, c.now)
	const window = 10 * time.Millisecond
	var wg sync.WaitGroup
	for range 64 {
		wg.Go(func() { b.Failed(os.ErrDeadlineExceeded, window) })
	}
	wg.Wait()
	if b.State() != Closed {
		t.Fatalf("64 concurrent timeouts opened a breaker of threshold 2: they must count once")
	}
	if !b.Failed(errors.New("connection refused"), window) || b.State() != Open {
		t.Fatalf("a refused connection after a counted timeout did not open a breaker of threshold 2")
	}
}

// TestIsTimeout: deadlines and network timeouts are timeouts; other errors
// are not.
func TestIsTimeout(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{context.DeadlineExceeded, true},
		{fmt.Errorf("dial: %w", context.DeadlineExceeded), true},
		{&net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}, true},
		{&net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}, false},
		{context.Canceled, false},
		{errors.New("boom"), false},
	} {
		if got := IsTimeout(tc.err); got != tc.want {
			t.Errorf("IsTimeout(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}
