package cachemgr_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cachemgr/cachemgr"
	"github.com/cachemgr/cachemgr/internal/redistest"
	"github.com/redis/go-redis/v9"
)

// sendHook is a go-redis hook that calls before with the commands of each
// round trip (a command or a pipeline) before they are sent; when it
// returns an error, they are not sent and fail with it.
type sendHook struct {
	before func(cmds []redis.Cmder) error
}

func (h sendHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h sendHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if err := h.before([]redis.Cmder{cmd}); err != nil {
			cmd.SetErr(err)
			return err
		}
		return next(ctx, cmd)
	}
}

func (h sendHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if err := h.before(cmds); err != nil {
			for _, cmd := range cmds {
				cmd.SetErr(err)
			}
			return err
		}
		return next(ctx, cmds)
	}
}

// isScript reports whether cmd runs a script.
func isScript(cmd redis.Cmder) bool { return cmd.Name() == "evalsha" || cmd.Name() == "eval" }

// countTrips counts round trips and the scripts among their commands (add
// it to a client with sendHook{before: h.count}); loadScripts counts the
// claims and write-backs among the scripts (the scripts on a data key,
// its marker, lease and waiters), not the release of a lease.
type countTrips struct {
	trips, scripts, loadScripts atomic.Int64
}

func (h *countTrips) count(cmds []redis.Cmder) error {
	h.trips.Add(1)
	for _, cmd := range cmds {
		if isScript(cmd) {
			h.scripts.Add(1)
			if args := cmd.Args(); len(args) > 2 && args[2] == 4 {
				h.loadScripts.Add(1)
			}
		}
	}
	return nil
}

// reset returns the counts so far and starts again from zero.
func (h *countTrips) reset() (trips, scripts int64) {
	return h.trips.Swap(0), h.scripts.Swap(0)
}

// claimFirstCache returns a cache on s whose client counts its round trips,
// after enough Fetches of new keys that its cold lookups have mostly
// missed.
func claimFirstCache(t *testing.T, s *redistest.Server, opts ...cachemgr.Option) (*cachemgr.Cache[string], *countTrips) {
	t.Helper()
	return claimFirstCacheWith(t, s, opts, cachemgr.WithTTL(time.Hour))
}

// claimFirstCacheWith is claimFirstCache with the cache's options.
func claimFirstCacheWith(t *testing.T, s *redistest.Server, opts []cachemgr.Option, copts ...cachemgr.CacheOption) (*cachemgr.Cache[string], *countTrips) {
	t.Helper()
	trips := &countTrips{}
	rdb := s.Client(t)
	rdb.AddHook(sendHook{before: trips.count})
	m := managerOn(t, rdb, opts...)
	c := newCache[string](t, m, "first", copts...)
	ctx := context.Background()
	// Miss new keys until a miss takes two round trips (the claim stands
	// for the lookup): on a busy machine a lookup that times out does not
	// count as a miss, so a fixed number of misses might not be enough.
	for i := 0; ; i++ {
		if i == 100 {
			t.Fatal("100 misses of new keys and the claim never stood for the lookup")
		}
		trips.reset()
		if _, err := c.Fetch(ctx, fmt.Sprint("warm", i), func(context.Context) (string, error) { return "w", nil }); err != nil {
			t.Fatal(err)
		}
		if n, _ := trips.reset(); n == 2 {
			return c, trips
		}
	}
}

