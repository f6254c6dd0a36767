package cachemgr_test

// Fault tests: the server's state — error replies that must or must not
// open the breaker, maxmemory, ACLs, a flushed script cache, evicted
// companion keys, FLUSHALL (docs/reliability.md, groups A and C).

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cachemgr/cachemgr"
	"github.com/cachemgr/cachemgr/internal/faultproxy"
	"github.com/cachemgr/cachemgr/internal/redistest"
	"github.com/redis/go-redis/v9"
)

// TestReliabilityBreakerClassification (scenario 10): only failures to
// reach Redis (refused dial, reset, timeout) open the breaker. A miss
// (redis.Nil) and error replies (WRONGTYPE, NOPERM, OOM) are answers: they
// are counted when they are errors, fail the call that caused them, and
// leave the breaker closed.
func TestReliabilityBreakerClassification(t *testing.T) {
	const failures = 3
	tests := []struct {
		name      string
		setup     func(t *testing.T, s *redistest.Server, p *faultproxy.Proxy, admin *redis.Client)
		call      func(ctx context.Context, c *cachemgr.Cache[string]) error
		wantOpen  bool
		wantCount bool // counted in RedisErrors
	}{
		{"miss", nil, func(ctx context.Context, c *cachemgr.Cache[string]) error {
			_, err := c.Get(ctx, "absent")
			return err
		}, false, false},
		{"WRONGTYPE", func(t *testing.T, _ *redistest.Server, _ *faultproxy.Proxy, admin *redis.Client) {
			admin.HSet(context.Background(), "test:cls:{=k}", "f", "v")
		}, func(ctx context.Context, c *cachemgr.Cache[string]) error {
			_, err := c.Get(ctx, "k")
			return err
		}, false, true},
		{"NOPERM", func(t *testing.T, _ *redistest.Server, _ *faultproxy.Proxy, admin *redis.Client) {
			relACL(t, admin, "+@all", "-set")
		}, func(ctx context.Context, c *cachemgr.Cache[string]) error {
			return c.Set(ctx, "k", "v")
		}, false, true},
		{"OOM", func(t *testing.T, _ *redistest.Server, _ *faultproxy.Proxy, admin *redis.Client) {
			relOOM(t, admin)
		}, func(ctx context.Context, c *cachemgr.Cache[string]) error {
			return c.Set(ctx, "k", "v")
		}, false, true},
		{"connection refused", func(t *testing.T, s *redistest.Server, _ *faultproxy.Proxy, _ *redis.Client) {
			s.Kill()
		}, func(ctx context.Context, c *cachemgr.Cache[string]) error {
			_, err := c.Get(ctx, "k")
			return err
		}, true, true},
		{"connection reset", func(t *testing.T, _ *redistest.Server, p *faultproxy.Proxy, _ *redis.Client) {
			p.Refuse(true)
			p.CutAll()
		}, func(ctx context.Context, c *cachemgr.Cache[string]) error {
			_, err := c.Get(ctx, "k")
			return err
		}, true, true},
		{"timeout", func(t *testing.T, _ *redistest.Server, p *faultproxy.Proxy, _ *redis.Client) {
			p.Blackhole(true)
		}, func(ctx context.Context, c *cachemgr.Cache[string]) error {
			_, err := c.Get(ctx, "k")
			return err
		}, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := redistest.Start(t)
			p := faultproxy.New(t, s.Addr())
			admin := s.Client(t)
			rdb := relClient(t, p.Addr(), func(o *redis.Options) { o.Username, o.Password = relACLUser(tt.name) })
			// Only the blackholed case is about timeouts: it times out
			// whatever the load, at a short op timeout. The others must
			// not, so they get one that a loaded machine meets (a miss
			// timed out at 50 ms under CPU load in CI).
			op := 5 * time.Second
			if tt.name == "timeout" {
				op = 50 * time.Millisecond
			}
			m := managerOn(t, rdb, cachemgr.WithOpTimeout(op), cachemgr.WithBreaker(failures, time.Minute))
			c := newCache[string](t, m, "cls")
			ctx := context.Background()
			if tt.setup != nil {
				tt.setup(t, s, p, admin)
			}
			var errs []error
			for range 2 * failures {
				errs = append(errs, tt.call(ctx, c))
			}
			st := m.Stats()
			if got := st.Breaker == "open"; got != tt.wantOpen {
				t.Errorf("after %d calls failing with %s: breaker %s, want open %v (errors %v)", 2*failures, tt.name, st.Breaker, tt.wantOpen, errs)
			}
			if got := st.RedisErrors > 0; got != tt.wantCount {
				t.Errorf("after %s: RedisErrors = %d, want counted %v", tt.name, st.RedisErrors, tt.wantCount)
			}
			for _, err := range errs[:failures] {
				if err == nil {
					t.Errorf("a call failing with %s returned nil", tt.name)
				}
				if unavailable := errors.Is(err, cachemgr.ErrUnavailable); unavailable != tt.wantOpen {
					t.Errorf("error %v: ErrUnavailable %v, want %v", err, unavailable, tt.wantOpen)
				}
			}
		})
	}
}

