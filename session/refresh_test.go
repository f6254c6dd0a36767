package session_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cachemgr/cachemgr/internal/redistest"
	"github.com/cachemgr/cachemgr/session"
)

// fakeMono is a monotonic clock that moves only when told.
type fakeMono struct{ d atomic.Int64 }

func (c *fakeMono) since() time.Duration    { return time.Duration(c.d.Load()) }
func (c *fakeMono) advance(d time.Duration) { c.d.Add(int64(d)) }

// refreshEnv returns an env on srv with the idle timeout and refresh
// interval given, its refresh windows timed by clock.
func refreshEnv(t *testing.T, srv *redistest.Server, idle, every time.Duration, clock *fakeMono) *env {
	t.Helper()
	e := newEnv(t, srv, session.WithIdleTimeout(idle), session.WithRefreshInterval(every), session.WithLifetime(24*time.Hour))
	session.SetRefreshClock(e.st, clock.since)
	return e
}

// TestRefreshInterval checks the semantics of WithRefreshInterval on
// miniredis, whose clock moves only when told, with this process's
// monotonic clock faked: a session used more often than idle - every
// stays alive however long, with one refresh per window; it ends by Redis's
// TTL between idle - every and idle after its last use; and this process's
// clock neither ends nor keeps a session.
func TestRefreshInterval(t *testing.T) {
	const idle, every = 10 * time.Minute, time.Minute
	ctx := context.Background()
	srv := redistest.StartMini(t)
	clock := &fakeMono{}
	e := refreshEnv(t, srv, idle, every, clock)
	// Both clocks move together, as they do in production.
	advance := func(d time.Duration) {
		clock.advance(d)
		srv.FastForward(d)
	}
	alive := func(id string) bool {
		t.Helper()
		return e.rdb.Exists(ctx, key(id)).Val() == 1
	}
	read := func(id string) error {
		t.Helper()
		got, err := e.getString(t, id, "a")
		if err == nil && got != "1" {
			t.Fatalf("Get(a) = %q, want 1", got)
		}
		return err
	}
	pexpires := func() int { return len(e.rec.named("pexpire")) }

	t.Run("used often, lives on", func(t *testing.T) {
		id := e.create(t, map[string]any{"a": "1"})
		before := pexpires()
		// Two idle timeouts of reads and writes, 30s apart: 40 uses.
		for i := range 40 {
			advance(30 * time.Second)
			if i%4 == 3 {
				s := e.st.Open(id)
				s.Set("b", i)
				if err := s.Save(ctx); err != nil || s.ID() != id {
					t.Fatalf("use %d: Save = %v, ID %q, want nil, %q", i, err, s.ID(), id)
				}
				continue
			}
			if err := read(id); err != nil {
				t.Fatalf("use %d, %v after creation: Get(a) error = %v, want the session alive", i, time.Duration(i+1)*30*time.Second, err)
			}
		}
		// One refresh per window of a minute: 20, give or take the
		// windows at the ends.
		if n := pexpires() - before; n < 19 || n > 21 {
			t.Errorf("PEXPIREs for 40 uses over 20 windows = %d, want 20 ± 1 (one per window)", n)
		}
	})

	t.Run("ends between idle-every and idle after its last use", func(t *testing.T) {
		// Start at a window's start: the creation refreshes, the use 59s
		// later does not, the worst case.
		if r := clock.since() % every; r != 0 {
			advance(every - r)
		}
		id := e.create(t, map[string]any{"a": "1"})
		advance(59 * time.Second)
		if err := read(id); err != nil {
			t.Fatalf("Get(a) error = %v", err)
		}
		// idle - every after the last use, and a second short of the
		// TTL's end: alive.
		advance(idle - every)
		if !alive(id) {
			t.Fatalf("session gone %v after its last use, want alive until at least then", idle-every)
		}
		// The TTL set at creation ends at 10m: Redis deletes it, 9m01s
		// after the last use.
		advance(2 * time.Second)
		if alive(id) {
			t.Fatalf("session alive %v after its last use and %v after its last refresh, want gone (idle %v)", idle-every+2*time.Second, idle+time.Second, idle)
		}
		if err := read(id); !errors.Is(err, session.ErrNoField) {
			t.Errorf("Get(a) after expiry error = %v, want ErrNoField", err)
		}
	})

	t.Run("Redis's clock alone ends it", func(t *testing.T) {
		id := e.create(t, map[string]any{"a": "1"})
		// This process's clock runs ten idle timeouts ahead, Redis's
		// does not: the session is alive and usable.
		clock.advance(10 * idle)
		if err := read(id); err != nil {
			t.Fatalf("Get(a) after this process's clock jumped error = %v, want the session alive", err)
		}
		// Redis's clock runs one idle timeout, this process's does not
		// (it would skip the refresh): Redis deletes the session.
		srv.FastForward(idle + time.Millisecond)
		if alive(id) {
			t.Fatal("session alive after an idle timeout of Redis's clock, want gone")
		}
		if err := read(id); !errors.Is(err, session.ErrNoField) {
			t.Errorf("Get(a) after expiry error = %v, want ErrNoField", err)
		}
	})
}