// TestClaimFirst: once a cache's cold lookups mostly miss, a Fetch miss
// takes two round trips, as a hand-written GET and SET do (the claim reads
// the key, the write-back writes it), not three; a key that another
// process stored is still found by that claim, without a load; and once
// cold lookups mostly hit, Fetch reads with a plain GET again.
func TestClaimFirst(t *testing.T) {
	ctx := context.Background()
	s := redistest.Start(t)
	c, trips := claimFirstCache(t, s)
	other := newCache[string](t, managerOn(t, s.Client(t)), "first", cachemgr.WithTTL(time.Hour))

	trips.reset()
	if v, err := c.Fetch(ctx, "new", func(context.Context) (string, error) { return "loaded", nil }); err != nil || v != "loaded" {
		t.Fatalf("Fetch of a missing key = %q, %v", v, err)
	}
	if n, scripts := trips.reset(); n != 2 || scripts != 2 {
		t.Fatalf("Fetch miss: %d round trips with %d scripts, want 2 (claim, write-back)", n, scripts)
	}
	if v, err := other.Get(ctx, "new"); err != nil || v != "loaded" {
		t.Fatalf("Get of the loaded key elsewhere = %q, %v", v, err)
	}

	before := c.Stats()
	for i := range 20 {
		key := fmt.Sprint("stored", i)
		if err := other.Set(ctx, key, "stored"); err != nil {
			t.Fatal(err)
		}
		v, err := c.Fetch(ctx, key, func(context.Context) (string, error) {
			t.Errorf("loader called for %s, which Redis holds", key)
			return "", nil
		})
		if err != nil || v != "stored" {
			t.Fatalf("Fetch of stored key %s = %q, %v", key, v, err)
		}
	}
	after := c.Stats()
	if hits := after.Hits - before.Hits; hits != 20 || after.Misses != before.Misses {
		t.Fatalf("20 Fetches of stored keys: %d hits, %d misses; want 20, 0", hits, after.Misses-before.Misses)
	}
	trips.reset()
	if err := other.Set(ctx, "plain", "stored"); err != nil {
		t.Fatal(err)
	}
	if v, err := c.Fetch(ctx, "plain", func(context.Context) (string, error) { return "", errors.New("no load") }); err != nil || v != "stored" {
		t.Fatalf("Fetch after cold lookups hit = %q, %v", v, err)
	}
	if _, scripts := trips.reset(); scripts != 0 {
		t.Fatalf("Fetch hit after cold lookups mostly hit sent %d scripts, want a plain GET", scripts)
	}
}

// TestClaimFirstRedisStopped: when Redis stops answering, a Fetch whose
// claim is its lookup sends that claim once and answers from the loader
// without a write-back: one op timeout, as a failed lookup costs.
func TestClaimFirstRedisStopped(t *testing.T) {
	ctx := context.Background()
	s := redistest.Start(t)
	if !s.Real() {
		t.Skip("needs a redis-server to pause")
	}
	c, trips := claimFirstCache(t, s, cachemgr.WithOpTimeout(300*time.Millisecond), cachemgr.WithWriteTimeout(300*time.Millisecond))
	s.Pause()
	defer s.Resume()
	trips.reset()
	trips.loadScripts.Store(0)
	v, err := c.Fetch(ctx, "k", func(context.Context) (string, error) { return "from source", nil })
	if err != nil || v != "from source" {
		t.Fatalf("Fetch with Redis paused = %q, %v; want the loader's value", v, err)
	}
	// (The release of the lease the claim may have taken is retried in
	// the background until Redis answers: not counted.)
	if n := trips.loadScripts.Load(); n != 1 {
		t.Fatalf("Fetch with Redis paused sent %d claims and write-backs, want 1 (the claim, not retried, no write-back)", n)
	}
}

// TestClaimFirstFillsL1: a value that a claim standing for the lookup
// finds fills the L1 tier, as a read's would: the next read is an L1 hit.
// (A fill is refused when an invalidation arrives between the read and the
// fill: here the tracking message of another process's Set may, so the
// test looks for one fill that held, not a fill every time.)
func TestClaimFirstFillsL1(t *testing.T) {
	ctx := context.Background()
	s := redistest.Start(t)
	c, trips := claimFirstCacheWith(t, s, nil, cachemgr.WithTTL(time.Hour), cachemgr.WithCacheL1(1000, 0))
	if err := c.Set(ctx, "ready", "r"); err != nil {
		t.Fatal(err)
	}
	waitL1Hit(t, c, "ready") // the L1 tier's sources are up
	other := newCache[string](t, managerOn(t, s.Client(t)), "first", cachemgr.WithTTL(time.Hour))
	noLoad := func(context.Context) (string, error) { return "", errors.New("no load") }
	filled := false
	for i := 0; !filled; i++ {
		if i == 200 {
			t.Fatal("no L1 hit after 200 values found by a claim")
		}
		// A miss keeps the cache's cold lookups mostly missing.
		if _, err := c.Fetch(ctx, fmt.Sprint("missing", i), func(context.Context) (string, error) { return "m", nil }); err != nil {
			t.Fatal(err)
		}
		key := fmt.Sprint("x", i)
		if err := other.Set(ctx, key, "stored"); err != nil {
			t.Fatal(err)
		}
		trips.reset()
		if v, err := c.Fetch(ctx, key, noLoad); err != nil || v != "stored" {
			t.Fatalf("Fetch = %q, %v", v, err)
		}
		if n, scripts := trips.reset(); n != 1 || scripts != 1 {
			t.Fatalf("Fetch of a stored cold key: %d round trips with %d scripts, want the claim alone", n, scripts)
		}
		before := c.Stats().L1Hits
		if v, err := c.Get(ctx, key); err != nil || v != "stored" {
			t.Fatalf("Get = %q, %v", v, err)
		}
		filled = c.Stats().L1Hits > before
	}
}

