package session

import (
	"strconv"
	"testing"
	"time"
)

// TestRefresher checks the refresh decisions: one per key per window,
// again after forget or in the next window, every time with interval 0,
// and every time for keys beyond the bound on what it remembers.
func TestRefresher(t *testing.T) {
	var now time.Duration
	r := newRefresher(time.Minute, func() time.Duration { return now })
	if !r.due("a") {
		t.Fatal("first use: not due, want due")
	}
	now = 59 * time.Second
	if r.due("a") {
		t.Error("second use in the window: due, want not due")
	}
	if !r.due("b") {
		t.Error("another key's first use: not due, want due")
	}
	r.forget("a")
	if !r.due("a") {
		t.Error("use after forget: not due, want due")
	}
	now = time.Minute
	if !r.due("a") || r.due("a") {
		t.Error("in the next window: want due once")
	}
	r.mark("c")
	if r.due("c") {
		t.Error("use after mark in the window: due, want not due")
	}

	every := newRefresher(0, func() time.Duration { return now })
	every.mark("a")
	for i := range 3 {
		if !every.due("a") {
			t.Errorf("interval 0, use %d: not due, want due", i)
		}
	}

	for i := len(r.done); i < maxRefreshTracked; i++ {
		r.due(strconv.Itoa(i))
	}
	if len(r.done) != maxRefreshTracked {
		t.Fatalf("remembered %d keys, want %d", len(r.done), maxRefreshTracked)
	}
	for i := range 3 {
		if !r.due("beyond") {
			t.Errorf("key beyond the bound, use %d: not due, want due", i)
		}
	}
	if len(r.done) != maxRefreshTracked {
		t.Errorf("remembered %d keys after more, want at most %d", len(r.done), maxRefreshTracked)
	}
}