// TestRefreshIntervalRealServer checks the default interval on a real
// redis-server in real time: a session read every 100ms for one and a
// half idle timeouts stays alive, its TTL after the last read is more than
// idle - every, and Redis deletes it between idle - every and idle after
// that read. Timing: the reads may stall up to idle - every (2.7s) on a
// busy machine without failing the test; the upper bound allows 5s more
// for Redis's expiry cycle and the polling.
func TestRefreshIntervalRealServer(t *testing.T) {
	const idle = 3 * time.Second
	const every = idle / 10 // the default
	ctx := context.Background()
	srv := redistest.Start(t)
	redistest.RequireReal(t, srv)
	e := newEnv(t, srv, session.WithIdleTimeout(idle), session.WithLifetime(time.Hour))
	if got := session.RefreshInterval(e.st); got != every {
		t.Fatalf("default refresh interval = %v, want idle/10 = %v", got, every)
	}
	id := e.create(t, map[string]any{"a": "1"})
	var last time.Time
	for start := time.Now(); time.Since(start) < idle*3/2; {
		if _, err := e.getString(t, id, "a"); err != nil {
			t.Fatalf("Get(a) %v after creation error = %v, want the session alive", time.Since(start), err)
		}
		last = time.Now()
		<-time.After(100 * time.Millisecond)
	}
	ttl := e.pttl(t, id)
	if since := time.Since(last); ttl < idle-every-since {
		t.Errorf("PTTL %v after the last read = %v, want at least idle - every - that = %v", since, ttl, idle-every-since)
	}
	for e.rdb.Exists(ctx, key(id)).Val() == 1 {
		if time.Since(last) > idle+5*time.Second {
			t.Fatalf("session still in Redis %v after its last use (idle %v)", time.Since(last), idle)
		}
		<-time.After(10 * time.Millisecond)
	}
	// Seen gone no earlier than it went.
	if gone := time.Since(last); gone < idle-every {
		t.Errorf("session gone %v after its last use, want at least idle - every = %v", gone, idle-every)
	}
}

// TestWriteToUnknownID checks that a write to an ID Redis does not know,
// without a read before it, moves the changes to a new session and leaves
// no key at the old ID, whether or not the write carries a refresh.
func TestWriteToUnknownID(t *testing.T) {
	redistest.Each(t, func(t *testing.T, srv *redistest.Server) {
		ctx := context.Background()
		clock := &fakeMono{}
		e := refreshEnv(t, srv, 10*time.Minute, time.Minute, clock)
		for _, due := range []bool{true, false} {
			id := e.create(t, map[string]any{"a": "1"})
			if err := e.rdb.Del(ctx, key(id)).Err(); err != nil {
				t.Fatal(err)
			}
			if due {
				clock.advance(time.Minute)
			}
			s := e.st.Open(id)
			s.Set("b", "2")
			s.Delete("a")
			if err := s.Save(ctx); err != nil {
				t.Fatalf("refresh due %t: Save error = %v", due, err)
			}
			if s.ID() == id || s.ID() == "" {
				t.Errorf("refresh due %t: ID() after a write to an unknown ID = %q, want a fresh one", due, s.ID())
			}
			if n := e.rdb.Exists(ctx, key(id)).Val(); n != 0 {
				t.Errorf("refresh due %t: EXISTS of the unknown ID's key = %d, want 0", due, n)
			}
			if got, err := e.getString(t, s.ID(), "b"); got != "2" || err != nil {
				t.Errorf("refresh due %t: Get(b) of the new session = %q, %v, want 2, nil", due, got, err)
			}
			// Deletions alone at an unknown ID: nothing to keep, no key.
			d := e.st.Open(id)
			d.Delete("a")
			if err := d.Save(ctx); err != nil || d.ID() != "" {
				t.Errorf("refresh due %t: Save of a deletion at an unknown ID = %v, ID %q, want nil, new session", due, err, d.ID())
			}
			if n := e.rdb.Exists(ctx, key(id)).Val(); n != 0 {
				t.Errorf("refresh due %t: EXISTS after a deletion at an unknown ID = %d, want 0", due, n)
			}
		}
	})
}

