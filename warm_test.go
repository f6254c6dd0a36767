package cachemgr_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cachemgr/cachemgr"
	"github.com/cachemgr/cachemgr/internal/redistest"
	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"
)

// warmLoader is a counted loader for Warm: it records every call, the
// most calls in flight at once, and fails keys that fail says to.
type warmLoader struct {
	mu       sync.Mutex
	calls    map[string]int
	running  atomic.Int32
	maxInFly atomic.Int32
	total    atomic.Int32
	fail     func(key string) error
	// block, when set, makes calls from the block-th on wait for their
	// context to end.
	block int32
}

func newWarmLoader(fail func(string) error) *warmLoader {
	return &warmLoader{calls: map[string]int{}, fail: fail}
}

func (l *warmLoader) load(ctx context.Context, key string) (string, error) {
	n := l.total.Add(1)
	r := l.running.Add(1)
	defer l.running.Add(-1)
	for {
		m := l.maxInFly.Load()
		if r <= m || l.maxInFly.CompareAndSwap(m, r) {
			break
		}
	}
	l.mu.Lock()
	l.calls[key]++
	l.mu.Unlock()
	if l.block > 0 && n >= l.block {
		<-ctx.Done()
		return "", context.Cause(ctx)
	}
	if l.fail != nil {
		if err := l.fail(key); err != nil {
			return "", err
		}
	}
	return "loaded " + key, nil
}

// warmProgress records Progress calls.
type warmProgress struct {
	done, total, failed []int
}

func (p *warmProgress) record(done, total, failed int) {
	// Warm never overlaps calls, so no lock; -race checks that claim.
	p.done = append(p.done, done)
	p.total = append(p.total, total)
	p.failed = append(p.failed, failed)
}

// check reports whether the calls counted 1, 2, … n of total, with the
// failure count never going down and ending at failed.
func (p *warmProgress) check(t *testing.T, n, total, failed int) {
	t.Helper()
	if len(p.done) != n {
		t.Fatalf("Progress called %d times, want %d", len(p.done), n)
	}
	for i := range p.done {
		if p.done[i] != i+1 || p.total[i] != total || i > 0 && p.failed[i] < p.failed[i-1] {
			t.Fatalf("Progress call %d = (%d, %d, %d) after failed=%d; want done %d, total %d, failed not decreasing",
				i, p.done[i], p.total[i], p.failed[i], p.failed[max(i-1, 0)], i+1, total)
		}
	}
	if n > 0 && p.failed[n-1] != failed {
		t.Errorf("last Progress failed = %d, want %d", p.failed[n-1], failed)
	}
}

func warmKeys(n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprint("k", i)
	}
	return keys
}