// relOOM makes every write that may grow memory fail with OOM: the
// policy is noeviction and maxmemory lies below the memory in use. Reads
// and DEL keep working.
func relOOM(t *testing.T, admin *redis.Client) {
	t.Helper()
	ctx := context.Background()
	used := relInfoInt(t, admin, "memory", "used_memory")
	for _, kv := range [][2]string{{"maxmemory-policy", "noeviction"}, {"maxmemory", strconv.FormatInt(used/2, 10)}} {
		if err := admin.ConfigSet(ctx, kv[0], kv[1]).Err(); err != nil {
			t.Fatalf("CONFIG SET %s %s: %v", kv[0], kv[1], err)
		}
	}
	if err := admin.Set(ctx, "oom-probe", "x", time.Minute).Err(); err == nil || !strings.HasPrefix(err.Error(), "OOM") {
		t.Fatalf("SET under maxmemory = %v, want an OOM error", err)
	}
}

// relCaches starts a server and returns its admin client, a Manager on
// it, and two caches of relItem: name, and name+"v", which is versioned.
func relCaches(t *testing.T, name string) (*redis.Client, *cachemgr.Manager, *cachemgr.Cache[relItem], *cachemgr.Cache[relItem]) {
	s := redistest.Start(t)
	m, _ := newManager(t, s)
	return s.Client(t), m, newCache[relItem](t, m, name), newCache[relItem](t, m, name+"v", cachemgr.WithVersioned(true))
}