// TestRefreshRestoresTTL checks that a session that lost its TTL (an
// operator's PERSIST) gets it back with the next refresh.
func TestRefreshRestoresTTL(t *testing.T) {
	redistest.Each(t, func(t *testing.T, srv *redistest.Server) {
		ctx := context.Background()
		clock := &fakeMono{}
		e := refreshEnv(t, srv, 10*time.Minute, time.Minute, clock)
		id := e.create(t, map[string]any{"a": "1"})
		if err := e.rdb.Persist(ctx, key(id)).Err(); err != nil {
			t.Fatal(err)
		}
		clock.advance(time.Minute)
		s := e.st.Open(id)
		s.Set("b", "2")
		if err := s.Save(ctx); err != nil || s.ID() != id {
			t.Fatalf("Save = %v, ID %q, want nil, %q (same session)", err, s.ID(), id)
		}
		if d := e.pttl(t, id); d <= 0 || d > 10*time.Minute {
			t.Errorf("PTTL after the refresh = %v, want in (0, 10m]", d)
		}
		if got, err := e.getString(t, id, "a"); got != "1" || err != nil {
			t.Errorf("Get(a) = %q, %v, want 1, nil", got, err)
		}
	})
}

// TestReadBetweenRefreshes checks what a read between two refreshes sees
// of a session that another process destroyed or renewed since this
// process's last refresh: no fields, never the old data, and the next write
// gets a new session.
func TestReadBetweenRefreshes(t *testing.T) {
	redistest.Each(t, func(t *testing.T, srv *redistest.Server) {
		ctx := context.Background()
		for _, end := range []string{"Destroy", "Renew"} {
			t.Run(end, func(t *testing.T) {
				here := refreshEnv(t, srv, 10*time.Minute, time.Minute, &fakeMono{})
				there := refreshEnv(t, srv, 10*time.Minute, time.Minute, &fakeMono{})
				// This process refreshes the session as it creates it.
				id := here.create(t, map[string]any{"a": "1"})
				o := there.st.Open(id)
				var err error
				if end == "Destroy" {
					err = o.Destroy(ctx)
				} else {
					err = o.Renew(ctx)
				}
				if err != nil {
					t.Fatalf("%s in the other process: %v", end, err)
				}
				r := here.st.Open(id)
				if got, err := session.Get[string](ctx, r, "a"); !errors.Is(err, session.ErrNoField) {
					t.Errorf("Get(a) after %s elsewhere = %q, %v, want ErrNoField", end, got, err)
				}
				r.Set("b", "2")
				if err := r.Save(ctx); err != nil {
					t.Fatalf("Save error = %v", err)
				}
				if r.ID() == id || r.ID() == o.ID() || r.ID() == "" {
					t.Errorf("ID() after a write to the ended session = %q, want a fresh one", r.ID())
				}
				if n := here.rdb.Exists(ctx, key(id)).Val(); n != 0 {
					t.Errorf("EXISTS of the ended session's key = %d, want 0", n)
				}
				if _, err := here.getString(t, r.ID(), "a"); !errors.Is(err, session.ErrNoField) {
					t.Errorf("Get(a) of the new session error = %v, want ErrNoField (none of the old data)", err)
				}
			})
		}
	})
}