// TestWarm warms 3,000 keys, 8 at a time: a tenth already cached, some
// failing, some not found: 3,000 keys on a real server, 1,000 on miniredis
// (its Lua is slow, and Fetch runs two scripts per missing key) or with
// -short. The TTLs outlast the slowest run on a loaded machine: the test
// checks what Warm wrote, not how fast.
func TestWarm(t *testing.T) {
	redistest.Each(t, func(t *testing.T, s *redistest.Server) {
		n := 3_000
		if testing.Short() || s.Kind() == redistest.KindMiniredis {
			n = 1_000
		}
		m, _ := newManager(t, s)
		c := newCache[string](t, m, "warm", cachemgr.WithTTL(time.Hour), cachemgr.WithNegativeTTL(time.Hour))
		ctx := context.Background()
		const concurrency = 8
		keys := warmKeys(n)
		cached := 0
		for i := 0; i < n; i += 10 {
			if err := c.Set(ctx, keys[i], "cached"); err != nil {
				t.Fatalf("Set(%q) error = %v", keys[i], err)
			}
			cached++
		}
		boom := errors.New("boom")
		failing, notFound := 0, 0
		for i := range n {
			switch {
			case i%10 == 0:
			case i%97 == 1:
				failing++
			case i%89 == 1:
				notFound++
			}
		}
		l := newWarmLoader(func(key string) error {
			var i int
			fmt.Sscanf(key, "k%d", &i)
			switch {
			case i%97 == 1:
				return boom
			case i%89 == 1:
				return cachemgr.ErrNotFound
			}
			return nil
		})
		var p warmProgress
		start := time.Now()
		opts := []cachemgr.WarmOption{cachemgr.Concurrency(concurrency), cachemgr.Progress(p.record)}
		if s.Kind() == redistest.KindMiniredis {
			// miniredis runs Lua slowly: on a loaded machine a chunk's
			// pipeline of claims could outlast the op timeout.
			opts = append(opts, cachemgr.BatchSize(4))
		}
		rep, err := c.Warm(ctx, keys, l.load, opts...)
		took := time.Since(start)
		if err != nil {
			t.Fatalf("Warm() error = %v", err)
		}
		t.Logf("Warm(%d keys, concurrency %d) on %s took %v: %+v (%d not found)", n, concurrency, s.Kind(), took, rep, notFound)
		want := cachemgr.WarmReport{Loaded: n - cached - failing, Skipped: cached, Failed: failing}
		if rep.Loaded != want.Loaded || rep.Skipped != want.Skipped || rep.Failed != want.Failed || !errors.Is(rep.FirstErr, boom) {
			t.Errorf("Warm() = %+v, want %+v with FirstErr boom", rep, want)
		}
		if got := int(l.total.Load()); got != n-cached || len(l.calls) != n-cached {
			t.Errorf("loader calls = %d over %d keys, want one per missing key (%d)", got, len(l.calls), n-cached)
		}
		if got := l.maxInFly.Load(); got > concurrency {
			t.Errorf("loads in flight peaked at %d, want at most %d", got, concurrency)
		}
		p.check(t, n, n, failing)
		checks := []struct {
			key  string
			want string
			err  error
		}{
			{"k0", "cached", nil},              // skipped: not overwritten
			{"k2", "loaded k2", nil},           // loaded
			{"k1", "", cachemgr.ErrMiss},       // failed: nothing cached
			{"k179", "", cachemgr.ErrNotFound}, // not found: negative entry
		}
		for _, ck := range checks {
			if v, err := c.Get(ctx, ck.key); v != ck.want || !errors.Is(err, ck.err) {
				t.Errorf("Get(%q) after Warm = %q, %v; want %q, %v", ck.key, v, err, ck.want, ck.err)
			}
		}

		// A second run loads only what failed.
		l2 := newWarmLoader(nil)
		rep, err = c.Warm(ctx, keys, l2.load)
		if err != nil || rep.Loaded != failing || rep.Skipped != n-failing || rep.Failed != 0 || rep.FirstErr != nil {
			t.Errorf("second Warm() = %+v, %v; want %d loaded, %d skipped", rep, err, failing, n-failing)
		}
		if got := int(l2.total.Load()); got != failing {
			t.Errorf("second Warm() loader calls = %d, want %d", got, failing)
		}
	})
}

func TestWarmDuplicateKeys(t *testing.T) {
	redistest.Each(t, func(t *testing.T, s *redistest.Server) {
		m, _ := newManager(t, s)
		c := newCache[string](t, m, "dup")
		l := newWarmLoader(nil)
		keys := []string{"a", "a", "a", "a", "b", "b"}
		rep, err := c.Warm(context.Background(), keys, l.load, cachemgr.Concurrency(6))
		if err != nil || rep.Loaded+rep.Skipped != len(keys) {
			t.Errorf("Warm(%q) = %+v, %v; want every key loaded or skipped", keys, rep, err)
		}
		if l.calls["a"] != 1 || l.calls["b"] != 1 {
			t.Errorf("Warm(%q) loader calls = %v, want one per distinct key", keys, l.calls)
		}
	})
}

func TestWarmRejectsBadInput(t *testing.T) {
	m, _ := newManager(t, redistest.StartMini(t))
	c := newCache[string](t, m, "bad")
	l := newWarmLoader(nil)
	tests := []struct {
		name string
		load func(context.Context, string) (string, error)
		opts []cachemgr.WarmOption
		want error
	}{
		{"zero concurrency", l.load, []cachemgr.WarmOption{cachemgr.Concurrency(0)}, cachemgr.ErrInvalidOption},
		{"negative concurrency", l.load, []cachemgr.WarmOption{cachemgr.Concurrency(-1)}, cachemgr.ErrInvalidOption},
		{"nil loader", nil, nil, cachemgr.ErrNilLoader},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := c.Warm(context.Background(), []string{"k"}, tt.load, tt.opts...); !errors.Is(err, tt.want) {
				t.Errorf("Warm() error = %v, want %v", err, tt.want)
			}
		})
	}
	if got := l.total.Load(); got != 0 {
		t.Errorf("loader called %d times by rejected Warms, want 0", got)
	}
	rep, err := c.Warm(context.Background(), nil, l.load, cachemgr.Progress(nil))
	if err != nil || rep != (cachemgr.WarmReport{}) {
		t.Errorf("Warm(no keys) = %+v, %v; want an empty report", rep, err)
	}
}