// TestReliabilityMaxmemoryNoeviction: with maxmemory reached and
// noeviction, writes fail with a clear error (not ErrUnavailable, and the
// breaker stays closed), reads and Fetch keep working from what is cached
// and from the loader, and the errors are counted. Invalidations either
// work or report an error: never nil with the entry still readable.
func TestReliabilityMaxmemoryNoeviction(t *testing.T) {
	noLeaks(t)
	admin, m, c, vc := relCaches(t, "oom")
	ctx := context.Background()
	for i := range 20 {
		key := fmt.Sprint("k", i)
		if err := c.Set(ctx, key, relItem{Key: key}, cachemgr.Tags("t")); err != nil {
			t.Fatalf("Set(%q) error = %v", key, err)
		}
		if err := vc.Set(ctx, key, relItem{Key: key}); err != nil {
			t.Fatalf("versioned Set(%q) error = %v", key, err)
		}
	}
	relOOM(t, admin)
	before := m.Stats()

	err := c.Set(ctx, "new", relItem{Key: "new"})
	if err == nil || errors.Is(err, cachemgr.ErrUnavailable) || !strings.Contains(err.Error(), "OOM") {
		t.Errorf("Set() at maxmemory error = %v, want Redis' OOM error, not ErrUnavailable", err)
	}
	for _, key := range []string{"k1", "k2"} {
		if v, err := c.Get(ctx, key); err != nil || v.Key != key {
			t.Errorf("Get(%q) at maxmemory = %+v, %v; want the cached value", key, v, err)
		}
		if v, err := vc.Get(ctx, key); err != nil || v.Key != key {
			t.Errorf("versioned Get(%q) at maxmemory = %+v, %v; want the cached value", key, v, err)
		}
	}
	loads := 0
	load := func(key string) func(context.Context) (relItem, error) {
		return func(context.Context) (relItem, error) { loads++; return relItem{Key: key}, nil }
	}
	if v, err := c.Fetch(ctx, "k3", load("k3")); err != nil || v.Key != "k3" || loads != 0 {
		t.Errorf("Fetch(cached) at maxmemory = %+v, %v with %d loads; want a hit", v, err, loads)
	}
	for _, key := range []string{"missing1", "missing2"} {
		if v, err := c.Fetch(ctx, key, load(key)); err != nil || v.Key != key {
			t.Errorf("Fetch(%q) at maxmemory = %+v, %v; want the loader's value", key, v, err)
		}
	}
	st := m.Stats()
	if st.Breaker != "closed" {
		t.Errorf("breaker at maxmemory = %s, want closed: Redis is up", st.Breaker)
	}
	// One OOM reply for the Set, and one for each Fetch's attempt to
	// write (its lease claim or its write-back).
	if st.RedisErrors < before.RedisErrors+3 {
		t.Errorf("Stats() at maxmemory = %+v, want at least 3 OOM replies counted as Redis errors (before: %d)", st, before.RedisErrors)
	}

	// Invalidation under OOM: each either takes effect or says it did not.
	invalidations := []struct {
		name  string
		do    func() error
		cache *cachemgr.Cache[relItem]
		key   string
	}{
		{"Delete", func() error { return c.Delete(ctx, "k4") }, c, "k4"},
		{"Delete of an absent key", func() error { return c.Delete(ctx, "absent") }, c, "absent"},
		{"InvalidateTags", func() error { return m.InvalidateTags(ctx, "t") }, c, "k5"},
		{"Bump", func() error { return vc.Bump(ctx) }, vc, "k6"},
	}
	for _, inv := range invalidations {
		err := inv.do()
		_, gerr := inv.cache.Get(ctx, inv.key)
		t.Logf("at maxmemory: %s = %v; Get(%q) after it = %v", inv.name, err, inv.key, gerr)
		if err == nil && gerr == nil {
			t.Errorf("%s at maxmemory returned nil but Get(%q) still hits", inv.name, inv.key)
		}
	}
}

// TestReliabilityReadOnlyUser (scenario 13): a client that may only read
// (an ACL user with +@read) meets an undecodable value. Fetch calls the
// loader once and returns its value, without a retry loop; every write
// path (Set, Delete, InvalidateTags, Bump) returns an error, never nil;
// the breaker stays closed since Redis answers.
func TestReliabilityReadOnlyUser(t *testing.T) {
	noLeaks(t)
	s := redistest.Start(t)
	admin := s.Client(t)
	relACL(t, admin, "+@read")
	rdb := relClient(t, s.Addr(), func(o *redis.Options) { o.Username, o.Password = "limited", "pw" })
	m := managerOn(t, rdb, cachemgr.WithOpTimeout(200*time.Millisecond))
	c := newCache[relItem](t, m, "ro")
	vc := newCache[relItem](t, m, "rov", cachemgr.WithVersioned(true))
	ctx := context.Background()
	if err := admin.Set(ctx, "test:ro:{=k}", "\xce garbage", time.Minute).Err(); err != nil {
		t.Fatalf("SET garbage: %v", err)
	}
	var loads atomic.Int32
	start := time.Now()
	v, err := c.Fetch(ctx, "k", func(context.Context) (relItem, error) {
		loads.Add(1)
		return relItem{Key: "k"}, nil
	})
	if err != nil || v.Key != "k" {
		t.Errorf("Fetch(undecodable, read-only) = %+v, %v; want the loader's value", v, err)
	}
	if n := loads.Load(); n != 1 {
		t.Errorf("loader calls = %d, want 1", n)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("Fetch took %v, want no retry loop", took)
	}
	writes := []struct {
		name string
		do   func() error
	}{
		{"Set", func() error { return c.Set(ctx, "k", relItem{Key: "k"}) }},
		{"Set with tags", func() error { return c.Set(ctx, "k", relItem{Key: "k"}, cachemgr.Tags("t")) }},
		{"Delete", func() error { return c.Delete(ctx, "k") }},
		{"InvalidateTags", func() error { return m.InvalidateTags(ctx, "t") }},
		{"Bump", func() error { return vc.Bump(ctx) }},
	}
	for _, wr := range writes {
		if err := wr.do(); err == nil || errors.Is(err, cachemgr.ErrUnavailable) {
			t.Errorf("%s by a read-only user = %v, want Redis' NOPERM error", wr.name, err)
		}
	}
	n, err := c.InvalidatePrefix(ctx, "")
	if err == nil {
		t.Errorf("InvalidatePrefix by a read-only user = %d, nil; want an error", n)
	}
	if got, err := admin.Get(ctx, "test:ro:{=k}").Result(); err != nil || got != "\xce garbage" {
		t.Errorf("the undecodable value = %q, %v; want it untouched (DEL not allowed)", got, err)
	}
	if st := m.Stats(); st.Breaker != "closed" || st.DecodeErrors == 0 {
		t.Errorf("Stats() = %+v, want breaker closed and the decode error counted", st)
	}
}