// TestClaimFirstPendingTagInvalidation: a value that a claim standing for
// the lookup finds is not served while this process's invalidation of one
// of its tags is still waiting to land, as a lookup's would not be.
func TestClaimFirstPendingTagInvalidation(t *testing.T) {
	ctx := context.Background()
	s := redistest.Start(t)
	var failTags atomic.Bool
	rdb := s.Client(t)
	rdb.AddHook(sendHook{before: func(cmds []redis.Cmder) error {
		for _, cmd := range cmds {
			// The invalidation's script on the tag's stamp key times out.
			args := cmd.Args()
			if failTags.Load() && isScript(cmd) && len(args) > 3 && strings.Contains(fmt.Sprint(args[3]), "~tag:") {
				return errFlaky
			}
		}
		return nil
	}})
	m := managerOn(t, rdb, cachemgr.WithWriteTimeout(200*time.Millisecond))
	c := newCache[string](t, m, "first", cachemgr.WithTTL(time.Hour))
	for i := range 4 { // cold lookups that miss
		if _, err := c.Fetch(ctx, fmt.Sprint("warm", i), func(context.Context) (string, error) { return "w", nil }); err != nil {
			t.Fatal(err)
		}
	}
	other := newCache[string](t, managerOn(t, s.Client(t)), "first", cachemgr.WithTTL(time.Hour))
	if err := other.Set(ctx, "k", "old", cachemgr.Tags("t1")); err != nil {
		t.Fatal(err)
	}
	failTags.Store(true)
	if err := m.InvalidateTags(ctx, "t1"); !errors.Is(err, cachemgr.ErrUnavailable) {
		t.Fatalf("InvalidateTags with its write failing: %v, want ErrUnavailable (pending)", err)
	}
	v, err := c.Fetch(ctx, "k", func(context.Context) (string, error) { return "new", nil })
	if err != nil || v != "new" {
		t.Fatalf("Fetch while the invalidation of its tag is pending = %q, %v; want the loader's value", v, err)
	}
}

// TestClaimFirstVersioned: on a versioned cache a claim standing for the
// lookup also makes a miss two round trips; after another process's Bump
// it never returns the retired namespace's value, and it learns the new
// version for the claims that follow.
func TestClaimFirstVersioned(t *testing.T) {
	ctx := context.Background()
	s := redistest.Start(t)
	c, trips := claimFirstCacheWith(t, s, nil, cachemgr.WithTTL(time.Hour), cachemgr.WithVersioned(true))
	other := newCache[string](t, managerOn(t, s.Client(t)), "first", cachemgr.WithTTL(time.Hour), cachemgr.WithVersioned(true))
	load := func(v string) func(context.Context) (string, error) {
		return func(context.Context) (string, error) { return v, nil }
	}
	trips.reset()
	if v, err := c.Fetch(ctx, "a", load("a1")); err != nil || v != "a1" {
		t.Fatalf("Fetch(a) = %q, %v", v, err)
	}
	if n, scripts := trips.reset(); n != 2 || scripts != 2 {
		t.Fatalf("versioned Fetch miss: %d round trips with %d scripts, want 2 (claim, write-back)", n, scripts)
	}
	if err := other.Bump(ctx); err != nil {
		t.Fatal(err)
	}
	// "a" holds a1 in the retired namespace: a claim made there must not
	// return it.
	if v, err := c.Fetch(ctx, "a", load("a2")); err != nil || v != "a2" {
		t.Fatalf("Fetch(a) after another process's Bump = %q, %v; want a2 from the loader", v, err)
	}
	if v, err := c.Fetch(ctx, "b", load("b1")); err != nil || v != "b1" {
		t.Fatalf("Fetch(b) = %q, %v", v, err)
	}
	if v, err := other.Get(ctx, "b"); err != nil || v != "b1" {
		t.Fatalf("Get(b) in the new namespace elsewhere = %q, %v; want b1 (written back in the version learned)", v, err)
	}
}