// serverGoroutines leaves out miniredis's goroutines for the connections a run
// opened; they belong to the server, not to the code under test.
var serverGoroutines = []goleak.Option{
	goleak.IgnoreAnyFunction("github.com/alicebob/miniredis/v2/server.(*Server).ServeConn.func1"),
	goleak.IgnoreAnyFunction("github.com/alicebob/miniredis/v2/server.readArray"),
	goleak.IgnoreAnyFunction("github.com/alicebob/miniredis/v2/server.(*Server).servePeer.func1"),
	goleak.IgnoreAnyFunction("github.com/alicebob/miniredis/v2/server.(*Server).servePeer.func2"),
}

// TestWarmCancel: when ctx ends, the loads in flight see their context
// end, no new key starts, and Warm returns promptly with nothing of its own
// still running.
func TestWarmCancel(t *testing.T) {
	redistest.Each(t, func(t *testing.T, s *redistest.Server) {
		m, _ := newManager(t, s) // testOpTimeout: miniredis runs a chunk's scripts slowly on a loaded machine
		c := newCache[string](t, m, "cancel")
		if err := c.Set(context.Background(), "warm-up", "x"); err != nil {
			t.Fatalf("Set() error = %v", err)
		}
		before := goleak.IgnoreCurrent()
		const n, concurrency, unblocked = 10_000, 8, 100
		l := newWarmLoader(nil)
		l.block = unblocked
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		type result struct {
			rep cachemgr.WarmReport
			err error
		}
		res := make(chan result, 1)
		var p warmProgress
		go func() {
			opts := []cachemgr.WarmOption{cachemgr.Concurrency(concurrency), cachemgr.Progress(p.record)}
			if s.Kind() == redistest.KindMiniredis {
				opts = append(opts, cachemgr.BatchSize(4)) // its Lua is slow: short pipelines
			}
			rep, err := c.Warm(ctx, warmKeys(n), l.load, opts...)
			res <- result{rep, err}
		}()
		waitFor(t, "every worker to block in the loader", func() bool { return l.running.Load() == concurrency })
		cancelled := time.Now()
		cancel()
		r := <-res
		took := time.Since(cancelled)
		if running := l.running.Load(); running != 0 {
			t.Errorf("loads still running after Warm returned: %d", running)
		}
		if !errors.Is(r.err, context.Canceled) {
			t.Errorf("Warm(cancelled) error = %v, want context.Canceled", r.err)
		}
		if took > time.Second {
			t.Errorf("Warm returned %v after cancel, want promptly", took)
		}
		done := r.rep.Loaded + r.rep.Skipped + r.rep.Failed
		if r.rep.Loaded != unblocked-1 || done != r.rep.Loaded || len(p.done) != done {
			t.Errorf("Warm(cancelled) = %+v with %d progress calls; want %d loaded and nothing else counted", r.rep, len(p.done), unblocked-1)
		}
		if calls := l.total.Load(); calls != unblocked-1+concurrency {
			t.Errorf("loader calls = %d, want %d: no key started after cancel", calls, unblocked-1+concurrency)
		}
		goleak.VerifyNone(t, append(serverGoroutines, before)...)
	})
}

// TestWarmManagerClosed: Close during a run ends it with ErrClosed.
func TestWarmManagerClosed(t *testing.T) {
	m, _ := newManager(t, redistest.StartMini(t))
	c := newCache[string](t, m, "closed")
	l := newWarmLoader(nil)
	l.block = 20
	res := make(chan error, 1)
	go func() {
		_, err := c.Warm(context.Background(), warmKeys(1000), l.load, cachemgr.Concurrency(4))
		res <- err
	}()
	waitFor(t, "every worker to block in the loader", func() bool { return l.running.Load() == 4 })
	if err := m.Close(); err != nil {
		t.Fatalf("Close() error = %v", err)
	}
	if err := <-res; !errors.Is(err, cachemgr.ErrClosed) {
		t.Errorf("Warm() during Close error = %v, want ErrClosed", err)
	}
	if _, err := c.Warm(context.Background(), []string{"k"}, l.load); !errors.Is(err, cachemgr.ErrClosed) {
		t.Errorf("Warm() after Close error = %v, want ErrClosed", err)
	}
}