// TestReliabilityScriptCacheFlushed (scenario 14): SCRIPT FLUSH before
// every operation, single scripts and scripts inside pipelines alike. Each
// operation still works (NOSCRIPT answered by sending the source) and
// NOSCRIPT is not counted as a Redis error.
func TestReliabilityScriptCacheFlushed(t *testing.T) {
	noLeaks(t)
	admin, m, c, vc := relCaches(t, "noscript")
	ctx := context.Background()
	item := func(k string) relItem { return relItem{Key: k} }
	load := func(k string) func(context.Context) (relItem, error) {
		return func(context.Context) (relItem, error) { return item(k), nil }
	}
	steps := []struct {
		name string
		do   func() error
	}{
		{"versioned Get (version script)", func() error {
			if _, err := vc.Get(ctx, "a"); !errors.Is(err, cachemgr.ErrMiss) {
				return err
			}
			return nil
		}},
		{"Set with two tags (two scripts and SET in one pipeline)", func() error { return c.Set(ctx, "a", item("a"), cachemgr.Tags("t1", "t2")) }},
		{"Fetch write-back with a tag (pipeline)", func() error {
			// A tag of its own: a load that began within the clock-skew
			// allowance after t1's stamp was created would be unreadable.
			_, err := c.Fetch(ctx, "b", load("b"), cachemgr.Tags("t3"))
			return err
		}},
		{"tagged Get", func() error {
			v, err := c.Get(ctx, "b")
			if err == nil && v.Key != "b" {
				return fmt.Errorf("got %+v", v)
			}
			return err
		}},
		{"InvalidateTags of three tags (pipeline of scripts)", func() error { return m.InvalidateTags(ctx, "t1", "t2", "t3") }},
		{"Get of an invalidated entry (drop script)", func() error {
			if _, err := c.Get(ctx, "a"); !errors.Is(err, cachemgr.ErrMiss) {
				return fmt.Errorf("Get = %v, want ErrMiss", err)
			}
			return nil
		}},
		{"Delete", func() error { return c.Delete(ctx, "b") }},
		{"Bump", func() error { return vc.Bump(ctx) }},
		{"InvalidatePrefix", func() error {
			_, err := c.InvalidatePrefix(ctx, "")
			return err
		}},
		{"Fetch after all that", func() error {
			v, err := c.Fetch(ctx, "c", load("c"))
			if err == nil && v.Key != "c" {
				return fmt.Errorf("got %+v", v)
			}
			return err
		}},
	}
	for _, st := range steps {
		if err := admin.ScriptFlush(ctx).Err(); err != nil {
			t.Fatalf("SCRIPT FLUSH: %v", err)
		}
		if err := st.do(); err != nil {
			t.Errorf("%s after SCRIPT FLUSH: %v", st.name, err)
		}
	}
	if v, err := c.Get(ctx, "c"); err != nil || v.Key != "c" {
		t.Errorf("Get(c) = %+v, %v; want the value Fetch wrote back after SCRIPT FLUSH", v, err)
	}
	if st := m.Stats(); st.RedisErrors != 0 {
		t.Errorf("Stats().RedisErrors = %d, want NOSCRIPT not counted", st.RedisErrors)
	}
}

