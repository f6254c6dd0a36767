package cachemgr_test

// Fault tests: invalidations racing loads and writes — tags, bumps, a
// failed claim, a Set during a load (docs/reliability.md, group C and the
// findings of the soak).

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cachemgr/cachemgr"
	"github.com/cachemgr/cachemgr/internal/redistest"
	"github.com/redis/go-redis/v9"
)

// TestInvalidateTagsThenFetchLoadsOnce: after InvalidateTags returns, the
// first Fetch loads and the ones after it hit. With stamps by one clock
// there is no window after an invalidation in which loads are discarded.
func TestInvalidateTagsThenFetchLoadsOnce(t *testing.T) {
	s := redistest.Start(t)
	ctx := context.Background()
	m, _ := newManager(t, s)
	c := newCache[string](t, m, "once")
	loads := 0
	load := func(ctx context.Context) (string, error) {
		loads++
		cachemgr.EntryFrom(ctx).AddTags("t")
		return "v", nil
	}
	if _, err := c.Fetch(ctx, "k", load); err != nil {
		t.Fatalf("Fetch() error = %v", err)
	}
	if err := m.InvalidateTags(ctx, "t"); err != nil {
		t.Fatalf("InvalidateTags() error = %v", err)
	}
	loads = 0
	for range 20 {
		if _, err := c.Fetch(ctx, "k", load); err != nil {
			t.Fatalf("Fetch() error = %v", err)
		}
	}
	if loads != 1 {
		t.Errorf("20 Fetches after InvalidateTags made %d loads, want 1", loads)
	}
}

// TestReliabilityTagWriteFails (scenario 26): the tag stamp cannot be
// written while the value can (the stamp key holds a hash; or an ACL lets
// the user SET but not run scripts). The entry must never be readable
// without its tag (it is not: an entry whose stamp is missing or unusable
// is a miss), and Set must then report the failure instead of nil: a write
// acknowledged and never readable is a lost write.
func TestReliabilityTagWriteFails(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, admin *redis.Client) (user, password string)
	}{
		{"stamp key holds a hash", func(t *testing.T, admin *redis.Client) (string, string) {
			admin.HSet(context.Background(), "test:~tag:{tt}", "f", "v")
			return "", ""
		}},
		{"ACL denies scripts", func(t *testing.T, admin *redis.Client) (string, string) {
			relACL(t, admin, "+@read", "+set")
			return "limited", "pw"
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := redistest.Start(t)
			admin := s.Client(t)
			user, pw := tt.setup(t, admin)
			rdb := relClient(t, s.Addr(), func(o *redis.Options) { o.Username, o.Password = user, pw })
			m := managerOn(t, rdb)
			c := newCache[string](t, m, "tw")
			ctx := context.Background()
			err := c.Set(ctx, "k", "v", cachemgr.Tags("t"))
			v, gerr := c.Get(ctx, "k")
			if gerr == nil {
				t.Fatalf("Get() of an entry whose tag could not be written = %q; want a miss, never an untagged entry", v)
			}
			if err == nil {
				t.Errorf("Set(Tags(t)) = nil although its tag stamp was not written; Get then = %v (an acknowledged write nobody can read)", gerr)
			}
		})
	}
}

// TestReliabilityBumpSeenAcrossManagers (scenario 27): process A bumps
// and writes; process B, which remembers an older version, reads right
// after, 200 times. B never returns an entry of an older version.
func TestReliabilityBumpSeenAcrossManagers(t *testing.T) {
	s := redistest.Start(t)
	ctx := context.Background()
	a, _ := newManager(t, s)
	b, _ := newManager(t, s)
	ca := newCache[relItem](t, a, "bumped", cachemgr.WithVersioned(true))
	cb := newCache[relItem](t, b, "bumped", cachemgr.WithVersioned(true))
	for i := range 200 {
		if err := ca.Set(ctx, "k", relItem{Key: "k", Version: int64(i)}); err != nil {
			t.Fatalf("Set() error = %v", err)
		}
		if v, err := cb.Get(ctx, "k"); err != nil || v.Version != int64(i) {
			t.Fatalf("B: Get() #%d = %+v, %v; want version %d", i, v, err, i)
		}
		if err := ca.Bump(ctx); err != nil {
			t.Fatalf("Bump() error = %v", err)
		}
		if v, err := cb.Get(ctx, "k"); !errors.Is(err, cachemgr.ErrMiss) {
			t.Fatalf("B: Get() right after A's Bump #%d = %+v, %v; want ErrMiss", i, v, err)
		}
	}
}