// TestWarmRedisDown: with nothing to write to, Warm counts every key as
// failed and spares the source.
func TestWarmRedisDown(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", ContextTimeoutEnabled: true, MaxRetries: -1})
	t.Cleanup(func() { rdb.Close() })
	m, err := cachemgr.New(rdb, testOptions(cachemgr.WithPrefix(""))...)
	if err != nil {
		t.Fatalf("New() error = %v", err)
	}
	t.Cleanup(func() { m.Close() })
	c := newCache[string](t, m, "down")
	l := newWarmLoader(nil)
	rep, err := c.Warm(context.Background(), warmKeys(100), l.load)
	if err != nil || rep.Failed != 100 || !errors.Is(rep.FirstErr, cachemgr.ErrUnavailable) {
		t.Errorf("Warm() with Redis down = %+v, %v; want 100 failed with ErrUnavailable", rep, err)
	}
	if got := l.total.Load(); got != 0 {
		t.Errorf("loader calls with Redis down = %d, want 0", got)
	}
}

// TestWarmBatch: with the cache's batch loader, Warm loads the missing
// keys of each chunk in one call, stores them with its write options (TTL,
// Tags), and counts apart from traffic: no hit or miss, so the hit ratio of
// the reads that follow is theirs alone.
//
// On a real server only: miniredis runs a chunk's 300 claim scripts too
// slowly for the op timeout on a loaded machine.
func TestWarmBatch(t *testing.T) {
	func(t *testing.T, s *redistest.Server) {
		ctx := context.Background()
		m, rdb := newManager(t, s)
		src := &batchSource{data: map[string]string{}}
		keys := warmKeys(1_000)
		for i, k := range keys {
			if i%100 != 7 { // 10 keys are not found
				src.data[k] = "row " + k
			}
		}
		c := newCache[string](t, m, "wbatch", cachemgr.WithBatchLoader(src.load))
		if err := c.Set(ctx, keys[0], "cached"); err != nil {
			t.Fatal(err)
		}
		rep, err := c.Warm(ctx, keys, nil, cachemgr.BatchSize(300), cachemgr.Concurrency(2),
			cachemgr.WarmWrite(cachemgr.TTL(42*time.Minute), cachemgr.Tags("catalog")))
		if err != nil || rep.Loaded != 999 || rep.Skipped != 1 || rep.Failed != 0 {
			t.Fatalf("Warm() = %+v, %v; want 999 loaded (10 not found), 1 skipped", rep, err)
		}
		// Chunks of 300: 300, 300, 300, 100 keys, less the cached one.
		var loaded int
		for _, call := range src.calls {
			loaded += len(call)
			if len(call) > 300 {
				t.Errorf("batch loader called with %d keys, want at most 300", len(call))
			}
		}
		if len(src.calls) != 4 || loaded != 999 {
			t.Errorf("batch loader calls = %d over %d keys, want 4 over 999", len(src.calls), loaded)
		}
		st := c.Stats()
		if st.Hits != 0 || st.Misses != 0 || st.Loads != 0 || st.Warmed != 999 || st.WarmSkipped != 1 || st.WarmLoads != 4 {
			t.Errorf("Stats() after Warm = %+v; want no hits, misses or loads, 999 warmed, 1 skipped, 4 warm loads", st)
		}
		if ttl := rdb.PTTL(ctx, "test:wbatch:{=k5}").Val(); ttl < 35*time.Minute || ttl > 50*time.Minute {
			t.Errorf("PTTL(k5) = %v, want about 42m (WarmWrite(TTL))", ttl)
		}
		for _, k := range keys[1:100] {
			if _, err := c.Get(ctx, k); err != nil && !errors.Is(err, cachemgr.ErrNotFound) {
				t.Errorf("Get(%q) after Warm = %v", k, err)
			}
		}
		if r := c.Stats().HitRatio(); r != 1 {
			t.Errorf("hit ratio of the reads after Warm = %v, want 1", r)
		}
		if err := m.InvalidateTags(ctx, "catalog"); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Get(ctx, "k5"); !errors.Is(err, cachemgr.ErrMiss) {
			t.Errorf("Get(k5) after InvalidateTags(catalog) = %v, want ErrMiss (WarmWrite(Tags))", err)
		}
		if _, err := c.Warm(ctx, keys, nil, cachemgr.BatchSize(0)); !errors.Is(err, cachemgr.ErrInvalidOption) {
			t.Errorf("Warm(BatchSize(0)) error = %v, want ErrInvalidOption", err)
		}
		if _, err := c.Warm(ctx, keys, nil, cachemgr.WarmWrite(cachemgr.TTL(-1))); !errors.Is(err, cachemgr.ErrInvalidOption) {
			t.Errorf("Warm(WarmWrite(TTL(-1))) error = %v, want ErrInvalidOption", err)
		}
	}(t, redistest.Start(t))
}
