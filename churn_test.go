package cachemgr_test

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cachemgr/cachemgr/internal/redistest"
)

// TestChurnNoStale: a hot key invalidated every 25 ms, a 50 ms loader, 16
// readers. Every read is checked against the source: none returns a value
// an invalidation retired before the read began. It also reports how long
// readers waited, as a multiple of the loader's time: a reader leaves a load
// that began before it as soon as a Delete overtakes it and takes the next,
// which begins then, so it waits for at most one load that began after it
// did, plus the time to the Delete (up to 25 ms here): about 1.5x is the
// design's bound. Measured on a shared 2-core machine at p99: 1.53-1.73x at
// load average 2-4 (2.07-2.11x before readers left overtaken loads), and
// 1.6-2.9x, median 1.9x, at load average 8 (2.1-5.8x, median 2.3x, before).
// It is reported, not asserted, because it is a timing.
func TestChurnNoStale(t *testing.T) {
	const (
		loader  = 50 * time.Millisecond
		every   = 25 * time.Millisecond
		readers = 16
		reads   = 25 // per reader
	)
	s := redistest.Start(t)
	m, _ := newManager(t, s)
	c := newCache[int64](t, m, "churn")
	ctx := context.Background()

	// src is the source of truth; retired is the highest version whose
	// invalidation has returned: a read that begins later must not return
	// less.
	var src, retired atomic.Int64
	retired.Store(-1) // nothing retired yet: the first value is 0
	var loads atomic.Int64
	load := func(context.Context) (int64, error) {
		loads.Add(1)
		v := src.Load()
		time.Sleep(loader)
		return v, nil
	}
	stop := make(chan struct{})
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			v := src.Add(1)
			if err := c.Delete(ctx, "hot"); err != nil {
				t.Errorf("Delete() error = %v", err)
				return
			}
			retired.Store(v - 1)
		}
	}()

	var mu sync.Mutex
	var lat []time.Duration
	var stale atomic.Int64
	var wg sync.WaitGroup
	for range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range reads {
				floor := retired.Load() + 1
				begin := time.Now()
				v, err := c.Fetch(ctx, "hot", load)
				d := time.Since(begin)
				if err != nil {
					t.Errorf("Fetch() error = %v", err)
					return
				}
				if v < floor {
					stale.Add(1)
				}
				mu.Lock()
				lat = append(lat, d)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(stop)
	<-writerDone
	if n := stale.Load(); n != 0 {
		t.Errorf("%d reads returned a value retired before they began", n)
	}
	slices.Sort(lat)
	p50, p99 := lat[len(lat)/2], lat[len(lat)*99/100]
	t.Logf("%d reads, %d loads: p50 %v, p99 %v = %.2fx the loader", len(lat), loads.Load(), p50, p99, float64(p99)/float64(loader))
}

// TestOvertakenFlightIsLeft: a caller that joined a load which began
// before it did, and which a Delete then overtook, does not wait for that
// load to end: it takes the next load, which begins at once. The first load
// stays blocked until the second caller has its value, so the order is the
// assertion (the 10 s bound only keeps a regression from hanging).
func TestOvertakenFlightIsLeft(t *testing.T) {
	s := redistest.Start(t)
	m, _ := newManager(t, s)
	c := newCache[string](t, m, "overtaken")
	ctx := context.Background()
	gate := make(chan struct{})
	var calls atomic.Int32
	load := func(context.Context) (string, error) {
		if calls.Add(1) == 1 {
			<-gate
			return "old", nil
		}
		return "new", nil
	}
	first := make(chan string, 1)
	go func() {
		v, _ := c.Fetch(ctx, "k", load)
		first <- v
	}()
	waitFor(t, "the first load to start", func() bool { return calls.Load() == 1 })
	second := make(chan string, 1)
	go func() {
		v, err := c.Fetch(ctx, "k", load)
		if err != nil {
			t.Errorf("second Fetch() error = %v", err)
		}
		second <- v
	}()
	waitFor(t, "the second caller to join the first load", func() bool { return c.Stats().Joins >= 1 })
	if err := c.Delete(ctx, "k"); err != nil {
		t.Fatalf("Delete() error = %v", err)
	}
	select {
	case v := <-second:
		if v != "new" {
			t.Errorf("second Fetch() = %q, want %q (the load that began after the Delete)", v, "new")
		}
	case <-time.After(10 * time.Second):
		t.Errorf("the second caller still waits for the overtaken load")
	}
	close(gate)
	if v := <-first; v != "old" {
		t.Errorf("first Fetch() = %q, want %q (its own load, which began after it did)", v, "old")
	}
	if n := calls.Load(); n != 2 {
		t.Errorf("%d loader calls, want 2", n)
	}
}
