package cachemgr

import (
	"context"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cachemgr/cachemgr/internal/redistest"
)

// TestRememberedVersionMovesBack: concurrent reads of a versioned cache
// store the version each one saw, and replies arrive in any order, so the
// version a process remembers can move back to one a Bump already retired.
// A Fetch that begins after the Bump returned then finds the old
// namespace's load in flight and joins it; it must not return that load's
// result, which the Bump retired.
func TestRememberedVersionMovesBack(t *testing.T) {
	ctx := context.Background()
	s := redistest.Start(t)
	m, err := New(s.Client(t), WithPrefix("test"), WithLogger(slog.New(slog.DiscardHandler)), WithOpTimeout(3*time.Second))
	if err != nil {
		t.Fatalf("New() error = %v", err)
	}
	t.Cleanup(func() { m.Close() })
	c, err := NewCache[int64](m, "back", WithVersioned(true))
	if err != nil {
		t.Fatalf("NewCache() error = %v", err)
	}
	var db atomic.Int64
	db.Store(1)
	old, err := c.currentVersion(ctx)
	if err != nil {
		t.Fatalf("currentVersion() error = %v", err)
	}

	entered, release := make(chan struct{}), make(chan struct{})
	first := make(chan int64, 1)
	go func() {
		v, _ := c.Fetch(ctx, "x", func(context.Context) (int64, error) {
			v := db.Load()
			close(entered)
			<-release
			return v, nil
		})
		first <- v
	}()
	<-entered
	db.Store(2)
	if err := c.Bump(ctx); err != nil {
		t.Fatalf("Bump() error = %v", err)
	}
	c.version.Store(&old) // a read that saw the old version stored it late

	second := make(chan int64, 1)
	go func() {
		v, _ := c.Fetch(ctx, "x", func(context.Context) (int64, error) { return db.Load(), nil })
		second <- v
	}()
	deadline := time.Now().Add(time.Minute)
	for c.stats.joins.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the second Fetch never joined the load in flight")
		}
		time.Sleep(time.Millisecond)
	}
	close(release)
	if v := <-first; v != 1 {
		t.Errorf("first Fetch() = %d, want 1", v)
	}
	if v := <-second; v != 2 {
		t.Errorf("Fetch() begun after Bump returned = %d, want 2", v)
	}
}