// relEvict makes Redis evict key under maxmemory-policy allkeys-lru, as
// memory pressure would: the key is made the least recently used
// (RESTORE … IDLETIME), filler keys less idle than it but more idle than
// everything else are added until it is gone, and maxmemory is lifted
// again. Other keys survive, so a test can watch what losing this one key
// does.
func relEvict(t *testing.T, admin *redis.Client, key string) {
	t.Helper()
	ctx := context.Background()
	dump, err := admin.Dump(ctx, key).Result()
	if err != nil {
		t.Fatalf("DUMP %s: %v", key, err)
	}
	ttl := admin.PTTL(ctx, key).Val()
	if ttl < 0 {
		ttl = 0
	}
	if err := admin.Do(ctx, "RESTORE", key, ttl.Milliseconds(), dump, "REPLACE", "IDLETIME", 100000).Err(); err != nil {
		t.Fatalf("RESTORE %s IDLETIME: %v", key, err)
	}
	if err := admin.Set(ctx, "rel:filler", strings.Repeat("f", 8<<10), 0).Err(); err != nil {
		t.Fatalf("SET filler: %v", err)
	}
	filler := admin.Dump(ctx, "rel:filler").Val()
	admin.Del(ctx, "rel:filler")
	used := relInfoInt(t, admin, "memory", "used_memory")
	for _, kv := range [][2]string{{"maxmemory-policy", "allkeys-lru"}, {"maxmemory-samples", "64"}, {"maxmemory", strconv.FormatInt(used+256<<10, 10)}} {
		if err := admin.ConfigSet(ctx, kv[0], kv[1]).Err(); err != nil {
			t.Fatalf("CONFIG SET %s %s: %v", kv[0], kv[1], err)
		}
	}
	evicted := relInfoInt(t, admin, "stats", "evicted_keys")
	batch := rand.Uint64()
	for i := 0; admin.Exists(ctx, key).Val() == 1; i++ {
		if i > 2000 {
			t.Fatalf("%s not evicted after %d filler keys", key, i)
		}
		if err := admin.Do(ctx, "RESTORE", fmt.Sprintf("rel:filler:%x:%d", batch, i), 0, filler, "IDLETIME", 50000).Err(); err != nil {
			t.Fatalf("RESTORE filler: %v", err)
		}
	}
	if n := relInfoInt(t, admin, "stats", "evicted_keys"); n == evicted {
		t.Fatalf("%s is gone but evicted_keys did not grow", key)
	}
	if err := admin.ConfigSet(ctx, "maxmemory", "0").Err(); err != nil {
		t.Fatalf("CONFIG SET maxmemory 0: %v", err)
	}
}