// TestReliabilityJoinAfterInvalidation (guarantee 3, suspected from a
// TestSoak stale read): a load whose claim failed (a timeout, say) cannot
// write back, so it never learns of invalidations. If a Delete returns
// during that load, a Fetch that begins afterwards must not be handed the
// load's result, read before the Delete.
func TestReliabilityJoinAfterInvalidation(t *testing.T) {
	s := redistest.Start(t)
	ctx := context.Background()
	rdb := relClient(t, s.Addr(), nil)
	rdb.AddHook(&relFakeReplies{rules: []relFakeRule{
		// The first load's claim times out.
		{args: []string{"evalsha"}, err: context.DeadlineExceeded, times: 1},
	}})
	m := managerOn(t, rdb, cachemgr.WithBreaker(0, time.Second))
	c := newCache[relItem](t, m, "join")
	var db atomic.Int64
	db.Store(1)
	inLoad, release := make(chan struct{}), make(chan struct{})
	first := make(chan relItem, 1)
	go func() {
		v, _ := c.Fetch(ctx, "k", func(context.Context) (relItem, error) {
			v := db.Load() // read before the update below
			close(inLoad)
			<-release
			return relItem{Key: "k", Version: v}, nil
		})
		first <- v
	}()
	<-inLoad
	db.Store(2)
	if err := c.Delete(ctx, "k"); err != nil {
		t.Fatalf("Delete() error = %v", err)
	}
	// A Fetch that begins after the Delete returned.
	second := make(chan relItem, 1)
	go func() {
		v, _ := c.Fetch(ctx, "k", func(context.Context) (relItem, error) {
			return relItem{Key: "k", Version: db.Load()}, nil
		})
		second <- v
	}()
	relWaitJoined(t, second)
	close(release)
	if v := <-first; v.Version != 1 {
		t.Errorf("first Fetch = %+v, want its own load (version 1)", v)
	}
	if v := <-second; v.Version < 2 {
		t.Errorf("Fetch begun after Delete returned = %+v; want version 2 or later, not the load that began before the Delete", v)
	}
}

// TestReliabilityFetchAfterSet (found by TestSoak): a load is running when
// Set stores a newer value; a Fetch that begins after Set returned must
// return the Set's value (as Get does), not the older result of the load
// it found in flight.
func TestReliabilityFetchAfterSet(t *testing.T) {
	s := redistest.Start(t)
	ctx := context.Background()
	m, _ := newManager(t, s)
	c := newCache[relItem](t, m, "afterset")
	inLoad, release := make(chan struct{}), make(chan struct{})
	first := make(chan relItem, 1)
	go func() {
		v, _ := c.Fetch(ctx, "k", func(context.Context) (relItem, error) {
			close(inLoad)
			<-release
			return relItem{Key: "k", Version: 1}, nil // read before the Set
		})
		first <- v
	}()
	<-inLoad
	if err := c.Set(ctx, "k", relItem{Key: "k", Version: 2}); err != nil {
		t.Fatalf("Set() error = %v", err)
	}
	if v, err := c.Get(ctx, "k"); err != nil || v.Version != 2 {
		t.Fatalf("Get() after Set = %+v, %v; want version 2", v, err)
	}
	second := make(chan relItem, 1)
	go func() {
		v, _ := c.Fetch(ctx, "k", func(context.Context) (relItem, error) { return relItem{Key: "k", Version: 3}, nil })
		second <- v
	}()
	relWaitJoined(t, second)
	close(release)
	<-first
	if v := <-second; v.Version < 2 {
		t.Errorf("Fetch begun after Set(version 2) returned = %+v; want version 2 or later", v)
	}
}

// relWaitJoined waits until a second Fetch of a key whose load is blocked
// has either finished (done holds its result) or is waiting for that load
// inside singleflight, as a goroutine dump shows.
func relWaitJoined(t *testing.T, done chan relItem) {
	t.Helper()
	waitFor(t, "the second Fetch to join the load under way or finish", func() bool {
		buf := make([]byte, 1<<20)
		stacks := string(buf[:runtime.Stack(buf, true)])
		return len(done) == 1 || strings.Count(stacks, "singleflight.(*Group).Do(") >= 2
	})
}