// TestReliabilityEvictedCompanionKeys (scenario 28): under allkeys-lru,
// Redis may evict any key, including the ones that make invalidation
// work. What happens, for entries written before the eviction:
//   - version key evicted: the next call starts a new random version;
//     every older entry becomes unreachable, never readable again;
//   - tag stamp evicted: entries carrying the tag become unreadable
//     (misses, then deleted), never stale; new writes are readable;
//   - invalidation marker evicted: only loads in flight care (see
//     TestReliabilityCompanionKeyLostDuringLoad); entries are unaffected.
//
// A value evicted itself is a plain miss.
func TestReliabilityEvictedCompanionKeys(t *testing.T) {
	noLeaks(t)
	s := redistest.Start(t)
	admin := s.Client(t)
	m, _ := newManager(t, s)
	ctx := context.Background()
	vc := newCache[relItem](t, m, "ev", cachemgr.WithVersioned(true))
	tc := newCache[relItem](t, m, "evt")
	for _, k := range []string{"a", "b"} {
		if err := vc.Set(ctx, k, relItem{Key: k, Version: 1}); err != nil {
			t.Fatalf("Set(%q) error = %v", k, err)
		}
		if err := tc.Set(ctx, k, relItem{Key: k, Version: 1}, cachemgr.Tags("t")); err != nil {
			t.Fatalf("Set(%q, Tags(t)) error = %v", k, err)
		}
	}
	if err := tc.Delete(ctx, "gone"); err != nil { // leaves a marker
		t.Fatalf("Delete() error = %v", err)
	}

	t.Run("version key", func(t *testing.T) {
		relEvict(t, admin, "test:ev:~v")
		for _, k := range []string{"a", "b"} {
			if v, err := vc.Get(ctx, k); !errors.Is(err, cachemgr.ErrMiss) {
				t.Errorf("Get(%q) after its version key was evicted = %+v, %v; want ErrMiss", k, v, err)
			}
		}
		if err := vc.Set(ctx, "a", relItem{Key: "a", Version: 2}); err != nil {
			t.Fatalf("Set() after eviction error = %v", err)
		}
		if v, err := vc.Get(ctx, "a"); err != nil || v.Version != 2 {
			t.Errorf("Get(a) after re-Set = %+v, %v; want version 2", v, err)
		}
	})
	t.Run("tag stamp", func(t *testing.T) {
		if n, _ := admin.Exists(ctx, "test:evt:{=a}", "test:evt:{=b}").Result(); n != 2 {
			t.Fatalf("tagged entries gone before the stamp's eviction (%d left)", n)
		}
		relEvict(t, admin, "test:~tag:{tt}")
		for _, k := range []string{"a", "b"} {
			if v, err := tc.Get(ctx, k); !errors.Is(err, cachemgr.ErrMiss) {
				t.Errorf("Get(%q) after its tag stamp was evicted = %+v, %v; want ErrMiss", k, v, err)
			}
		}
		if err := tc.Set(ctx, "a", relItem{Key: "a", Version: 2}, cachemgr.Tags("t")); err != nil {
			t.Fatalf("Set() after eviction error = %v", err)
		}
		if v, err := tc.Get(ctx, "a"); err != nil || v.Version != 2 {
			t.Errorf("Get(a) after re-Set = %+v, %v; want version 2", v, err)
		}
	})
	t.Run("marker", func(t *testing.T) {
		relEvict(t, admin, "test:evt:{=gone}:i")
		if _, err := tc.Get(ctx, "gone"); !errors.Is(err, cachemgr.ErrMiss) {
			t.Errorf("Get(gone) after its marker was evicted = %v, want ErrMiss", err)
		}
		v, err := tc.Fetch(ctx, "gone", func(context.Context) (relItem, error) { return relItem{Key: "gone", Version: 3}, nil })
		if err != nil || v.Version != 3 {
			t.Errorf("Fetch(gone) = %+v, %v; want the loader's value", v, err)
		}
	})
}

// TestReliabilityCompanionKeyLostDuringLoad: a load is running; its key
// is invalidated (Delete, InvalidateTags, Bump), and then the companion
// key that records the invalidation is lost, by eviction under
// allkeys-lru or by a restart of a Redis without persistence. The load's
// result, read before the invalidation, must not become readable.
func TestReliabilityCompanionKeyLostDuringLoad(t *testing.T) {
	tests := []struct {
		name       string
		versioned  bool
		tags       []string
		invalidate func(ctx context.Context, m *cachemgr.Manager, c *cachemgr.Cache[string]) error
		lost       string // the companion key
	}{
		{"Delete, marker", false, nil, func(ctx context.Context, _ *cachemgr.Manager, c *cachemgr.Cache[string]) error {
			return c.Delete(ctx, "k")
		}, "test:lost:{=k}:i"},
		{"InvalidateTags, tag stamp", false, []string{"t"}, func(ctx context.Context, m *cachemgr.Manager, _ *cachemgr.Cache[string]) error {
			return m.InvalidateTags(ctx, "t")
		}, "test:~tag:{tt}"},
		{"Bump, version key", true, nil, func(ctx context.Context, _ *cachemgr.Manager, c *cachemgr.Cache[string]) error {
			return c.Bump(ctx)
		}, "test:lost:~v"},
	}
	for _, tt := range tests {
		for _, cause := range []string{"evicted", "restart"} {
			t.Run(tt.name+" "+cause, func(t *testing.T) {
				s := redistest.Start(t)
				admin := s.Client(t)
				m, _ := newManager(t, s, cachemgr.WithBreaker(0, time.Second))
				c := newCache[string](t, m, "lost", cachemgr.WithVersioned(tt.versioned))
				ctx := context.Background()
				// An earlier entry, so the tag's stamp and the version exist
				// before the load.
				if err := c.Set(ctx, "other", "x", cachemgr.Tags(tt.tags...)); err != nil {
					t.Fatalf("Set(other) error = %v", err)
				}
				inLoad, release := make(chan struct{}), make(chan struct{})
				done := make(chan error, 1)
				go func() {
					_, err := c.Fetch(ctx, "k", func(context.Context) (string, error) {
						close(inLoad)
						<-release
						return "old", nil // read from the database before the invalidation
					}, cachemgr.Tags(tt.tags...))
					done <- err
				}()
				<-inLoad
				if err := tt.invalidate(ctx, m, c); err != nil {
					t.Fatalf("invalidation error = %v", err)
				}
				switch cause {
				case "evicted":
					relEvict(t, admin, tt.lost)
				case "restart":
					s.Restart()
					// Let the pool replace its broken connections, so the
					// write-back reaches the new server.
					waitFor(t, "the client to reconnect", func() bool {
						_, err := c.Get(ctx, "probe")
						return errors.Is(err, cachemgr.ErrMiss)
					})
				}
				close(release)
				if err := <-done; err != nil {
					t.Fatalf("Fetch() error = %v", err)
				}
				if v, err := c.Get(ctx, "k"); err == nil {
					t.Errorf("Get(k) after %s and the loss of %s = %q; want a miss, not the value loaded before the invalidation", tt.name, tt.lost, v)
				}
			})
		}
	}
}

// TestReliabilityFlushAll (scenario 37, without L1): FLUSHALL under
// Managers that remember a namespace version: every entry misses, writes
// and loads work at once, and a new version is started.
func TestReliabilityFlushAll(t *testing.T) {
	s := redistest.Start(t)
	ctx := context.Background()
	m, rdb := newManager(t, s)
	vc := newCache[relItem](t, m, "fl", cachemgr.WithVersioned(true))
	tc := newCache[relItem](t, m, "flt")
	for _, k := range []string{"a", "b"} {
		if err := vc.Set(ctx, k, relItem{Key: k}); err != nil {
			t.Fatalf("Set() error = %v", err)
		}
		if err := tc.Set(ctx, k, relItem{Key: k}, cachemgr.Tags("t")); err != nil {
			t.Fatalf("Set() error = %v", err)
		}
	}
	if err := rdb.FlushAll(ctx).Err(); err != nil {
		t.Fatalf("FLUSHALL: %v", err)
	}
	for _, c := range []*cachemgr.Cache[relItem]{vc, tc} {
		if v, err := c.Get(ctx, "a"); !errors.Is(err, cachemgr.ErrMiss) {
			t.Errorf("%s: Get() after FLUSHALL = %+v, %v; want ErrMiss", c.Name(), v, err)
		}
		v, err := c.Fetch(ctx, "b", func(context.Context) (relItem, error) { return relItem{Key: "b", Version: 2}, nil }, cachemgr.Tags("t"))
		if err != nil || v.Version != 2 {
			t.Errorf("%s: Fetch() after FLUSHALL = %+v, %v", c.Name(), v, err)
		}
		if v, err := c.Get(ctx, "b"); err != nil || v.Version != 2 {
			t.Errorf("%s: Get() after the reload = %+v, %v; want version 2", c.Name(), v, err)
		}
	}
	if n := rdb.Exists(ctx, "test:fl:~v").Val(); n != 1 {
		t.Errorf("no version key after FLUSHALL and a write")
	}
}
