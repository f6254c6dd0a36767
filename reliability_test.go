package cachemgr_test

// Fault and bad-input tests for the scenarios of docs/reliability.md, which
// maps every scenario to its test. Test names start with TestReliability,
// TestFault or TestSoak, so `go test -race -run 'Reliab|Fault|Soak' .`
// runs exactly them; TestSoak runs only when CACHEMGR_SOAK is set.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cachemgr/cachemgr"
	"github.com/cachemgr/cachemgr/codec"
	"github.com/cachemgr/cachemgr/compress"
	"github.com/cachemgr/cachemgr/internal/envelope"
	"github.com/cachemgr/cachemgr/internal/faultproxy"
	"github.com/cachemgr/cachemgr/internal/redistest"
	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"
)

// relItem is a self-describing value: it names the key
// it was produced for and the database version it was read at, so one
// cheap check catches another key's data whatever the cause.
type relItem struct {
	Key     string `json:"key"`
	Version int64  `json:"version"`
}

// relNoLeaks fails the test if goroutines started during it are still
// running once its cleanups (Manager, clients, servers, proxies) are done.
// Call it first, so its check runs last.
func relNoLeaks(t *testing.T) {
	t.Helper()
	opt := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, opt) })
}

// relOp is the op timeout of the fault tests: short enough that a fault
// shows within it, long enough that a loaded machine meets it for the
// calls that are not faulted.
const relOp = 250 * time.Millisecond

// relClientTimeout is the socket timeout of relClient's clients: longer
// than any latency bound the tests assert, so a call that waited for it
// fails them.
const relClientTimeout = 5 * time.Second

// relClient returns a client of addr that honours context deadlines and
// never retries, closed when t ends; fn may change its options.
func relClient(t *testing.T, addr string, fn func(*redis.Options)) *redis.Client {
	t.Helper()
	opt := &redis.Options{
		Addr:                  addr,
		ContextTimeoutEnabled: true,
		DialTimeout:           relClientTimeout,
		ReadTimeout:           relClientTimeout,
		WriteTimeout:          relClientTimeout,
		MaxRetries:            -1,
		DialerRetries:         1,
	}
	if fn != nil {
		fn(opt)
	}
	rdb := redis.NewClient(opt)
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

// relManager returns a Manager over rdb with the test prefix and a quiet
// logger, closed when t ends.
func relManager(t *testing.T, rdb redis.UniversalClient, opts ...cachemgr.Option) *cachemgr.Manager {
	t.Helper()
	m, err := cachemgr.New(rdb, testOptions(opts...)...)
	if err != nil {
		t.Fatalf("New() error = %v", err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// relLatencies collects durations and summarises them.
type relLatencies struct {
	mu sync.Mutex
	ds []time.Duration
}

func (l *relLatencies) add(d time.Duration) {
	l.mu.Lock()
	l.ds = append(l.ds, d)
	l.mu.Unlock()
}

// quantile returns the q-quantile (0 < q <= 1) and the count.
func (l *relLatencies) quantile(q float64) (time.Duration, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.ds) == 0 {
		return 0, 0
	}
	s := slices.Clone(l.ds)
	slices.Sort(s)
	i := int(float64(len(s))*q+0.5) - 1
	return s[min(max(i, 0), len(s)-1)], len(s)
}

func (l *relLatencies) String() string {
	p50, n := l.quantile(0.5)
	p99, _ := l.quantile(0.99)
	maxd, _ := l.quantile(1)
	return fmt.Sprintf("n=%d p50=%v p99=%v max=%v", n, p50.Round(100*time.Microsecond), p99.Round(100*time.Microsecond), maxd.Round(100*time.Microsecond))
}

// relPhase is one stretch of a workload, under one fault.
type relPhase struct {
	name    string
	fetch   relLatencies // latency of every Fetch
	fetches atomic.Int64
	hits    atomic.Int64 // Gets that returned a value
	sets    atomic.Int64 // Sets that succeeded
}

// relWorkload runs mixed Fetch/Get/Set traffic on caches of relItem from
// many goroutines and checks every value against the key it was asked
// for. Fetch must never fail.
type relWorkload struct {
	t      *testing.T
	caches []*cachemgr.Cache[relItem]
	keys   int
	load   time.Duration // how long the loader takes

	phase             atomic.Pointer[relPhase]
	stop              chan struct{}
	wg                sync.WaitGroup
	fetchErrs, wrong  atomic.Int64
	loads             atomic.Int64
	errMu             sync.Mutex
	errs              []string
	setErrs, getErrs  atomic.Int64
	version           atomic.Int64
	unexpectedGetErrs atomic.Int64
}

// relStartWorkload starts n goroutines of traffic over keys keys. The
// first phase is "warm".
func relStartWorkload(t *testing.T, n, keys int, load time.Duration, caches ...*cachemgr.Cache[relItem]) *relWorkload {
	t.Helper()
	w := &relWorkload{t: t, caches: caches, keys: keys, load: load, stop: make(chan struct{})}
	w.enter("warm")
	for g := range n {
		w.wg.Add(1)
		go w.run(uint64(g))
	}
	t.Cleanup(w.finish)
	return w
}

// enter starts a new phase and returns it.
func (w *relWorkload) enter(name string) *relPhase {
	p := &relPhase{name: name}
	w.phase.Store(p)
	return p
}

// finish stops the traffic and waits for it. It may be called more than
// once.
func (w *relWorkload) finish() {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	w.wg.Wait()
}

func (w *relWorkload) fail(format string, args ...any) {
	w.errMu.Lock()
	defer w.errMu.Unlock()
	if len(w.errs) < 10 {
		w.errs = append(w.errs, fmt.Sprintf(format, args...))
	}
}

// check reports what the workload saw that it must not have.
func (w *relWorkload) check() {
	w.t.Helper()
	w.finish()
	if n := w.fetchErrs.Load() + w.wrong.Load() + w.unexpectedGetErrs.Load(); n > 0 {
		w.t.Errorf("workload: %d failed Fetches, %d values of another key, %d unexpected Get errors; first: %q",
			w.fetchErrs.Load(), w.wrong.Load(), w.unexpectedGetErrs.Load(), w.errs)
	}
}

func (w *relWorkload) run(seed uint64) {
	defer w.wg.Done()
	rnd := rand.New(rand.NewPCG(seed, 7))
	ctx := context.Background()
	for {
		select {
		case <-w.stop:
			return
		default:
		}
		p := w.phase.Load()
		c := w.caches[rnd.IntN(len(w.caches))]
		key := "k" + strconv.Itoa(rnd.IntN(w.keys))
		switch op := rnd.IntN(10); {
		case op < 6:
			start := time.Now()
			v, err := c.Fetch(ctx, key, func(ctx context.Context) (relItem, error) {
				w.loads.Add(1)
				if w.load > 0 {
					timer := time.NewTimer(w.load)
					defer timer.Stop()
					select {
					case <-timer.C:
					case <-ctx.Done():
						return relItem{}, ctx.Err()
					}
				}
				return relItem{Key: key, Version: w.version.Add(1)}, nil
			})
			p.fetch.add(time.Since(start))
			p.fetches.Add(1)
			switch {
			case err != nil:
				w.fetchErrs.Add(1)
				w.fail("%s: Fetch(%q) error = %v", p.name, key, err)
			case v.Key != key:
				w.wrong.Add(1)
				w.fail("%s: Fetch(%q) returned the value of %q", p.name, key, v.Key)
			}
		case op < 8:
			v, err := c.Get(ctx, key)
			switch {
			case err == nil && v.Key != key:
				w.wrong.Add(1)
				w.fail("%s: Get(%q) returned the value of %q", p.name, key, v.Key)
			case err == nil:
				p.hits.Add(1)
			case errors.Is(err, cachemgr.ErrMiss), errors.Is(err, cachemgr.ErrUnavailable):
				w.getErrs.Add(1)
			default:
				w.unexpectedGetErrs.Add(1)
				w.fail("%s: Get(%q) error = %v, want a value, ErrMiss or ErrUnavailable", p.name, key, err)
			}
		default:
			// A failed Set (ErrUnavailable, or an error reply) is the
			// caller's to handle; what matters here is what reads return.
			if err := c.Set(ctx, key, relItem{Key: key, Version: w.version.Add(1)}); err == nil {
				p.sets.Add(1)
			} else {
				w.setErrs.Add(1)
			}
		}
	}
}

// relWaitProgress waits until phase p has seen at least n Fetches.
func relWaitProgress(t *testing.T, p *relPhase, n int64) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%d Fetches in phase %s", n, p.name), func() bool { return p.fetches.Load() >= n })
}

// relBudget is the Fetch latency the fail-open guarantee allows (op
// timeout, which the Manager may stretch to 1.25×, plus loader time) and
// the slack that -race on a loaded two-core machine needs on top: two
// seconds for the p99, four for the slowest. What the bounds catch is a
// call that waits for the client's socket timeouts (relClientTimeout, 5s)
// or for ever; the slack stays well below those.
func relBudget(op, load time.Duration) (p99, worst time.Duration) {
	return op*5/4 + load + 2*time.Second, 3*op + load + 4*time.Second
}

// relCheckLatency fails the test if phase p's Fetch latencies exceed the
// budget for op and load.
func relCheckLatency(t *testing.T, p *relPhase, op, load time.Duration) {
	t.Helper()
	wantP99, wantMax := relBudget(op, load)
	p99, n := p.fetch.quantile(0.99)
	maxd, _ := p.fetch.quantile(1)
	t.Logf("phase %-12s Fetch latency %v", p.name, &p.fetch)
	if n == 0 {
		t.Errorf("phase %s: no Fetch completed", p.name)
		return
	}
	if p99 > wantP99 {
		t.Errorf("phase %s: Fetch p99 = %v, want <= %v (op timeout %v + loader %v + slack)", p.name, p99, wantP99, op, load)
	}
	if maxd > wantMax {
		t.Errorf("phase %s: slowest Fetch = %v, want <= %v", p.name, maxd, wantMax)
	}
}

// TestReliabilityServerKilledUnderLoad (scenarios 1, 6, 59): 64 goroutines
// of mixed Fetch/Get/Set; the server is SIGKILLed mid-run and restarted
// empty. No Fetch fails, no value of another key is returned, Fetch stays
// within its budget, the breaker opens and closes again by itself, the
// pool reconnects, and nothing is left running after Close.
func TestReliabilityServerKilledUnderLoad(t *testing.T) {
	relNoLeaks(t)
	const op, load = relOp, 5 * time.Millisecond
	s := redistest.Start(t)
	rdb := relClient(t, s.Addr(), nil)
	m := relManager(t, rdb, cachemgr.WithOpTimeout(op), cachemgr.WithWriteTimeout(op), cachemgr.WithBreaker(3, 200*time.Millisecond))
	c := newCache[relItem](t, m, "kill")
	w := relStartWorkload(t, 64, 200, load, c)

	healthy := w.enter("healthy")
	relWaitProgress(t, healthy, 300)

	killed := w.enter("killed")
	s.Kill()
	waitFor(t, "the breaker to open", func() bool { return m.Stats().Breaker == "open" })
	relWaitProgress(t, killed, 300)
	down := m.Stats()

	restarted := w.enter("restarted")
	s.Restart()
	waitFor(t, "the breaker to close and Gets to hit after the restart", func() bool {
		return m.Stats().Breaker == "closed" && restarted.hits.Load() > 20 && restarted.sets.Load() > 20
	})
	relWaitProgress(t, restarted, 300)
	w.check()

	if down.RedisErrors == 0 || down.Skipped == 0 {
		t.Errorf("Stats() while down = %+v, want Redis errors and skipped calls counted", down)
	}
	for _, p := range []*relPhase{healthy, killed, restarted} {
		relCheckLatency(t, p, op, load)
	}
	if st := rdb.PoolStats(); st.TotalConns == 0 {
		t.Errorf("PoolStats() after restart = %+v, want live connections", st)
	}
	if err := rdb.Ping(context.Background()).Err(); err != nil {
		t.Errorf("PING after restart = %v, want the pool to have recovered", err)
	}
	t.Logf("stats %+v", m.Stats())
}

// TestReliabilityServerFrozen (scenario 3): SIGSTOP for longer than the op
// timeout under concurrent load. Fetch p99 stays within op timeout +
// loader time; after SIGCONT the breaker's probe closes it.
func TestReliabilityServerFrozen(t *testing.T) {
	relNoLeaks(t)
	const op, load = relOp, 10 * time.Millisecond
	s := redistest.Start(t)
	rdb := relClient(t, s.Addr(), nil)
	m := relManager(t, rdb, cachemgr.WithOpTimeout(op), cachemgr.WithWriteTimeout(op), cachemgr.WithBreaker(5, 200*time.Millisecond))
	c := newCache[relItem](t, m, "frozen")
	w := relStartWorkload(t, 32, 100, load, c)
	relWaitProgress(t, w.enter("healthy"), 200)

	frozen := w.enter("frozen")
	s.Pause()
	waitFor(t, "the breaker to open", func() bool { return m.Stats().Breaker == "open" })
	// Longer than several op timeouts and breaker cooldowns, so probes
	// time out too.
	relWaitProgress(t, frozen, 400)
	waitFor(t, "a second breaker cooldown to pass", func() bool { return m.Stats().Skipped > 100 })

	resumed := w.enter("resumed")
	s.Resume()
	waitFor(t, "the breaker to close after SIGCONT", func() bool {
		return m.Stats().Breaker == "closed" && resumed.hits.Load() > 20
	})
	w.check()
	relCheckLatency(t, frozen, op, load)
	relCheckLatency(t, resumed, op, load)
}

// TestReliabilityClientPause (scenarios 3, 5): CLIENT PAUSE WRITE blocks
// writes while reads are served; CLIENT PAUSE ALL blocks both. Under
// concurrent load Fetch stays within its budget either way, and a Set
// during the pause reports an error, never a false success.
func TestReliabilityClientPause(t *testing.T) {
	const op, load = relOp, 10 * time.Millisecond
	for _, mode := range []string{"WRITE", "ALL"} {
		t.Run(mode, func(t *testing.T) {
			relNoLeaks(t)
			s := redistest.Start(t)
			rdb := relClient(t, s.Addr(), nil)
			m := relManager(t, rdb, cachemgr.WithOpTimeout(op), cachemgr.WithWriteTimeout(op), cachemgr.WithBreaker(5, 200*time.Millisecond))
			c := newCache[relItem](t, m, "pause")
			ctx := context.Background()
			if err := c.Set(ctx, "before", relItem{Key: "before", Version: 1}); err != nil {
				t.Fatalf("Set(before) error = %v", err)
			}
			w := relStartWorkload(t, 32, 100, load, c)
			relWaitProgress(t, w.enter("healthy"), 200)

			paused := w.enter("paused " + mode)
			const pause = 800 * time.Millisecond
			pausedAt := time.Now()
			s.ClientPause(pause, mode)
			start := time.Now()
			err := c.Set(ctx, "during", relItem{Key: "during", Version: 2})
			if took := time.Since(start); !errors.Is(err, cachemgr.ErrUnavailable) || took > op*5/4+2*time.Second {
				t.Errorf("Set() during CLIENT PAUSE %s = %v after %v, want ErrUnavailable within the write timeout", mode, err, took)
			}
			relWaitProgress(t, paused, 200)
			if time.Since(pausedAt) > pause-200*time.Millisecond {
				t.Logf("the checks above ran late: %v into a %v pause", time.Since(pausedAt), pause)
			}
			resumed := w.enter("resumed")
			waitFor(t, "the pause to end and the breaker to close", func() bool {
				return time.Since(pausedAt) > pause && m.Stats().Breaker == "closed" && resumed.sets.Load() > 20
			})
			w.check()
			relCheckLatency(t, paused, op, load)
			relCheckLatency(t, resumed, op, load)
			if v, err := c.Get(ctx, "before"); err != nil || v.Key != "before" {
				t.Errorf("Get(before) after the pause = %+v, %v; want the value written before it", v, err)
			}
			// The write that timed out may or may not have been applied once
			// the pause ended (go-redis dropped its connection); either way
			// the caller was told it failed. Record which.
			_, err = c.Get(ctx, "during")
			t.Logf("after CLIENT PAUSE %s, the Set that reported ErrUnavailable: Get = %v", mode, err)
		})
	}
}

// TestReliabilityNeverReachable (scenario 2): a Manager over an address
// where nothing answers (a closed port, or a host that accepts connections
// and never replies) is created at once, every Fetch answers from the
// loader within its budget, and once the breaker is open the client stops
// dialling for every call.
func TestReliabilityNeverReachable(t *testing.T) {
	const op = 50 * time.Millisecond
	tests := []struct {
		name   string
		target func(t *testing.T) string
	}{
		{"closed port", func(t *testing.T) string {
			s := redistest.Start(t)
			addr := s.Addr()
			s.Kill()
			return addr
		}},
		{"blackholed", func(t *testing.T) string {
			s := redistest.Start(t)
			p := faultproxy.New(t, s.Addr())
			p.Blackhole(true)
			return p.Addr()
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			relNoLeaks(t)
			d := faultproxy.NewDialer(t)
			rdb := relClient(t, tt.target(t), func(o *redis.Options) { o.Dialer = d.DialContext })
			start := time.Now()
			m := relManager(t, rdb, cachemgr.WithOpTimeout(op), cachemgr.WithWriteTimeout(op), cachemgr.WithBreaker(3, 200*time.Millisecond))
			c := newCache[string](t, m, "unreachable")
			// No Redis call at all: what this catches is a dial (5s). A
			// loaded machine adds hundreds of milliseconds to anything.
			if took := time.Since(start); took > time.Second {
				t.Errorf("New() and NewCache() took %v with Redis unreachable, want no blocking", took)
			}
			var lat relLatencies
			for i := range 10 {
				start := time.Now()
				fetchWithin(t, c, fmt.Sprint("k", i), time.Second)
				lat.add(time.Since(start))
			}
			if p99, _ := lat.quantile(0.99); p99 > op*5/4+2*time.Second {
				t.Errorf("Fetch latency with Redis unreachable: %v, want p99 <= op timeout + slack", &lat)
			}
			if st := m.Stats(); st.Breaker != "open" {
				t.Fatalf("Stats().Breaker after 10 failed calls = %q, want open", st.Breaker)
			}
			dials := d.Dials()
			const calls = 500
			begin := time.Now()
			for i := range calls {
				fetchWithin(t, c, fmt.Sprint("more", i), time.Second)
			}
			elapsed := time.Since(begin)
			// One probe per cooldown, plus go-redis' own background redial
			// (about one a second).
			if extra, limit := d.Dials()-dials, 3+2*int(elapsed/(200*time.Millisecond)); extra > limit {
				t.Errorf("%d dials during %d Fetches in %v with the breaker open, want at most %d", extra, calls, elapsed, limit)
			}
			t.Logf("%d dials in total; Fetch latency %v; stats %+v", d.Dials(), &lat, m.Stats())
		})
	}
}

// TestReliabilityFlapping (scenario 8): the server is killed and relaunched
// again and again for over a second under load. No panic, no failed Fetch, no
// value of another key, bounded dialling, and once it is stable the
// breaker closes and nothing is left running.
func TestReliabilityFlapping(t *testing.T) {
	relNoLeaks(t)
	const op, load = 50 * time.Millisecond, 2 * time.Millisecond
	s := redistest.Start(t)
	d := faultproxy.NewDialer(t)
	rdb := relClient(t, s.Addr(), func(o *redis.Options) { o.Dialer = d.DialContext })
	// Writes are retried within their own timeout, each retry a dial while
	// the server is down; with the write timeout at the op timeout, the
	// dials counted here are those the breaker bounds.
	m := relManager(t, rdb, cachemgr.WithOpTimeout(op), cachemgr.WithWriteTimeout(op), cachemgr.WithBreaker(3, 100*time.Millisecond))
	c := newCache[relItem](t, m, "flap")
	w := relStartWorkload(t, 16, 50, load, c)
	relWaitProgress(t, w.enter("healthy"), 100)

	flapping := w.enter("flapping")
	var states relStates
	stopWatch := states.watch(m)
	start := time.Now()
	flaps := 0
	for time.Since(start) < 1200*time.Millisecond {
		s.Kill()
		waitFor(t, "a Fetch while down", func() bool { return flapping.fetches.Load() > int64(flaps*20) })
		s.Restart()
		flaps++
	}
	stopWatch()
	stable := w.enter("stable")
	waitFor(t, "the breaker to close once the server is stable", func() bool {
		return m.Stats().Breaker == "closed" && stable.hits.Load() > 20
	})
	w.check()
	relCheckLatency(t, flapping, op, load)
	ops := flapping.fetches.Load()
	t.Logf("%d flaps in %v: %d dials for %d Fetches; breaker opened %d times", flaps, time.Since(start).Round(time.Millisecond), d.Dials(), ops, states.opened())
	if d.Dials() > int(ops)/4 {
		t.Errorf("%d dials for %d Fetches while flapping: dialling not bounded", d.Dials(), ops)
	}
}

// relStates samples a Manager's breaker state.
type relStates struct {
	mu    sync.Mutex
	trail []string
}

// watch samples m's breaker until the returned stop is called.
func (s *relStates) watch(m *cachemgr.Manager) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			st := m.Stats().Breaker
			s.mu.Lock()
			if len(s.trail) == 0 || s.trail[len(s.trail)-1] != st {
				s.trail = append(s.trail, st)
			}
			s.mu.Unlock()
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

// opened returns how many times the breaker was seen to open.
func (s *relStates) opened() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, st := range s.trail {
		if st == "open" {
			n++
		}
	}
	return n
}

// TestReliabilityPoolExhaustion (scenario 9): PoolSize 2, the server busy
// (CLIENT PAUSE ALL) and 200 concurrent callers. Waiting for a pool
// connection counts against the op timeout, go-redis' pool timeout is
// never surfaced, and every Fetch answers from the loader in budget.
func TestReliabilityPoolExhaustion(t *testing.T) {
	relNoLeaks(t)
	const op, load = relOp, 5 * time.Millisecond
	s := redistest.Start(t)
	rdb := relClient(t, s.Addr(), func(o *redis.Options) { o.PoolSize = 2 })
	m := relManager(t, rdb, cachemgr.WithOpTimeout(op), cachemgr.WithWriteTimeout(op))
	c := newCache[relItem](t, m, "pool")
	ctx := context.Background()
	s.ClientPause(time.Second, "ALL")
	var lat relLatencies
	var wg sync.WaitGroup
	var failed atomic.Int64
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			key := fmt.Sprint("k", i)
			start := time.Now()
			v, err := c.Fetch(ctx, key, func(context.Context) (relItem, error) {
				time.Sleep(load) // the loader's own work
				return relItem{Key: key}, nil
			})
			lat.add(time.Since(start))
			if err != nil || v.Key != key {
				failed.Add(1)
				t.Errorf("Fetch(%q) with the pool exhausted = %+v, %v; want the loader's value", key, v, err)
			}
		}()
	}
	wg.Wait()
	wantP99, wantMax := relBudget(op, load)
	p99, _ := lat.quantile(0.99)
	maxd, _ := lat.quantile(1)
	t.Logf("200 Fetches over a 2-connection pool to a paused server: %v; pool %+v", &lat, rdb.PoolStats())
	if p99 > wantP99 || maxd > wantMax {
		t.Errorf("Fetch latency %v, want p99 <= %v and max <= %v", &lat, wantP99, wantMax)
	}
}

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
			m := relManager(t, rdb, cachemgr.WithOpTimeout(50*time.Millisecond), cachemgr.WithBreaker(failures, time.Minute))
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

// relACLUser returns the credentials the client of a breaker subtest
// uses: a restricted user for the NOPERM case, the default otherwise.
func relACLUser(name string) (string, string) {
	if name == "NOPERM" {
		return "limited", "pw"
	}
	return "", ""
}

// relACL creates the user "limited" (password "pw") with rules, on every
// key and channel.
func relACL(t *testing.T, admin *redis.Client, rules ...string) {
	t.Helper()
	args := []any{"ACL", "SETUSER", "limited", "on", ">pw", "~*", "&*", "-@all", "+@connection"}
	for _, r := range rules {
		args = append(args, r)
	}
	if err := admin.Do(context.Background(), args...).Err(); err != nil {
		t.Fatalf("ACL SETUSER: %v", err)
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

// relInfoInt returns an integer field of INFO section.
func relInfoInt(t *testing.T, admin *redis.Client, section, field string) int64 {
	t.Helper()
	info, err := admin.Info(context.Background(), section).Result()
	if err != nil {
		t.Fatalf("INFO %s: %v", section, err)
	}
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				t.Fatalf("INFO %s: %s = %q", section, field, v)
			}
			return n
		}
	}
	t.Fatalf("INFO %s has no %s", section, field)
	return 0
}

// TestReliabilityMaxmemoryNoeviction: with maxmemory reached and
// noeviction, writes fail with a clear error (not ErrUnavailable, and the
// breaker stays closed), reads and Fetch keep working from what is cached
// and from the loader, and the errors are counted. Invalidations either
// work or report an error: never nil with the entry still readable.
func TestReliabilityMaxmemoryNoeviction(t *testing.T) {
	relNoLeaks(t)
	s := redistest.Start(t)
	admin := s.Client(t)
	m, _ := newManager(t, s)
	c := newCache[relItem](t, m, "oom")
	vc := newCache[relItem](t, m, "oomv", cachemgr.WithVersioned(true))
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
	relNoLeaks(t)
	s := redistest.Start(t)
	admin := s.Client(t)
	relACL(t, admin, "+@read")
	rdb := relClient(t, s.Addr(), func(o *redis.Options) { o.Username, o.Password = "limited", "pw" })
	m := relManager(t, rdb, cachemgr.WithOpTimeout(200*time.Millisecond))
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
	relNoLeaks(t)
	s := redistest.Start(t)
	admin := s.Client(t)
	m, _ := newManager(t, s)
	c := newCache[relItem](t, m, "noscript")
	vc := newCache[relItem](t, m, "noscriptv", cachemgr.WithVersioned(true))
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

// TestReliabilityWritesDuringOutage (scenario 12): process A loses Redis
// while process B keeps it. A's Set and Delete report ErrUnavailable
// (never a false success); B keeps serving the value A failed to replace,
// as A was told; once A is back, its writes are seen by B.
func TestReliabilityWritesDuringOutage(t *testing.T) {
	relNoLeaks(t)
	s := redistest.Start(t)
	p := faultproxy.New(t, s.Addr())
	a := relManager(t, relClient(t, p.Addr(), nil), cachemgr.WithOpTimeout(50*time.Millisecond), cachemgr.WithBreaker(3, 100*time.Millisecond))
	b, _ := newManager(t, s)
	ca, cb := newCache[relItem](t, a, "outage"), newCache[relItem](t, b, "outage")
	ctx := context.Background()
	if err := ca.Set(ctx, "k", relItem{Key: "k", Version: 1}); err != nil {
		t.Fatalf("Set(v1) error = %v", err)
	}
	p.Refuse(true)
	p.CutAll()
	if err := ca.Set(ctx, "k", relItem{Key: "k", Version: 2}); !errors.Is(err, cachemgr.ErrUnavailable) {
		t.Errorf("Set(v2) during A's outage = %v, want ErrUnavailable", err)
	}
	if err := ca.Delete(ctx, "k"); !errors.Is(err, cachemgr.ErrUnavailable) {
		t.Errorf("Delete during A's outage = %v, want ErrUnavailable", err)
	}
	if err := a.InvalidateTags(ctx, "t"); !errors.Is(err, cachemgr.ErrUnavailable) {
		t.Errorf("InvalidateTags during A's outage = %v, want ErrUnavailable", err)
	}
	if v, err := cb.Get(ctx, "k"); err != nil || v.Version != 1 {
		t.Errorf("B's Get during A's outage = %+v, %v; want v1 (A was told its writes failed)", v, err)
	}
	p.Refuse(false)
	waitFor(t, "A's Set to succeed once Redis is back", func() bool {
		return ca.Set(ctx, "k", relItem{Key: "k", Version: 3}) == nil
	})
	if v, err := cb.Get(ctx, "k"); err != nil || v.Version != 3 {
		t.Errorf("B's Get after A's outage = %+v, %v; want v3", v, err)
	}
}

// TestReliabilityLoaderFailsRedisDown (scenario 11): with Redis down and
// no stale copy, a loader error reaches the caller (errors.Is works on
// it) and is not cached: the next Fetch calls the loader again.
func TestReliabilityLoaderFailsRedisDown(t *testing.T) {
	relNoLeaks(t)
	s := redistest.Start(t)
	m, _ := newManager(t, s, cachemgr.WithOpTimeout(50*time.Millisecond))
	c := newCache[relItem](t, m, "loaderr")
	ctx := context.Background()
	s.Kill()
	boom := errors.New("database down too")
	for i := range 3 {
		_, err := c.Fetch(ctx, "k", func(context.Context) (relItem, error) { return relItem{}, boom })
		if !errors.Is(err, boom) {
			t.Fatalf("Fetch #%d with Redis and loader down = %v, want the loader's error", i, err)
		}
		if i == 0 {
			t.Logf("Fetch error with Redis and loader down: %v (wraps ErrUnavailable: %v)", err, errors.Is(err, cachemgr.ErrUnavailable))
		}
	}
	if st := m.Stats(); st.Loads != 3 || st.LoadErrors != 3 {
		t.Errorf("Stats() = %+v, want 3 loads and 3 load errors (errors not cached)", st)
	}
	s.Restart()
	waitFor(t, "a Fetch to reach Redis again", func() bool {
		v, err := c.Fetch(ctx, "k", func(context.Context) (relItem, error) { return relItem{Key: "k"}, nil })
		return err == nil && v.Key == "k" && m.Stats().Breaker == "closed"
	})
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
	relNoLeaks(t)
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

// TestReliabilityClockSkew (scenario 65): the processes' clocks are a
// second apart, far beyond the skew allowance. On one Redis node, tag
// stamps, load stamps and Set stamps all come from the server's clock, so
// the processes' clocks do not matter: B's InvalidateTags right after A's
// load and A's Set makes both unreadable, and a Set by A right after B's
// InvalidateTags is readable at once.
func TestReliabilityClockSkew(t *testing.T) {
	s := redistest.Start(t)
	ctx := context.Background()
	for _, offset := range []time.Duration{time.Second, -time.Second} {
		t.Run(fmt.Sprint("clock ", offset), func(t *testing.T) {
			skewed, _ := newManager(t, s, cachemgr.WithClock(func() time.Time { return time.Now().Add(offset) }))
			b, _ := newManager(t, s)
			name := fmt.Sprint("skew", offset.Milliseconds())
			ca, cb := newCache[string](t, skewed, name), newCache[string](t, b, name)
			if _, err := ca.Fetch(ctx, "f", func(context.Context) (string, error) { return "old", nil }, cachemgr.Tags("t"+name)); err != nil {
				t.Fatalf("A: Fetch(f) error = %v", err)
			}
			if err := ca.Set(ctx, "k", "old", cachemgr.Tags("t"+name)); err != nil {
				t.Fatalf("A: Set(k) error = %v", err)
			}
			if err := b.InvalidateTags(ctx, "t"+name); err != nil {
				t.Fatalf("B: InvalidateTags error = %v", err)
			}
			for _, c := range []*cachemgr.Cache[string]{ca, cb} {
				for _, k := range []string{"f", "k"} {
					if v, err := c.Get(ctx, k); !errors.Is(err, cachemgr.ErrMiss) {
						t.Errorf("Get(%q), written by A, after B's InvalidateTags = %q, %v; want ErrMiss", k, v, err)
					}
				}
			}
			if err := ca.Set(ctx, "k", "new", cachemgr.Tags("t"+name)); err != nil {
				t.Fatalf("A: Set(k) error = %v", err)
			}
			for _, c := range []*cachemgr.Cache[string]{ca, cb} {
				if v, err := c.Get(ctx, "k"); err != nil || v != "new" {
					t.Errorf("Get(k) after A's Set that followed the InvalidateTags = %q, %v; want new", v, err)
				}
			}
		})
	}
}

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

// relOrder is another type than Product that shares some field names with
// it: what a cache of another type, or a later version of Product, sees.
type relOrder struct {
	ID    int     `json:"id"`
	Name  string  `json:"name"`
	Total float64 `json:"total"`
	Lines []int   `json:"lines"`
}

// TestReliabilityTypeConfusion (scenarios 39, 46, 54): a value of one type,
// in a valid envelope, read as another type through the same key: two
// processes whose caches of one name hold different types (a
// misconfiguration NewCache can only catch within one Manager, two
// services sharing a prefix, or a deploy that changed the type).
// The oracle: never another type's data, never a silently half-filled T;
// the entry is a counted miss, left for the process it belongs to.
func TestReliabilityTypeConfusion(t *testing.T) {
	s := redistest.Start(t)
	ctx := context.Background()
	for _, cd := range []struct {
		name string
		opt  cachemgr.Option
	}{{"msgpack", nil}, {"json", cachemgr.WithCodec(codec.JSON())}} {
		t.Run(cd.name, func(t *testing.T) {
			var opts []cachemgr.Option
			if cd.opt != nil {
				opts = append(opts, cd.opt)
			}
			m, _ := newManager(t, s, opts...)
			other, _ := newManager(t, s, opts...) // another process
			products := newCache[Product](t, m, "shared-"+cd.name)
			orders := newCache[relOrder](t, other, "shared-"+cd.name)
			if err := products.Set(ctx, "1", sampleProduct(1)); err != nil {
				t.Fatalf("Set(product) error = %v", err)
			}
			if v, err := orders.Get(ctx, "1"); !errors.Is(err, cachemgr.ErrMiss) {
				t.Errorf("Cache[relOrder].Get of a stored Product = %+v, %v; want ErrMiss, not a half-filled relOrder", v, err)
			}
			if st := other.Stats(); st.OtherShape != 1 {
				t.Errorf("Stats().OtherShape of the reader = %d, want 1", st.OtherShape)
			}
			v, err := orders.Fetch(ctx, "1", func(context.Context) (relOrder, error) { return relOrder{ID: 1, Name: "order"}, nil })
			if err != nil || v.Name != "order" {
				t.Errorf("Cache[relOrder].Fetch over a stored Product = %+v, %v; want the loader's order", v, err)
			}
			if p, err := products.Get(ctx, "1"); err != nil || p.Name != sampleProduct(1).Name {
				t.Errorf("Cache[Product].Get after the other shape read it = %+v, %v; want the Product, untouched", p, err)
			}
		})
	}
}

// TestReliabilityForeignValues (scenarios 38, 39, 45, 46, 48): bytes the
// Manager did not write in the form it expects, put there by hand: every
// one is a counted miss that Fetch replaces with one load, never a panic
// or a wrong value.
func TestReliabilityForeignValues(t *testing.T) {
	s := redistest.Start(t)
	ctx := context.Background()
	m, rdb := newManager(t, s)
	c := newCache[Product](t, m, "foreign")
	valid := func(cd codec.Codec, v any) []byte {
		b, err := cd.Append(envelope.Append(nil, envelope.Header{Codec: cd.ID(), FreshUntil: time.Now().Add(time.Hour).UnixMilli(), Shape: cachemgr.Shape[Product]()}), v)
		if err != nil {
			t.Fatalf("encode %T: %v", v, err)
		}
		return b
	}
	msgpackOf := func(v any) []byte {
		b, err := codec.Msgpack().Append(nil, v)
		if err != nil {
			t.Fatalf("msgpack %T: %v", v, err)
		}
		return b
	}
	tests := []struct {
		name  string
		value []byte
	}{
		{"msgpack without envelope", msgpackOf(sampleProduct(1))},
		{"JSON text by hand", []byte(`{"id":1,"name":"by redis-cli"}`)},
		{"envelope naming raw codec for a struct", valid(codec.Raw(), []byte("raw bytes"))},
		{"envelope naming JSON, payload msgpack", append(envelope.Append(nil, envelope.Header{Codec: codec.JSONID, Shape: cachemgr.Shape[Product]()}), msgpackOf(sampleProduct(1))...)},
		{"envelope naming msgpack, payload JSON", append(envelope.Append(nil, envelope.Header{Codec: codec.MsgpackID, Shape: cachemgr.Shape[Product]()}), `{"id":1}`...)},
		{"msgpack of a field of another kind", valid(codec.Msgpack(), map[string]any{"id": "not a number", "name": 7})},
		{"JSON of a field of another kind", valid(codec.JSON(), map[string]any{"id": "not a number"})},
		{"negative entry with a payload", append(envelope.Append(nil, envelope.Header{Codec: codec.MsgpackID, Negative: true}), 1, 2, 3)},
		{"unknown compressor", append(envelope.Append(nil, envelope.Header{Codec: codec.MsgpackID, Compressor: 9, RawLen: 4, Shape: cachemgr.Shape[Product]()}), 1, 2, 3, 4)},
		{"future format version", func() []byte {
			b := valid(codec.Msgpack(), sampleProduct(1))
			b[1] = 3 << 4
			return b
		}()},
		{"msgpack with trailing bytes", append(valid(codec.Msgpack(), sampleProduct(1)), 0xc0)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := "test:foreign:{=" + tt.name + "}"
			if err := rdb.Set(ctx, key, tt.value, time.Minute).Err(); err != nil {
				t.Fatalf("raw SET error = %v", err)
			}
			before := m.Stats()
			if v, err := c.Get(ctx, tt.name); !errors.Is(err, cachemgr.ErrMiss) {
				t.Errorf("Get() = %+v, %v; want ErrMiss", v, err)
			}
			if got := m.Stats().DecodeErrors - before.DecodeErrors; got != 1 {
				t.Errorf("DecodeErrors grew by %d, want 1", got)
			}
			if err := rdb.Set(ctx, key, tt.value, time.Minute).Err(); err != nil {
				t.Fatalf("raw SET error = %v", err)
			}
			loads := 0
			v, err := c.Fetch(ctx, tt.name, func(context.Context) (Product, error) { loads++; return sampleProduct(2), nil })
			if err != nil || v.ID != 2 || loads != 1 {
				t.Errorf("Fetch() over foreign bytes = %d, %v with %d loads; want product 2 from one load", v.ID, err, loads)
			}
			if v, err := c.Get(ctx, tt.name); err != nil || v.ID != 2 {
				t.Errorf("Get() after Fetch = %d, %v; want the reloaded value", v.ID, err)
			}
		})
	}
	t.Run("JSON written, msgpack default reads it", func(t *testing.T) {
		old, _ := newManager(t, s, cachemgr.WithCodec(codec.JSON()))
		if err := newCache[Product](t, old, "foreign").Set(ctx, "codec", sampleProduct(5)); err != nil {
			t.Fatalf("Set() error = %v", err)
		}
		if v, err := c.Get(ctx, "codec"); err != nil || !equalProduct(v, sampleProduct(5)) {
			t.Errorf("Get() = %+v, %v; want the JSON-written value", v, err)
		}
	})
	t.Run("msgpack written, JSON Manager reads it", func(t *testing.T) {
		jm, _ := newManager(t, s, cachemgr.WithCodec(codec.JSON()))
		if err := c.Set(ctx, "codec2", sampleProduct(6)); err != nil {
			t.Fatalf("Set() error = %v", err)
		}
		if v, err := newCache[Product](t, jm, "foreign").Get(ctx, "codec2"); err != nil || !equalProduct(v, sampleProduct(6)) {
			t.Errorf("Get() = %+v, %v; want the msgpack-written value", v, err)
		}
	})
}

// TestReliabilityForeignCompanionKeys (scenario 48): a key of the wrong
// RESP type where the Manager keeps a version or a tag stamp. Reads miss,
// Fetch answers from the loader, nothing panics, and writes report the
// error rather than succeed in a way nobody can read.
func TestReliabilityForeignCompanionKeys(t *testing.T) {
	s := redistest.Start(t)
	ctx := context.Background()
	m, rdb := newManager(t, s)
	load := func(context.Context) (string, error) { return "loaded", nil }

	vc := newCache[string](t, m, "wtv", cachemgr.WithVersioned(true))
	rdb.HSet(ctx, "test:wtv:~v", "f", "v")
	if v, err := vc.Get(ctx, "k"); !errors.Is(err, cachemgr.ErrMiss) {
		t.Errorf("Get() with a hash as version key = %q, %v; want ErrMiss", v, err)
	}
	if v, err := vc.Fetch(ctx, "k", load); err != nil || v != "loaded" {
		t.Errorf("Fetch() with a hash as version key = %q, %v; want the loader's value", v, err)
	}
	if err := vc.Bump(ctx); err != nil {
		t.Errorf("Bump() over a hash version key = %v, want it replaced", err)
	}
	if err := vc.Set(ctx, "k", "after bump"); err != nil {
		t.Errorf("Set() after Bump = %v", err)
	}
	if v, err := vc.Get(ctx, "k"); err != nil || v != "after bump" {
		t.Errorf("Get() after Bump = %q, %v", v, err)
	}

	tc := newCache[string](t, m, "wtt")
	rdb.HSet(ctx, "test:~tag:{tbad}", "f", "v")
	_ = tc.Set(ctx, "k", "v", cachemgr.Tags("bad")) // see TestReliabilityTagWriteFails
	if v, err := tc.Get(ctx, "k"); !errors.Is(err, cachemgr.ErrMiss) {
		t.Errorf("Get() of an entry whose tag stamp is a hash = %q, %v; want ErrMiss", v, err)
	}
	if v, err := tc.Fetch(ctx, "f", load, cachemgr.Tags("bad")); err != nil || v != "loaded" {
		t.Errorf("Fetch() with a hash as tag stamp = %q, %v; want the loader's value", v, err)
	}
	if err := m.InvalidateTags(ctx, "bad"); err == nil {
		t.Errorf("InvalidateTags() over a hash stamp = nil, want WRONGTYPE")
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
			m := relManager(t, rdb)
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

// relAllocated returns the bytes allocated by the process while fn ran.
func relAllocated(fn func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	fn()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// TestReliabilityForgedLengths (scenarios 40, 43): a few bytes behind a
// valid envelope that claim huge msgpack arrays, maps, strings or a huge
// decompressed size. Each is a miss, and decoding allocates a few MiB at
// most.
func TestReliabilityForgedLengths(t *testing.T) {
	s := redistest.Start(t)
	ctx := context.Background()
	m, rdb := newManager(t, s)
	env := envelope.Append(nil, envelope.Header{Codec: codec.MsgpackID})
	zeros := make([]byte, 64<<10)
	block, ok, err := compress.LZ4().Compress(nil, zeros)
	if err != nil || !ok {
		t.Fatalf("lz4 Compress(64 KiB of zeros) = %v, %v", ok, err)
	}
	lz4With := func(rawLen int, payload []byte) []byte {
		return append(envelope.Append(nil, envelope.Header{Codec: codec.MsgpackID, Compressor: compress.LZ4ID, RawLen: rawLen}), payload...)
	}
	anyCache := newCache[any](t, m, "forged-any")
	sliceCache := newCache[[]any](t, m, "forged-slice")
	mapCache := newCache[map[string]any](t, m, "forged-map")
	intsCache := newCache[[]int64](t, m, "forged-ints")
	strCache := newCache[string](t, m, "forged-str")
	get := map[string]func() error{
		"any":            func() error { _, err := anyCache.Get(ctx, "k"); return err },
		"[]any":          func() error { _, err := sliceCache.Get(ctx, "k"); return err },
		"map[string]any": func() error { _, err := mapCache.Get(ctx, "k"); return err },
		"[]int64":        func() error { _, err := intsCache.Get(ctx, "k"); return err },
		"string":         func() error { _, err := strCache.Get(ctx, "k"); return err },
	}
	key := map[string]string{"any": "forged-any", "[]any": "forged-slice", "map[string]any": "forged-map", "[]int64": "forged-ints", "string": "forged-str"}
	// The forged bytes must reach each type's decoder: they carry its shape.
	shape := map[string]uint32{"any": cachemgr.Shape[any](), "[]any": cachemgr.Shape[[]any](), "map[string]any": cachemgr.Shape[map[string]any](),
		"[]int64": cachemgr.Shape[[]int64](), "string": cachemgr.Shape[string]()}
	tests := []struct {
		name  string
		value []byte
		into  []string
	}{
		{"array32 of 4Mi", append(slices.Clone(env), 0xdd, 0x00, 0x40, 0x00, 0x00), []string{"any", "[]any", "[]int64"}},
		{"array32 of 64Mi", append(slices.Clone(env), 0xdd, 0x04, 0x00, 0x00, 0x00), []string{"any", "[]any", "[]int64"}},
		{"array32 of 4Gi", append(slices.Clone(env), 0xdd, 0xff, 0xff, 0xff, 0xff), []string{"any", "[]any", "[]int64"}},
		{"map32 of 4Mi", append(slices.Clone(env), 0xdf, 0x00, 0x40, 0x00, 0x00), []string{"any", "map[string]any"}},
		{"nested arrays", append(slices.Clone(env), 0x91, 0x91, 0xdd, 0x00, 0x40, 0x00, 0x00), []string{"any", "[]any"}},
		{"str32 of 1GiB", append(slices.Clone(env), 0xdb, 0x40, 0x00, 0x00, 0x00, 'x'), []string{"any", "string"}},
		{"bin32 of 1GiB", append(slices.Clone(env), 0xc6, 0x40, 0x00, 0x00, 0x00, 'x'), []string{"any", "string"}},
		{"ext32 of 1GiB", append(slices.Clone(env), 0xc9, 0x40, 0x00, 0x00, 0x00, 1, 'x'), []string{"any"}},
		{"lz4 claiming 4GiB", lz4With(1<<32-1, block), []string{"any", "string"}},
		{"64KiB zeros claiming 1GiB", lz4With(1<<30, block), []string{"any", "string"}},
		{"64KiB zeros claiming 8MiB", lz4With(8<<20, block), []string{"any", "string"}},
		{"64KiB zeros claiming 64KiB+1", lz4With(64<<10+1, block), []string{"any", "string"}},
	}
	for _, tt := range tests {
		for _, into := range tt.into {
			t.Run(tt.name+" into "+into, func(t *testing.T) {
				value := slices.Clone(tt.value)
				binary.BigEndian.PutUint32(value[12:16], shape[into])
				if err := rdb.Set(ctx, "test:"+key[into]+":{=k}", value, time.Minute).Err(); err != nil {
					t.Fatalf("raw SET error = %v", err)
				}
				var err error
				alloc := relAllocated(func() { err = get[into]() })
				if !errors.Is(err, cachemgr.ErrMiss) {
					t.Errorf("Get() = %v, want ErrMiss", err)
				}
				if alloc > 4<<20 {
					t.Errorf("Get() of %d forged bytes allocated %d MiB, want < 4", len(tt.value), alloc>>20)
				}
			})
		}
	}
}

// TestReliabilityCorruptCompression (scenarios 41, 42, 44): values stored
// compressed, then damaged (bytes flipped, truncated, emptied); values of
// random bytes above the threshold; sizes around the threshold, written
// with one threshold and read with another. Damage is a miss, never a
// panic; every intact value round-trips whatever the reader's threshold.
func TestReliabilityCorruptCompression(t *testing.T) {
	s := redistest.Start(t)
	ctx := context.Background()
	m, rdb := newManager(t, s, cachemgr.WithCompressThreshold(1<<10))
	c := newCache[string](t, m, "z")
	text := strings.Repeat("compressible text ", 4096)
	if err := c.Set(ctx, "good", text); err != nil {
		t.Fatalf("Set() error = %v", err)
	}
	stored, err := rdb.Get(ctx, "test:z:{=good}").Bytes()
	if err != nil {
		t.Fatalf("raw GET error = %v", err)
	}
	if h, _, err := envelope.Parse(stored, 1<<30); err != nil || h.Compressor != compress.LZ4ID {
		t.Fatalf("stored value header = %+v, %v; want lz4-compressed", h, err)
	}
	damage := []struct {
		name string
		b    []byte
	}{
		{"truncated by one", stored[:len(stored)-1]},
		{"truncated to the header", stored[:envelope.HeaderSize]},
		{"body flipped", func() []byte {
			b := slices.Clone(stored)
			for i := envelope.HeaderSize; i < len(b); i += 7 {
				b[i] ^= 0xa5
			}
			return b
		}()},
		{"first token flipped", func() []byte {
			b := slices.Clone(stored)
			b[envelope.HeaderSize] ^= 0xff
			return b
		}()},
		{"raw length off by one", func() []byte {
			h, payload, _ := envelope.Parse(stored, 1<<30)
			h.RawLen++
			return append(envelope.Append(nil, h), payload...)
		}()},
	}
	for _, d := range damage {
		t.Run(d.name, func(t *testing.T) {
			if err := rdb.Set(ctx, "test:z:{=bad}", d.b, time.Minute).Err(); err != nil {
				t.Fatalf("raw SET error = %v", err)
			}
			if v, err := c.Get(ctx, "bad"); !errors.Is(err, cachemgr.ErrMiss) {
				t.Errorf("Get(damaged) = %d bytes, %v; want ErrMiss", len(v), err)
			}
		})
	}
	t.Run("incompressible 1MiB", func(t *testing.T) {
		want := randomString(1 << 20)
		if err := c.Set(ctx, "random", want); err != nil {
			t.Fatalf("Set() error = %v", err)
		}
		raw, _ := rdb.Get(ctx, "test:z:{=random}").Bytes()
		h, _, err := envelope.Parse(raw, 1<<30)
		if err != nil || h.Compressor != 0 || len(raw) < 1<<20 {
			t.Errorf("stored incompressible value: header %+v, %d bytes, %v; want stored raw, never empty", h, len(raw), err)
		}
		if got, err := c.Get(ctx, "random"); err != nil || got != want {
			t.Errorf("Get() = %d bytes, %v; want the 1 MiB written", len(got), err)
		}
	})
	t.Run("threshold boundary and change", func(t *testing.T) {
		reader, _ := newManager(t, s, cachemgr.WithCompressThreshold(4<<10))
		rc := newCache[string](t, reader, "z")
		// A msgpack string of n bytes encodes to n+3 (str16) or n+5 (str32).
		for _, n := range []int{1<<10 - 4, 1<<10 - 3, 1<<10 - 2, 4<<10 - 3, 4<<10 + 1} {
			want := strings.Repeat("b", n)
			key := fmt.Sprint("size", n)
			if err := c.Set(ctx, key, want); err != nil {
				t.Fatalf("Set(%d bytes) error = %v", n, err)
			}
			for name, cc := range map[string]*cachemgr.Cache[string]{"1KiB writer": c, "4KiB reader": rc} {
				if got, err := cc.Get(ctx, key); err != nil || got != want {
					t.Errorf("%s: Get(%d bytes) = %d bytes, %v", name, n, len(got), err)
				}
			}
		}
	})
}

// TestReliabilityNilEmptyNotFound (scenario 47): a nil pointer, an empty
// string, a zero struct, nil and empty slices and a loader's "not found"
// each come back as themselves, and none is confused with a miss.
func TestReliabilityNilEmptyNotFound(t *testing.T) {
	s := redistest.Start(t)
	ctx := context.Background()
	for _, cd := range []struct {
		name string
		opts []cachemgr.Option
	}{{"msgpack", nil}, {"json", []cachemgr.Option{cachemgr.WithCodec(codec.JSON())}}} {
		t.Run(cd.name, func(t *testing.T) {
			m, _ := newManager(t, s, cd.opts...)
			ptrs := newCache[*Product](t, m, "nil-"+cd.name)
			strs := newCache[string](t, m, "empty-"+cd.name)
			structs := newCache[Product](t, m, "zero-"+cd.name)
			slicesC := newCache[[]int](t, m, "slice-"+cd.name)
			if err := ptrs.Set(ctx, "nil", nil); err != nil {
				t.Fatalf("Set(nil pointer) error = %v", err)
			}
			if v, err := ptrs.Get(ctx, "nil"); err != nil || v != nil {
				t.Errorf("Get(nil pointer) = %v, %v; want nil, nil", v, err)
			}
			loads := 0
			for range 2 {
				v, err := ptrs.Fetch(ctx, "nil-loaded", func(context.Context) (*Product, error) { loads++; return nil, nil })
				if err != nil || v != nil {
					t.Errorf("Fetch(loader returns nil) = %v, %v; want nil, nil", v, err)
				}
			}
			if loads != 1 {
				t.Errorf("loader returning nil called %d times, want 1 (nil is a value)", loads)
			}
			if err := strs.Set(ctx, "empty", ""); err != nil {
				t.Fatalf("Set(empty string) error = %v", err)
			}
			if v, err := strs.Get(ctx, "empty"); err != nil || v != "" {
				t.Errorf("Get(empty string) = %q, %v; want a hit", v, err)
			}
			if err := structs.Set(ctx, "zero", Product{}); err != nil {
				t.Fatalf("Set(zero struct) error = %v", err)
			}
			if v, err := structs.Get(ctx, "zero"); err != nil || !equalProduct(v, Product{}) {
				t.Errorf("Get(zero struct) = %+v, %v; want a hit", v, err)
			}
			for _, tt := range []struct {
				key  string
				v    []int
				want string
			}{{"nil", nil, "[]"}, {"empty", []int{}, "[]"}, {"one", []int{1}, "[1]"}} {
				if err := slicesC.Set(ctx, tt.key, tt.v); err != nil {
					t.Fatalf("Set(%v) error = %v", tt.v, err)
				}
				got, err := slicesC.Get(ctx, tt.key)
				if err != nil || fmt.Sprint(got) != tt.want || (got == nil) != (tt.v == nil) {
					t.Errorf("Get(%s slice) = %#v, %v; want %#v", tt.key, got, err, tt.v)
				}
			}
			_, err := strs.Fetch(ctx, "absent", func(context.Context) (string, error) {
				return "", fmt.Errorf("row 9: %w", cachemgr.ErrNotFound)
			})
			if !errors.Is(err, cachemgr.ErrNotFound) || errors.Is(err, cachemgr.ErrMiss) {
				t.Errorf("Fetch(not found) error = %v, want ErrNotFound", err)
			}
			if v, err := strs.Get(ctx, "absent"); !errors.Is(err, cachemgr.ErrNotFound) || errors.Is(err, cachemgr.ErrMiss) || v != "" {
				t.Errorf("Get(negative entry) = %q, %v; want ErrNotFound, distinct from a miss and from the empty string", v, err)
			}
		})
	}
}

// TestReliabilityKeyInjectivity (scenarios 49, 54): random prefixes, cache
// names and user keys made of separators, hash-tag characters, glob
// characters and the markers of versioned and hashed keys, over plain and
// versioned caches and a short maximum key length. Every distinct
// (prefix, name, versioned, key) reads back its own value: no two map to
// one Redis key, and tenants (prefixes) never see each other's data.
func TestReliabilityKeyInjectivity(t *testing.T) {
	s := redistest.Start(t)
	ctx := context.Background()
	rnd := rand.New(rand.NewPCG(49, 54))
	pick := func(alphabet []string, n int) string {
		var b strings.Builder
		for range n {
			b.WriteString(alphabet[rnd.IntN(len(alphabet))])
		}
		return b.String()
	}
	prefixAlphabet := []string{"a", ":", "v", "~", "=", "#", "*", "t", "i"}
	nameAlphabet := []string{"a", "v", "~", "=", "#", "*", "t", "i", "tag"}
	keyAlphabet := []string{"a", ":", "{", "}", "=", "#", "~", "v", "i", "*", `\`, "tag", "{=", "}:i", ":v"}
	type target struct {
		prefix, name string
		versioned    bool
		maxKey       int
		key          string
	}
	managers := map[[2]string]*cachemgr.Manager{}
	caches := map[target]*cachemgr.Cache[string]{}
	cacheFor := func(tg target) *cachemgr.Cache[string] {
		ct := tg
		ct.key = ""
		if c, ok := caches[ct]; ok {
			return c
		}
		mk := [2]string{tg.prefix, strconv.Itoa(tg.maxKey)}
		m, ok := managers[mk]
		if !ok {
			m = relManager(t, s.Client(t), cachemgr.WithPrefix(tg.prefix), cachemgr.WithMaxKeyLen(tg.maxKey))
			managers[mk] = m
		}
		c := newCache[string](t, m, tg.name, cachemgr.WithVersioned(tg.versioned))
		caches[ct] = c
		return c
	}
	// The maximum key length changes only how long keys are spelled, so
	// one logical key is (prefix, name, versioned, key).
	seen := map[target]bool{}
	var targets []target
	for len(targets) < 400 {
		tg := target{
			prefix:    pick(prefixAlphabet, rnd.IntN(3)),
			name:      pick(nameAlphabet, 1+rnd.IntN(2)),
			versioned: rnd.IntN(3) == 0,
			maxKey:    []int{4, 200}[rnd.IntN(2)],
			key:       pick(keyAlphabet, rnd.IntN(5)),
		}
		id := tg
		id.maxKey = 0
		if !seen[id] {
			seen[id] = true
			targets = append(targets, tg)
		}
	}
	for i, tg := range targets {
		if err := cacheFor(tg).Set(ctx, tg.key, strconv.Itoa(i), cachemgr.Tags(tg.key+"#tag")); err != nil {
			t.Fatalf("Set(%+v) error = %v", tg, err)
		}
	}
	for i, tg := range targets {
		got, err := cacheFor(tg).Get(ctx, tg.key)
		if err != nil || got != strconv.Itoa(i) {
			t.Errorf("Get(%+v) = %q, %v; want its own value %d", tg, got, err, i)
		}
	}
	t.Logf("%d targets over %d caches and %d Managers", len(targets), len(caches), len(managers))
}

// relSlot returns the Redis Cluster hash slot of key (CRC16/XMODEM of the
// hash tag, or of the whole key), as CLUSTER KEYSLOT would.
func relSlot(key string) int {
	if open := strings.IndexByte(key, '{'); open >= 0 {
		if end := strings.IndexByte(key[open+1:], '}'); end > 0 {
			key = key[open+1 : open+1+end]
		}
	}
	var crc uint16
	for i := 0; i < len(key); i++ {
		crc ^= uint16(key[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return int(crc % 16384)
}

// TestReliabilityGlobAndHashTagKeys (scenarios 50, 51, 53): glob
// characters in InvalidatePrefix match only themselves; a user key's
// companions (the invalidation marker) share its slot whatever the key
// holds; special characters work on the data path.
func TestReliabilityGlobAndHashTagKeys(t *testing.T) {
	if relSlot("foo") != 12182 || relSlot("{bar}foo") != relSlot("bar") {
		t.Fatalf("relSlot does not match CLUSTER KEYSLOT")
	}
	s := redistest.Start(t)
	ctx := context.Background()
	m, rdb := newManager(t, s)
	c := newCache[string](t, m, "glob")
	keys := []string{`a\b`, `a\bc`, `ab`, `a*`, `aa`, `[ab]x`, `ax`, `bx`, `?x`, `zx`, `{x`, `}x`, `x}`, `a?`, "\r\n", "nul\x00", "\xff"}
	prefixes := []struct {
		prefix string
		want   []string
	}{
		{`a\`, []string{`a\b`, `a\bc`}},
		{`[ab]`, []string{`[ab]x`}},
		{`?`, []string{`?x`}},
		{`a?`, []string{`a?`}},
		{`{`, []string{`{x`}},
		{`}`, []string{`}x`}},
		{"\r", []string{"\r\n"}},
	}
	for _, tt := range prefixes {
		t.Run(fmt.Sprintf("%q", tt.prefix), func(t *testing.T) {
			for _, k := range keys {
				if err := c.Set(ctx, k, k); err != nil {
					t.Fatalf("Set(%q) error = %v", k, err)
				}
			}
			n, err := c.InvalidatePrefix(ctx, tt.prefix)
			if err != nil || n != len(tt.want) {
				t.Errorf("InvalidatePrefix(%q) = %d, %v; want %d", tt.prefix, n, err, len(tt.want))
			}
			for _, k := range keys {
				_, err := c.Get(ctx, k)
				if got, want := errors.Is(err, cachemgr.ErrMiss), slices.Contains(tt.want, k); got != want {
					t.Errorf("after InvalidatePrefix(%q): Get(%q) miss = %v, want %v", tt.prefix, k, got, want)
				}
			}
		})
	}
	for _, k := range []string{"{x}", "}{", "{}", "}", "a}b{c", "{=x}", "}:i"} {
		if err := c.Delete(ctx, k); err != nil {
			t.Fatalf("Delete(%q) error = %v", k, err)
		}
	}
	for _, key := range rdb.Keys(ctx, "test:glob:*").Val() {
		if !strings.HasSuffix(key, ":i") {
			continue
		}
		data := strings.TrimSuffix(key, ":i")
		if relSlot(key) != relSlot(data) {
			t.Errorf("marker %q in slot %d, its data key %q in slot %d: a script touching both would fail with CROSSSLOT", key, relSlot(key), data, relSlot(data))
		}
	}
}

// TestReliabilityUserKeysCannotPickSlot (scenario 51): keys.go promises
// that "user input cannot pick the slot". User keys that share a prefix
// ending in "}" must still spread over slots like other keys do.
func TestReliabilityUserKeysCannotPickSlot(t *testing.T) {
	s := redistest.Start(t)
	ctx := context.Background()
	m, rdb := newManager(t, s)
	c := newCache[string](t, m, "slots")
	for _, shape := range []string{"user%d", "}%d", "{tenant}%d"} {
		for i := range 100 {
			if err := c.Set(ctx, fmt.Sprintf(shape, i), "v"); err != nil {
				t.Fatalf("Set() error = %v", err)
			}
		}
	}
	bySlot := map[string]map[int]bool{}
	for _, key := range rdb.Keys(ctx, "test:slots:*").Val() {
		user := strings.TrimSuffix(strings.TrimPrefix(key, "test:slots:{="), "}")
		shape := "user%d"
		switch {
		case strings.HasPrefix(user, "}"):
			shape = "}%d"
		case strings.HasPrefix(user, "{tenant}"):
			shape = "{tenant}%d"
		}
		if bySlot[shape] == nil {
			bySlot[shape] = map[int]bool{}
		}
		bySlot[shape][relSlot(key)] = true
	}
	for shape, slots := range bySlot {
		if len(slots) < 90 {
			t.Errorf("100 user keys %q landed in %d slots, want them spread like plain keys (%d slots)", shape, len(slots), len(bySlot["user%d"]))
		}
	}
}

// TestReliabilityHugeKeysAndValues (scenarios 52, 55): a 10 MB key is
// hashed before it reaches Redis and works on every path; a value far over
// the size limit is refused with ErrTooLarge, with one copy allocated and
// nothing written, and a Fetch of one still returns it; a value just under
// the default 8 MiB limit round-trips, and other callers keep being served
// meanwhile.
func TestReliabilityHugeKeysAndValues(t *testing.T) {
	s := redistest.Start(t)
	ctx := context.Background()
	m, rdb := newManager(t, s, cachemgr.WithOpTimeout(2*time.Second))
	c := newCache[string](t, m, "huge")

	t.Run("10MB key", func(t *testing.T) {
		key := "user:" + strings.Repeat("k", 10<<20)
		start := time.Now()
		if err := c.Set(ctx, key, "v"); err != nil {
			t.Fatalf("Set(10 MB key) error = %v", err)
		}
		if v, err := c.Get(ctx, key); err != nil || v != "v" {
			t.Errorf("Get(10 MB key) = %q, %v", v, err)
		}
		if n, err := c.InvalidatePrefix(ctx, "user:kkk"); err != nil || n != 1 {
			t.Errorf("InvalidatePrefix(user:kkk) = %d, %v; want the hashed key found", n, err)
		}
		if v, err := c.Fetch(ctx, key, func(context.Context) (string, error) { return "loaded", nil }); err != nil || v != "loaded" {
			t.Errorf("Fetch(10 MB key) = %q, %v", v, err)
		}
		if err := c.Delete(ctx, key); err != nil {
			t.Errorf("Delete(10 MB key) error = %v", err)
		}
		// Hashing the key keeps each call cheap; what this catches is
		// work that grows with the key many times over (a loaded machine
		// takes a few seconds for what a quiet one does in 300ms).
		if took := time.Since(start); took > 20*time.Second {
			t.Errorf("5 calls with a 10 MB key took %v", took)
		}
		for _, k := range rdb.Keys(ctx, "test:huge:*").Val() {
			if len(k) > 200 {
				t.Errorf("Redis key of %d bytes, want the 10 MB user key hashed", len(k))
			}
		}
		if err := c.Set(ctx, "k", "v", cachemgr.Tags(key)); !errors.Is(err, cachemgr.ErrInvalidOption) {
			t.Errorf("Set(Tags(10 MB tag)) = %v, want ErrInvalidOption", err)
		}
	})
	t.Run("value 16 times the limit", func(t *testing.T) {
		// A 100 MB value over an 8 MiB limit, scaled down 6x so
		// the race detector does not make it slow: 16 MiB over 1 MiB.
		small, _ := newManager(t, s, cachemgr.WithMaxValueSize(1<<20))
		sc := newCache[string](t, small, "huge")
		big := strings.Repeat("x", 16<<20)
		var err error
		alloc := relAllocated(func() { err = sc.Set(ctx, "big", big) })
		if !errors.Is(err, cachemgr.ErrTooLarge) {
			t.Fatalf("Set(16 MiB) error = %v, want ErrTooLarge", err)
		}
		t.Logf("Set(16 MiB) over a 1 MiB limit allocated %d MiB before refusing", alloc>>20)
		if alloc > 3*uint64(len(big)) {
			t.Errorf("Set(16 MiB) allocated %d MiB before refusing, want at most 3 copies", alloc>>20)
		}
		if n := rdb.Exists(ctx, "test:huge:{=big}").Val(); n != 0 {
			t.Errorf("a refused value was written")
		}
		before := small.Stats().WriteErrors
		v, err := sc.Fetch(ctx, "big", func(context.Context) (string, error) { return big, nil })
		if err != nil || len(v) != len(big) {
			t.Errorf("Fetch(16 MiB) = %d bytes, %v; want the value, uncached", len(v), err)
		}
		if small.Stats().WriteErrors != before+1 {
			t.Errorf("WriteErrors = %d, want %d", small.Stats().WriteErrors, before+1)
		}
	})
	t.Run("7MiB value under the limit", func(t *testing.T) {
		if err := c.Set(ctx, "probe", "p"); err != nil {
			t.Fatalf("Set(probe) error = %v", err)
		}
		var probe relLatencies
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				start := time.Now()
				if _, err := c.Get(ctx, "probe"); err != nil {
					t.Errorf("probe Get() error = %v", err)
					return
				}
				probe.add(time.Since(start))
			}
		}()
		want := strings.Repeat("0123456789abcdef", 7<<16) // 7 MiB
		if err := c.Set(ctx, "seven", want, cachemgr.TTL(time.Minute)); err != nil {
			t.Fatalf("Set(7 MiB) error = %v", err)
		}
		if got, err := c.Get(ctx, "seven"); err != nil || got != want {
			t.Fatalf("Get(7 MiB) = %d bytes, %v", len(got), err)
		}
		close(stop)
		wg.Wait()
		t.Logf("Get of a small key while 7 MiB values were written and read: %v", &probe)
	})
}

// TestReliabilityCancelMidFetch (scenarios 56, 57, 59): callers cancel at
// every stage of a Fetch (before it, during the Redis lookup, while
// waiting on the shared load, the caller that started the load). Each
// returns its ctx error at once; the others get the value; the load runs
// once; and when it ends no goroutine is left behind, with the Manager
// still open, and no lease or other stray key is left in Redis.
func TestReliabilityCancelMidFetch(t *testing.T) {
	s := redistest.Start(t)
	ctx := context.Background()
	m, rdb := newManager(t, s)
	c := newCache[relItem](t, m, "cancel")
	// Warm the pool and the Manager so the baseline holds what stays.
	if _, err := c.Fetch(ctx, "warm", func(context.Context) (relItem, error) { return relItem{Key: "warm"}, nil }); err != nil {
		t.Fatalf("Fetch(warm) error = %v", err)
	}
	baseline := goleak.IgnoreCurrent()

	release := make(chan struct{})
	var loads atomic.Int32
	load := func(ctx context.Context) (relItem, error) {
		loads.Add(1)
		select {
		case <-release:
			return relItem{Key: "k"}, nil
		case <-ctx.Done():
			return relItem{}, ctx.Err()
		}
	}
	type result struct {
		v    relItem
		err  error
		took time.Duration
	}
	run := func(cctx context.Context) <-chan result {
		ch := make(chan result, 1)
		go func() {
			start := time.Now()
			v, err := c.Fetch(cctx, "k", load)
			ch <- result{v, err, time.Since(start)}
		}()
		return ch
	}
	leaderCtx, cancelLeader := context.WithCancel(ctx)
	leader := run(leaderCtx)
	waitFor(t, "the load to start", func() bool { return loads.Load() == 1 })

	// Each caller's ctx ends at another moment: before its Fetch, during
	// its Redis calls, or while it waits on the shared load.
	var cancelled []<-chan result
	var cancels []context.CancelFunc
	for i := range 20 {
		cctx, cancel := context.WithTimeout(ctx, time.Duration(i)*time.Millisecond)
		cancels = append(cancels, cancel)
		cancelled = append(cancelled, run(cctx))
	}
	defer func() {
		for _, cancel := range cancels {
			cancel()
		}
	}()
	live := run(ctx)
	cancelLeader()
	for i, ch := range append(cancelled, leader) {
		r := <-ch
		if !errors.Is(r.err, context.Canceled) && !errors.Is(r.err, context.DeadlineExceeded) {
			t.Errorf("cancelled caller %d: Fetch = %+v, %v; want its ctx error", i, r.v, r.err)
		}
		if r.took > 20*time.Millisecond+2*time.Second {
			t.Errorf("cancelled caller %d returned after %v, want at once", i, r.took)
		}
	}
	close(release)
	if r := <-live; r.err != nil || r.v.Key != "k" {
		t.Errorf("live caller: Fetch = %+v, %v; want the loaded value", r.v, r.err)
	}
	if n := loads.Load(); n != 1 {
		t.Errorf("loader calls = %d, want 1", n)
	}
	goleak.VerifyNone(t, baseline)
	// The values and their invalidation markers stay; nothing else, such
	// as a lease, may.
	var stray []string
	for _, k := range rdb.Keys(ctx, "*").Val() {
		switch strings.TrimSuffix(k, ":i") {
		case "test:cancel:{=k}", "test:cancel:{=warm}":
		default:
			stray = append(stray, k)
		}
	}
	if len(stray) > 0 {
		t.Errorf("keys left after the cancelled Fetches: %q, want only the values and their markers", stray)
	}
}

// TestReliabilityLoaderPanicsRedisDown (scenario 58): a loader that panics
// while Redis is down (the fail-open path) reaches every waiter as
// ErrLoaderPanic, and the next Fetch loads again.
func TestReliabilityLoaderPanicsRedisDown(t *testing.T) {
	relNoLeaks(t)
	s := redistest.Start(t)
	m, _ := newManager(t, s, cachemgr.WithOpTimeout(50*time.Millisecond))
	c := newCache[relItem](t, m, "panic")
	s.Kill()
	release := make(chan struct{})
	var loads atomic.Int32
	errs := make(chan error, 10)
	for range 10 {
		go func() {
			_, err := c.Fetch(context.Background(), "k", func(context.Context) (relItem, error) {
				loads.Add(1)
				<-release
				panic("loader bug")
			})
			errs <- err
		}()
	}
	waitFor(t, "the loader to start", func() bool { return loads.Load() > 0 })
	close(release)
	for range 10 {
		if err := <-errs; !errors.Is(err, cachemgr.ErrLoaderPanic) {
			t.Errorf("Fetch() with Redis down and a panicking loader = %v, want ErrLoaderPanic", err)
		}
	}
	v, err := c.Fetch(context.Background(), "k", func(context.Context) (relItem, error) { return relItem{Key: "k"}, nil })
	if err != nil || v.Key != "k" {
		t.Errorf("Fetch() after the panic = %+v, %v; want a new load", v, err)
	}
}

// TestReliabilityLoaderHangs (scenario 58): the load timeout cuts a
// loader that honours its ctx, and the error reaches every waiter; a
// loader that ignores its ctx is waited for by callers without a deadline
// (its late result is returned, as WithLoadTimeout documents, but not
// cached), while callers with a deadline leave at it.
func TestReliabilityLoaderHangs(t *testing.T) {
	relNoLeaks(t)
	const loadTimeout, op = 150 * time.Millisecond, 500 * time.Millisecond
	s := redistest.Start(t)
	m, _ := newManager(t, s, cachemgr.WithLoadTimeout(loadTimeout), cachemgr.WithOpTimeout(op), cachemgr.WithWriteTimeout(op))
	c := newCache[relItem](t, m, "hang")
	ctx := context.Background()

	t.Run("loader honours ctx", func(t *testing.T) {
		var wg sync.WaitGroup
		for range 5 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				start := time.Now()
				_, err := c.Fetch(ctx, "honours", func(ctx context.Context) (relItem, error) {
					<-ctx.Done()
					return relItem{}, ctx.Err()
				})
				if took := time.Since(start); !errors.Is(err, context.DeadlineExceeded) || took > loadTimeout+2*time.Second {
					t.Errorf("Fetch() with a hung loader = %v after %v, want DeadlineExceeded after the %v load timeout", err, took, loadTimeout)
				}
			}()
		}
		wg.Wait()
		v, err := c.Fetch(ctx, "honours", func(context.Context) (relItem, error) { return relItem{Key: "honours"}, nil })
		if err != nil || v.Key != "honours" {
			t.Errorf("Fetch() after the timed-out load = %+v, %v; want a new load", v, err)
		}
	})
	t.Run("loader ignores ctx", func(t *testing.T) {
		release := make(chan struct{})
		started := make(chan struct{})
		load := func(context.Context) (relItem, error) {
			close(started)
			<-release
			return relItem{Key: "ignores"}, nil
		}
		patient := make(chan error, 1)
		go func() {
			v, err := c.Fetch(ctx, "ignores", load)
			if err == nil && v.Key != "ignores" {
				err = fmt.Errorf("got %+v", v)
			}
			patient <- err
		}()
		<-started
		dctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		defer cancel()
		start := time.Now()
		if _, err := c.Fetch(dctx, "ignores", load); !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > time.Second {
			t.Errorf("Fetch() with a deadline, loader hung = %v after %v; want DeadlineExceeded at the deadline", err, time.Since(start))
		}
		waitFor(t, "the load to outlive its timeout and write-back window", func() bool {
			// A write-back is allowed until the load timeout plus an op
			// timeout after the claim.
			return time.Since(start) > loadTimeout+op+300*time.Millisecond
		})
		close(release)
		if err := <-patient; err != nil {
			t.Errorf("Fetch() without a deadline = %v, want the late value", err)
		}
		if v, err := c.Get(ctx, "ignores"); !errors.Is(err, cachemgr.ErrMiss) {
			t.Errorf("Get() after a load that outlived its timeout = %+v, %v; want ErrMiss (late results are not cached)", v, err)
		}
	})
}

// TestReliabilityTTLEdges (scenario 63): edge durations at every place a
// TTL enters the API. Zero, negative and overflowing values are clear
// errors (never "no expiry", which is what go-redis makes of them); sub-
// millisecond values round up to Redis' 1 ms; MaxTTL itself is accepted;
// jitter never takes a TTL to zero.
func TestReliabilityTTLEdges(t *testing.T) {
	s := redistest.Start(t)
	ctx := context.Background()
	m, rdb := newManager(t, s)
	invalid := []time.Duration{0, -5 * time.Second, -time.Nanosecond, math.MinInt64, cachemgr.MaxTTL + time.Nanosecond, math.MaxInt64}
	for _, d := range invalid {
		t.Run(fmt.Sprint("invalid ", d), func(t *testing.T) {
			if _, err := cachemgr.NewCache[int](m, "bad", cachemgr.WithTTL(d)); !errors.Is(err, cachemgr.ErrInvalidTTL) {
				t.Errorf("NewCache(WithTTL(%v)) error = %v, want ErrInvalidTTL", d, err)
			}
			if d != 0 {
				if _, err := cachemgr.NewCache[int](m, "bad", cachemgr.WithNegativeTTL(d)); !errors.Is(err, cachemgr.ErrInvalidTTL) {
					t.Errorf("NewCache(WithNegativeTTL(%v)) error = %v, want ErrInvalidTTL", d, err)
				}
			}
			c := newCache[int](t, m, "edge")
			if err := c.Set(ctx, "set", 1, cachemgr.TTL(d)); !errors.Is(err, cachemgr.ErrInvalidTTL) || !errors.Is(err, cachemgr.ErrInvalidOption) {
				t.Errorf("Set(TTL(%v)) error = %v, want ErrInvalidTTL and ErrInvalidOption", d, err)
			}
			loads := 0
			if _, err := c.Fetch(ctx, "fetch", func(context.Context) (int, error) { loads++; return 1, nil }, cachemgr.TTL(d)); !errors.Is(err, cachemgr.ErrInvalidTTL) || loads != 0 {
				t.Errorf("Fetch(TTL(%v)) = %v with %d loads, want ErrInvalidTTL before any load", d, err, loads)
			}
			v, err := c.Fetch(ctx, "entry", func(ctx context.Context) (int, error) {
				cachemgr.EntryFrom(ctx).SetTTL(d)
				return 7, nil
			})
			if err != nil || v != 7 {
				t.Errorf("Fetch(EntryFrom.SetTTL(%v)) = %d, %v; want the value", d, v, err)
			}
			for _, k := range []string{"set", "fetch", "entry"} {
				if n := rdb.Exists(ctx, "test:edge:{="+k+"}").Val(); n != 0 {
					t.Errorf("TTL %v: key %q written; want nothing stored", d, k)
				}
			}
			rdb.Del(ctx, "test:edge:{=entry}")
		})
	}
	valid := []struct {
		d        time.Duration
		min, max time.Duration // PTTL right after the write
	}{
		{time.Nanosecond, 0, time.Millisecond},
		{500 * time.Microsecond, 0, time.Millisecond},
		{1500 * time.Microsecond, 0, 2 * time.Millisecond},
		{time.Hour, 59 * time.Minute, time.Hour},
		{cachemgr.MaxTTL, cachemgr.MaxTTL - time.Minute, cachemgr.MaxTTL},
	}
	c := newCache[int](t, m, "ok", cachemgr.WithJitter(0))
	for _, tt := range valid {
		t.Run(fmt.Sprint("valid ", tt.d), func(t *testing.T) {
			if _, err := cachemgr.NewCache[int](m, "ok2", cachemgr.WithTTL(tt.d), cachemgr.WithNegativeTTL(tt.d)); err != nil {
				t.Errorf("NewCache(WithTTL(%v), WithNegativeTTL(%v)) error = %v", tt.d, tt.d, err)
			}
			for _, k := range []string{"set", "entry"} {
				var err error
				if k == "set" {
					err = c.Set(ctx, k, 1, cachemgr.TTL(tt.d))
				} else {
					_, err = c.Fetch(ctx, k, func(ctx context.Context) (int, error) {
						cachemgr.EntryFrom(ctx).SetTTL(tt.d)
						return 1, nil
					})
				}
				if err != nil {
					t.Fatalf("%s with TTL %v error = %v", k, tt.d, err)
				}
				ttl := rdb.PTTL(ctx, "test:ok:{="+k+"}").Val()
				if ttl == -2*time.Nanosecond && tt.max <= 2*time.Millisecond {
					continue // a 1-2 ms TTL may have run out already
				}
				if ttl < tt.min || ttl > tt.max {
					t.Errorf("%s with TTL %v: PTTL = %v, want in [%v, %v] (never -1: no expiry)", k, tt.d, ttl, tt.min, tt.max)
				}
				rdb.Del(ctx, "test:ok:{="+k+"}")
			}
		})
	}
	t.Run("jitter floor", func(t *testing.T) {
		jc := newCache[int](t, m, "jit", cachemgr.WithJitter(0.5), cachemgr.WithTTL(time.Millisecond))
		for i := range 50 {
			key := fmt.Sprint(i)
			if err := jc.Set(ctx, key, i); err != nil {
				t.Fatalf("Set() error = %v", err)
			}
			if ttl := rdb.PTTL(ctx, "test:jit:{="+key+"}").Val(); ttl == -1*time.Nanosecond || ttl > 2*time.Millisecond {
				t.Errorf("PTTL with 1ms TTL and 50%% jitter = %v, want expiring within 2ms", ttl)
			}
		}
	})
}

// TestReliabilityTTLSentinels (scenario 64): PTTL reports -1 (no expiry)
// and -2 (missing). The scripts that read it must not take either for a
// long life: a tag stamp written without expiry (by hand, or by an old
// version) gets a TTL at the next tagged write or invalidation.
func TestReliabilityTTLSentinels(t *testing.T) {
	s := redistest.Start(t)
	ctx := context.Background()
	m, rdb := newManager(t, s)
	c := newCache[int](t, m, "sent")
	for _, tt := range []struct {
		name string
		do   func() error
	}{
		{"tagged Set", func() error { return c.Set(ctx, "k", 1, cachemgr.Tags("t")) }},
		{"tagged Fetch", func() error {
			_, err := c.Fetch(ctx, "f", func(context.Context) (int, error) { return 1, nil }, cachemgr.Tags("t"))
			return err
		}},
		{"InvalidateTags", func() error { return m.InvalidateTags(ctx, "t") }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if err := rdb.Set(ctx, "test:~tag:{tt}", time.Now().Add(-time.Hour).UnixMilli(), 0).Err(); err != nil {
				t.Fatalf("SET stamp without expiry: %v", err)
			}
			if err := tt.do(); err != nil {
				t.Fatalf("error = %v", err)
			}
			if ttl := rdb.PTTL(ctx, "test:~tag:{tt}").Val(); ttl <= 0 {
				t.Errorf("stamp PTTL after %s = %v, want a TTL", tt.name, ttl)
			}
		})
	}
	t.Run("Get of missing and expiring keys", func(t *testing.T) {
		if _, err := c.Get(ctx, "never"); !errors.Is(err, cachemgr.ErrMiss) {
			t.Errorf("Get(missing) = %v, want ErrMiss", err)
		}
		if err := c.Set(ctx, "short", 1, cachemgr.TTL(time.Millisecond)); err != nil {
			t.Fatalf("Set() error = %v", err)
		}
		waitFor(t, "a 1ms entry to expire", func() bool { return rdb.Exists(ctx, "test:sent:{=short}").Val() == 0 })
		if _, err := c.Get(ctx, "short"); !errors.Is(err, cachemgr.ErrMiss) {
			t.Errorf("Get(expired) = %v, want ErrMiss", err)
		}
	})
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

// TestFaultProxy (scenario 4, and the proxy faults of docs/reliability.md):
// mixed traffic through a TCP fault proxy and a faulty dialer, phase after
// phase: replies slower than the op timeout and faster, a blackhole,
// connections cut mid-workload, replies lost after the server executed
// the request, and one-way (half-open) connections. No Fetch fails, no
// value of another key is ever returned (a late or lost reply must never
// answer another command), Fetch latency stays in budget, and the Manager
// recovers by itself. It runs with go-redis honouring context deadlines
// and with go-redis' defaults (retries, and the Manager abandoning calls
// at the op timeout).
func TestFaultProxy(t *testing.T) {
	const op, load = relOp, 5 * time.Millisecond
	tests := []struct {
		name string
		opts func(*redis.Options)
	}{
		{"context deadlines", func(o *redis.Options) { o.MaxRetries = 3 }},
		{"go-redis defaults", func(o *redis.Options) {
			o.ContextTimeoutEnabled, o.MaxRetries = false, 3
			o.ReadTimeout, o.WriteTimeout = 300*time.Millisecond, 300*time.Millisecond
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			relNoLeaks(t)
			s := redistest.Start(t)
			p := faultproxy.New(t, s.Addr())
			d := faultproxy.NewDialer(t)
			rdb := relClient(t, p.Addr(), func(o *redis.Options) {
				o.Dialer = d.DialContext
				tt.opts(o)
			})
			m := relManager(t, rdb, cachemgr.WithOpTimeout(op), cachemgr.WithWriteTimeout(op), cachemgr.WithBreaker(5, 100*time.Millisecond))
			c := newCache[relItem](t, m, "proxy")
			w := relStartWorkload(t, 16, 100, load, c)
			relWaitProgress(t, w.enter("healthy"), 200)

			recover := func(name string) {
				t.Helper()
				ph := w.enter(name)
				waitFor(t, name+": breaker closed, hits and writes", func() bool {
					return m.Stats().Breaker == "closed" && ph.hits.Load() > 10 && ph.sets.Load() > 10
				})
			}
			var checked []*relPhase
			phase := func(name string, n int64, start, stop func()) {
				t.Helper()
				ph := w.enter(name)
				start()
				relWaitProgress(t, ph, n)
				stop()
				checked = append(checked, ph)
				recover("after " + name)
			}
			phase("replies 20ms", 150, func() { p.SetLatency(faultproxy.Downstream, 20*time.Millisecond) },
				func() { p.SetLatency(faultproxy.Downstream, 0) })
			phase("replies 250ms", 150, func() { p.SetLatency(faultproxy.Downstream, 250*time.Millisecond) },
				func() { p.SetLatency(faultproxy.Downstream, 0) })
			phase("requests 250ms", 150, func() { p.SetLatency(faultproxy.Upstream, 250*time.Millisecond) },
				func() { p.SetLatency(faultproxy.Upstream, 0) })
			phase("blackhole", 150, func() { p.Blackhole(true) }, func() { p.Blackhole(false) })
			stopCuts := make(chan struct{})
			var cutter sync.WaitGroup
			phase("cuts", 300, func() {
				cutter.Add(1)
				go func() {
					defer cutter.Done()
					tick := time.NewTicker(15 * time.Millisecond)
					defer tick.Stop()
					for {
						select {
						case <-stopCuts:
							return
						case <-tick.C:
							p.CutAll()
						}
					}
				}()
			}, func() { close(stopCuts); cutter.Wait() })
			phase("lost acks", 300, func() { d.LoseAcks(1 << 20) }, func() { d.LoseAcks(0) })
			phase("half-open upstream", 150, func() { d.HalfOpen(faultproxy.Upstream, true) }, func() { d.HalfOpen(faultproxy.Upstream, false) })
			phase("half-open downstream", 150, func() { d.HalfOpen(faultproxy.Downstream, true) }, func() { d.HalfOpen(faultproxy.Downstream, false) })
			w.check()
			for _, ph := range checked {
				relCheckLatency(t, ph, op, load)
			}
			t.Logf("%d replies lost; %d dials; stats %+v", d.LostAcks(), d.Dials(), m.Stats())
			if d.LostAcks() == 0 {
				t.Errorf("no reply was lost: the lost-ack phase tested nothing")
			}
		})
	}
}

// relLoseReplies is a go-redis hook that lets matching commands reach the
// server and then reports their reply lost, as a connection that died
// right after the server answered would.
type relLoseReplies struct {
	match func(args []any) bool
	left  atomic.Int32
	lost  atomic.Int32
}

func (h *relLoseReplies) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *relLoseReplies) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		// Only a command the server ran (no error reply such as NOSCRIPT)
		// has a reply worth losing.
		if err == nil && h.match(cmd.Args()) && h.left.Add(-1) >= 0 {
			h.lost.Add(1)
			err = fmt.Errorf("reply lost after execution: %w", faultproxy.ErrLostAck)
			cmd.SetErr(err)
		}
		return err
	}
}

func (h *relLoseReplies) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// relIsClaim matches the script that takes a load's lease: EVALSHA (or
// EVAL) with three keys, the third being the lease.
func relIsClaim(args []any) bool {
	if len(args) < 6 || args[0] != "evalsha" && args[0] != "eval" {
		return false
	}
	lease, _ := args[5].(string)
	return strings.HasSuffix(lease, "}:l")
}

// TestReliabilityLeaseAckLost (scenario 17): the script that takes a
// load's lease runs on the server, but its reply is lost (a timeout, a
// reset). The caller cannot know it holds the lease: it loads without
// writing back. The next Fetch of the key must not wait for a lease that
// nobody will release: guarantee 2 bounds Fetch by the op timeout plus the
// loader's time when Redis misbehaves.
func TestReliabilityLeaseAckLost(t *testing.T) {
	relNoLeaks(t)
	const op, load = relOp, 5 * time.Millisecond
	s := redistest.Start(t)
	rdb := relClient(t, s.Addr(), nil)
	hook := &relLoseReplies{match: relIsClaim}
	hook.left.Store(1)
	rdb.AddHook(hook)
	m := relManager(t, rdb, cachemgr.WithOpTimeout(op), cachemgr.WithWriteTimeout(op))
	c := newCache[relItem](t, m, "ghost") // default lease
	ctx := context.Background()
	fetch := func() (time.Duration, error) {
		start := time.Now()
		v, err := c.Fetch(ctx, "k", func(context.Context) (relItem, error) {
			time.Sleep(load) // the loader's own work
			return relItem{Key: "k"}, nil
		})
		if err == nil && v.Key != "k" {
			err = fmt.Errorf("got %+v", v)
		}
		return time.Since(start), err
	}
	if _, err := fetch(); err != nil {
		t.Fatalf("Fetch() with the claim's reply lost = %v, want the loader's value", err)
	}
	if hook.lost.Load() != 1 {
		t.Fatalf("the claim's reply was not lost (hook matched %d)", hook.lost.Load())
	}
	t.Logf("lease key after the lost reply: %q (PTTL %v)", rdb.Get(ctx, "test:ghost:{=k}:l").Val(), rdb.PTTL(ctx, "test:ghost:{=k}:l").Val())
	took, err := fetch()
	wantP99, _ := relBudget(op, load)
	if err != nil || took > wantP99 {
		t.Errorf("next Fetch() = %v after %v, want the value within %v (op timeout + loader + slack), not after the lease expires", err, took, wantP99)
	}
}

// TestReliabilityLeaseRedisDown (scenario 22): the lease holder's Redis
// disappears (blackholed) during its load. The Fetch returns the loaded
// value within loader time plus an op timeout for the write-back, no
// goroutine keeps retrying, and the lease expires by its TTL.
func TestReliabilityLeaseRedisDown(t *testing.T) {
	relNoLeaks(t)
	const op, lease = relOp, 400 * time.Millisecond
	s := redistest.Start(t)
	p := faultproxy.New(t, s.Addr())
	admin := s.Client(t)
	m := relManager(t, relClient(t, p.Addr(), nil), cachemgr.WithOpTimeout(op), cachemgr.WithWriteTimeout(op))
	c := newCache[relItem](t, m, "leasedown", cachemgr.WithLease(lease))
	ctx := context.Background()
	var blackholed time.Time
	blockedFetch(t, c, "k", relItem{Key: "k"}, func() {
		if n := admin.Exists(ctx, "test:leasedown:{=k}:l").Val(); n != 1 {
			t.Errorf("no lease held during the load")
		}
		p.Blackhole(true)
		blackholed = time.Now()
	})
	if took := time.Since(blackholed); took > op*5/4+2*time.Second {
		t.Errorf("Fetch() returned %v after its loader, want within the op timeout of the write-back", took)
	}
	ttl := admin.PTTL(ctx, "test:leasedown:{=k}:l").Val()
	if ttl <= 0 || ttl > lease {
		t.Errorf("lease PTTL after a failed release = %v, want it to expire by its TTL (<= %v)", ttl, lease)
	}
	waitFor(t, "the lease to expire", func() bool { return admin.Exists(ctx, "test:leasedown:{=k}:l").Val() == 0 })
	p.Blackhole(false)
}

// TestReliabilityForeignLeaseKey (scenario 23): the key where a load's
// lease would go holds foreign data (a hash, without expiry). Fetch does
// not delete it, does not loop, and answers within the lease wait bound
// (lease + op timeout); the value it loads is cached.
func TestReliabilityForeignLeaseKey(t *testing.T) {
	const op, lease = relOp, 300 * time.Millisecond
	s := redistest.Start(t)
	m, rdb := newManager(t, s, cachemgr.WithOpTimeout(op), cachemgr.WithWriteTimeout(op))
	c := newCache[relItem](t, m, "foreignlease", cachemgr.WithLease(lease))
	ctx := context.Background()
	rdb.HSet(ctx, "test:foreignlease:{=k}:l", "owner", "someone else")
	start := time.Now()
	v, err := c.Fetch(ctx, "k", func(context.Context) (relItem, error) { return relItem{Key: "k"}, nil })
	took := time.Since(start)
	if err != nil || v.Key != "k" {
		t.Fatalf("Fetch() with foreign data at the lease key = %+v, %v", v, err)
	}
	if took > lease+op+2*time.Second {
		t.Errorf("Fetch() took %v, want at most the lease wait bound %v", took, lease+op)
	}
	if rdb.HGet(ctx, "test:foreignlease:{=k}:l", "owner").Val() != "someone else" {
		t.Errorf("foreign data at the lease key was changed")
	}
	if v, err := c.Get(ctx, "k"); err != nil || v.Key != "k" {
		t.Errorf("Get() after the Fetch = %+v, %v; want the loaded value cached", v, err)
	}
	t.Logf("Fetch with a foreign lease key took %v", took)
}

// TestReliabilityLeaseTTLEdges (scenario 18): the lease TTL never makes a
// lock without expiry: 0 turns the lease off, negative and overflowing
// values are errors, sub-millisecond values round up to 1 ms.
func TestReliabilityLeaseTTLEdges(t *testing.T) {
	m, _ := newManager(t, redistest.StartMini(t))
	for _, d := range []time.Duration{-5 * time.Second, -time.Nanosecond, math.MinInt64, cachemgr.MaxTTL + 1, math.MaxInt64} {
		if _, err := cachemgr.NewCache[int](m, "l", cachemgr.WithLease(d)); !errors.Is(err, cachemgr.ErrInvalidTTL) {
			t.Errorf("NewCache(WithLease(%v)) error = %v, want ErrInvalidTTL", d, err)
		}
	}
	for _, d := range []time.Duration{0, time.Nanosecond, 500 * time.Microsecond, 1500 * time.Microsecond, cachemgr.MaxTTL} {
		if _, err := cachemgr.NewCache[int](m, "l", cachemgr.WithLease(d)); err != nil {
			t.Errorf("NewCache(WithLease(%v)) error = %v", d, err)
		}
	}
	s := redistest.Start(t)
	rm, rdb := newManager(t, s)
	c := newCache[int](t, rm, "sub", cachemgr.WithLease(500*time.Microsecond))
	ctx := context.Background()
	blockedFetch(t, c, "k", 1, func() {
		if ttl := rdb.PTTL(ctx, "test:sub:{=k}:l").Val(); ttl == -1 || ttl > time.Millisecond {
			t.Errorf("lease PTTL with WithLease(500µs) = %v, want at most 1ms, never -1", ttl)
		}
	})
}

// TestReliabilityClusterFaults (scenarios 51, 66, 69): on a 3-master Redis
// Cluster, user keys with hash-tag characters work on every path without
// CROSSSLOT; then one master is killed under load. No Fetch fails, no
// value of another key is returned, and Fetch stays in budget while the
// cluster is degraded.
func TestReliabilityClusterFaults(t *testing.T) {
	relNoLeaks(t)
	// The op timeout is what a loaded machine meets for the set-up calls;
	// the budget while a master is down follows from it.
	const op, load = 300 * time.Millisecond, 2 * time.Millisecond
	cl := redistest.StartCluster(t, 3)
	rdb := cl.Client(t)
	m := relManager(t, rdb, cachemgr.WithOpTimeout(op), cachemgr.WithWriteTimeout(op), cachemgr.WithBreaker(5, 200*time.Millisecond))
	c := newCache[relItem](t, m, "clf", cachemgr.WithVersioned(true))
	ctx := context.Background()
	braces := []string{"{x}", "}{", "{}", "}", "a}b{c", "{=x}", "}:i", "{x}1", "{x}2"}
	for _, k := range braces {
		if err := c.Set(ctx, k, relItem{Key: k}, cachemgr.Tags(k)); err != nil {
			t.Fatalf("Set(%q) error = %v", k, err)
		}
		if v, err := c.Get(ctx, k); err != nil || v.Key != k {
			t.Errorf("Get(%q) = %+v, %v", k, v, err)
		}
		if err := c.Delete(ctx, k); err != nil {
			t.Errorf("Delete(%q) error = %v", k, err)
		}
		v, err := c.Fetch(ctx, k, func(context.Context) (relItem, error) { return relItem{Key: k}, nil }, cachemgr.Tags(k))
		if err != nil || v.Key != k {
			t.Errorf("Fetch(%q) = %+v, %v", k, v, err)
		}
		if err := m.InvalidateTags(ctx, k); err != nil {
			t.Errorf("InvalidateTags(%q) error = %v", k, err)
		}
	}
	if n, err := c.InvalidatePrefix(ctx, "{"); err != nil {
		t.Errorf("InvalidatePrefix({) = %d, %v", n, err)
	}
	if st := m.Stats(); st.RedisErrors != 0 {
		t.Fatalf("Stats().RedisErrors = %d with brace keys on a cluster, want 0 (no CROSSSLOT)", st.RedisErrors)
	}

	w := relStartWorkload(t, 16, 200, load, c)
	relWaitProgress(t, w.enter("healthy"), 200)
	degraded := w.enter("master killed")
	cl.Nodes()[1].Kill()
	relWaitProgress(t, degraded, 600)
	w.check()
	relCheckLatency(t, degraded, op, load)
	t.Logf("stats with one master of three down: %+v", m.Stats())
	// go-redis redials a dead node from a goroutine of its own, once a
	// second, even after the client is closed; it stops once a dial works.
	cl.Nodes()[1].Restart()
	waitFor(t, "go-redis to stop redialling the killed node", func() bool {
		buf := make([]byte, 1<<20)
		return !strings.Contains(string(buf[:runtime.Stack(buf, true)]), "(*ConnPool).tryDial")
	})
}

// TestSoak runs mixed Get/Fetch/Set/Delete/InvalidateTags/Bump traffic
// from 64 goroutines over two Managers for CACHEMGR_SOAK (for example
// CACHEMGR_SOAK=10m), restarting the server twice, and checks every read
// against a model of the database: no value of another key, no value older
// than the last invalidation that returned before the read began, no
// failed Fetch, and flat memory and goroutine counts.
//
//	CACHEMGR_SOAK=10m go test -race -run TestSoak -timeout 30m -v .
func TestSoak(t *testing.T) {
	env := os.Getenv("CACHEMGR_SOAK")
	if env == "" {
		t.Skip("set CACHEMGR_SOAK=10m to run the soak test")
	}
	dur, err := time.ParseDuration(env)
	if err != nil || dur <= 0 {
		t.Fatalf("CACHEMGR_SOAK=%q: want a duration such as 10m", env)
	}
	relNoLeaks(t)
	const (
		nkeys      = 256
		groups     = 16
		goroutines = 64
	)
	s := redistest.Start(t)
	var caches [2]*cachemgr.Cache[relItem]
	var managers [2]*cachemgr.Manager
	for i := range managers {
		managers[i] = relManager(t, relClient(t, s.Addr(), nil), cachemgr.WithOpTimeout(relOp))
		caches[i] = newCache[relItem](t, managers[i], "soak", cachemgr.WithVersioned(true), cachemgr.WithTTL(30*time.Second))
	}
	var model struct {
		db     [nkeys]atomic.Int64           // the source of truth
		floors [nkeys]atomic.Int64           // what every read that starts now must reach
		why    [nkeys]atomic.Pointer[string] // the write that set the floor
		locks  [nkeys]sync.Mutex             // one writer per key at a time
	}
	begin := time.Now()
	raise := func(k int, v int64, op string) {
		for {
			cur := model.floors[k].Load()
			if v <= cur {
				return
			}
			if model.floors[k].CompareAndSwap(cur, v) {
				why := fmt.Sprintf("%s of version %d at %v", op, v, time.Since(begin).Round(time.Millisecond))
				model.why[k].Store(&why)
				return
			}
		}
	}
	tags := func(k int) []string { return []string{fmt.Sprint("row:", k), fmt.Sprint("group:", k%groups)} }
	var counts struct {
		gets, hits, fetches, sets, deletes, invalidations, bumps atomic.Int64
		writeErrs, getErrs                                       atomic.Int64
		fetchErrs, wrong, stale                                  atomic.Int64
	}
	var failMu sync.Mutex
	var failures []string
	fail := func(format string, args ...any) {
		failMu.Lock()
		defer failMu.Unlock()
		if len(failures) < 20 {
			failures = append(failures, fmt.Sprintf(format, args...))
		}
	}
	check := func(op string, k int, floor int64, v relItem) {
		key := strconv.Itoa(k)
		switch {
		case v.Key != key:
			counts.wrong.Add(1)
			fail("%s(%s) returned the value of %q", op, key, v.Key)
		case v.Version < floor:
			counts.stale.Add(1)
			why := "?"
			if p := model.why[k].Load(); p != nil {
				why = *p
			}
			fail("%v: %s(%s) returned version %d, older than version %d (floor now: %s)", time.Since(begin).Round(time.Millisecond), op, key, v.Version, floor, why)
		}
	}
	ctx := context.Background()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rnd := rand.New(rand.NewPCG(uint64(g), 42))
			for {
				select {
				case <-stop:
					return
				default:
				}
				i := rnd.IntN(2)
				c, m := caches[i], managers[i]
				k := rnd.IntN(nkeys)
				key := strconv.Itoa(k)
				// Per mille: reads dominate; invalidations are frequent
				// enough to race loads, rare enough to leave hits.
				switch op := rnd.IntN(1000); {
				case op < 450:
					floor := model.floors[k].Load()
					v, err := c.Fetch(ctx, key, func(ctx context.Context) (relItem, error) {
						cachemgr.EntryFrom(ctx).AddTags(tags(k)...)
						v := model.db[k].Load()
						time.Sleep(time.Duration(rnd.IntN(2000)) * time.Microsecond) // the database's own latency
						return relItem{Key: key, Version: v}, nil
					})
					counts.fetches.Add(1)
					if err != nil {
						counts.fetchErrs.Add(1)
						fail("%v: Fetch(%s) error = %v", time.Since(begin).Round(time.Millisecond), key, err)
						continue
					}
					check("Fetch", k, floor, v)
				case op < 750:
					floor := model.floors[k].Load()
					v, err := c.Get(ctx, key)
					counts.gets.Add(1)
					if err != nil {
						counts.getErrs.Add(1)
						continue
					}
					counts.hits.Add(1)
					check("Get", k, floor, v)
				case op < 850:
					model.locks[k].Lock()
					v := model.db[k].Add(1)
					if err := c.Set(ctx, key, relItem{Key: key, Version: v}, cachemgr.Tags(tags(k)...)); err != nil {
						counts.writeErrs.Add(1)
					} else {
						raise(k, v, "Set")
					}
					model.locks[k].Unlock()
					counts.sets.Add(1)
				case op < 920:
					model.locks[k].Lock()
					v := model.db[k].Add(1)
					if err := c.Delete(ctx, key); err != nil {
						counts.writeErrs.Add(1)
					} else {
						raise(k, v, "Delete")
					}
					model.locks[k].Unlock()
					counts.deletes.Add(1)
				case op < 970:
					model.locks[k].Lock()
					v := model.db[k].Add(1)
					if err := m.InvalidateTags(ctx, fmt.Sprint("row:", k)); err != nil {
						counts.writeErrs.Add(1)
					} else {
						raise(k, v, "InvalidateTags(row)")
					}
					model.locks[k].Unlock()
					counts.invalidations.Add(1)
				case op < 999:
					// A group: every member changes in the database, then
					// the group's tag is invalidated. Locks in key order.
					grp := k % groups
					var members []int
					for j := grp; j < nkeys; j += groups {
						members = append(members, j)
					}
					vs := make([]int64, len(members))
					for n, j := range members {
						model.locks[j].Lock()
						vs[n] = model.db[j].Add(1)
					}
					err := m.InvalidateTags(ctx, fmt.Sprint("group:", grp))
					for n, j := range members {
						if err == nil {
							raise(j, vs[n], "InvalidateTags(group)")
						}
						model.locks[j].Unlock()
					}
					if err != nil {
						counts.writeErrs.Add(1)
					}
					counts.invalidations.Add(1)
				default:
					var snap [nkeys]int64
					for j := range snap {
						snap[j] = model.db[j].Load()
					}
					if err := c.Bump(ctx); err != nil {
						counts.writeErrs.Add(1)
					} else {
						for j, v := range snap {
							raise(j, v, "Bump")
						}
					}
					counts.bumps.Add(1)
				}
			}
		}()
	}

	type sample struct {
		at         time.Duration
		heap       uint64
		goroutines int
	}
	var samples []sample
	every := max(dur/30, time.Second)
	restarts := []time.Duration{dur / 3, 2 * dur / 3}
	tick := time.NewTicker(every)
	for elapsed := time.Duration(0); elapsed < dur; elapsed = time.Since(begin) {
		<-tick.C
		if len(restarts) > 0 && time.Since(begin) >= restarts[0] {
			restarts = restarts[1:]
			s.Restart()
			t.Logf("%v: server restarted", time.Since(begin).Round(time.Second))
		}
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		samples = append(samples, sample{time.Since(begin).Round(time.Second), ms.HeapInuse, runtime.NumGoroutine()})
	}
	tick.Stop()
	close(stop)
	wg.Wait()

	total := counts.gets.Load() + counts.fetches.Load() + counts.sets.Load() + counts.deletes.Load() + counts.invalidations.Load() + counts.bumps.Load()
	t.Logf("%v: %d operations (%.0f/s): %d Fetch, %d Get (%d hits), %d Set, %d Delete, %d InvalidateTags, %d Bump; %d write errors, %d Get errors",
		dur, total, float64(total)/dur.Seconds(), counts.fetches.Load(), counts.gets.Load(), counts.hits.Load(), counts.sets.Load(),
		counts.deletes.Load(), counts.invalidations.Load(), counts.bumps.Load(), counts.writeErrs.Load(), counts.getErrs.Load())
	for i, m := range managers {
		t.Logf("Manager %d: %+v", i, m.Stats())
	}
	var heaps []string
	for _, sm := range samples {
		heaps = append(heaps, fmt.Sprintf("%v:%dMiB/%dg", sm.at, sm.heap>>20, sm.goroutines))
	}
	t.Logf("heap in use / goroutines after GC: %s", strings.Join(heaps, " "))
	if n := counts.fetchErrs.Load() + counts.wrong.Load() + counts.stale.Load(); n > 0 {
		t.Errorf("%d failed Fetches, %d values of another key, %d stale reads; first: %q",
			counts.fetchErrs.Load(), counts.wrong.Load(), counts.stale.Load(), failures)
	}
	if len(samples) >= 8 {
		// Flat: the median of the last quarter against that of the second
		// (the first may still be warming up). Medians, because a restart
		// briefly adds reconnecting goroutines.
		median := func(ss []sample) sample {
			hs := make([]uint64, len(ss))
			gs := make([]int, len(ss))
			for i, sm := range ss {
				hs[i], gs[i] = sm.heap, sm.goroutines
			}
			slices.Sort(hs)
			slices.Sort(gs)
			return sample{at: ss[len(ss)/2].at, heap: hs[len(hs)/2], goroutines: gs[len(gs)/2]}
		}
		q := len(samples) / 4
		early, late := median(samples[q:2*q]), median(samples[len(samples)-q:])
		if late.heap > early.heap*3/2+8<<20 {
			t.Errorf("heap in use grew from %d MiB (median around %v) to %d MiB (around %v)", early.heap>>20, early.at, late.heap>>20, late.at)
		}
		if late.goroutines > early.goroutines+4 {
			t.Errorf("goroutines grew from %d (median around %v) to %d (around %v)", early.goroutines, early.at, late.goroutines, late.at)
		}
	}
}

// relFakeReplies is a go-redis hook that replaces the reply of the first
// commands matching each rule with an error, after the command ran.
type relFakeReplies struct {
	mu    sync.Mutex
	rules []relFakeRule
}

type relFakeRule struct {
	args  []string // leading arguments to match
	err   error
	times int
}

func (h *relFakeReplies) fake(cmd redis.Cmder) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	args := cmd.Args()
	for i := range h.rules {
		r := &h.rules[i]
		if r.times == 0 || len(args) < len(r.args) {
			continue
		}
		match := true
		for j, a := range r.args {
			if fmt.Sprint(args[j]) != a {
				match = false
				break
			}
		}
		if match {
			r.times--
			cmd.SetErr(r.err)
			return r.err
		}
	}
	return nil
}

func (h *relFakeReplies) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *relFakeReplies) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if ferr := h.fake(cmd); ferr != nil {
			return ferr
		}
		return err
	}
}

func (h *relFakeReplies) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		for _, cmd := range cmds {
			if ferr := h.fake(cmd); ferr != nil && err == nil {
				err = ferr
			}
		}
		return err
	}
}

// TestReliabilityFlightRedisFails (guarantee 2, found by TestSoak): a Fetch
// misses, and by the time its load claims the key another process has
// written a tagged value; reading that value's tag stamps then fails
// (a connection reset). Fetch must fall back to the loader, as it does
// everywhere else Redis fails, not return ErrUnavailable.
func TestReliabilityFlightRedisFails(t *testing.T) {
	s := redistest.Start(t)
	ctx := context.Background()
	rdb := relClient(t, s.Addr(), nil)
	m := relManager(t, rdb)
	c := newCache[relItem](t, m, "flight")
	if err := c.Set(ctx, "k", relItem{Key: "k", Version: 1}, cachemgr.Tags("t")); err != nil {
		t.Fatalf("Set() error = %v", err)
	}
	rdb.AddHook(&relFakeReplies{rules: []relFakeRule{
		// The lookup runs just before the other process's write lands.
		{args: []string{"get", "test:flight:{=k}"}, err: redis.Nil, times: 1},
		// The claim finds the value; reading its tag's stamp fails.
		{args: []string{"get", "test:~tag:{tt}"}, err: io.EOF, times: 1},
	}})
	v, err := c.Fetch(ctx, "k", func(context.Context) (relItem, error) { return relItem{Key: "k", Version: 2}, nil })
	if err != nil || v.Key != "k" {
		t.Errorf("Fetch() with Redis failing inside the flight = %+v, %v; want a value (fail-open)", v, err)
	}
}

// TestReliabilityLateLeaseHolder (scenario 20): A's load outlives its
// lease; B takes the lease over, loads and writes a newer value; then A's
// load ends. A's write-back must not replace B's value.
func TestReliabilityLateLeaseHolder(t *testing.T) {
	s := redistest.Start(t)
	ctx := context.Background()
	a, rdb := newManager(t, s, cachemgr.WithOpTimeout(time.Second))
	b, _ := newManager(t, s, cachemgr.WithOpTimeout(time.Second))
	ca := newCache[string](t, a, "late", cachemgr.WithLease(100*time.Millisecond))
	cb := newCache[string](t, b, "late", cachemgr.WithLease(100*time.Millisecond))
	releaseA := make(chan struct{})
	doneA := make(chan string, 1)
	go func() {
		v, _ := ca.Fetch(ctx, "k", func(context.Context) (string, error) { <-releaseA; return "v1 from a", nil })
		doneA <- v
	}()
	waitFor(t, "a's lease", func() bool { return rdb.Exists(ctx, "test:late:{=k}:l").Val() == 1 })
	if v, err := cb.Fetch(ctx, "k", func(context.Context) (string, error) { return "v2 from b", nil }); err != nil || v != "v2 from b" {
		t.Fatalf("b: Fetch() = %q, %v; want its own load once a's lease expired", v, err)
	}
	close(releaseA)
	if v := <-doneA; v != "v1 from a" {
		t.Errorf("a: Fetch() = %q, want its own (older) load", v)
	}
	for _, c := range []*cachemgr.Cache[string]{ca, cb} {
		if v, err := c.Get(ctx, "k"); err != nil || v != "v2 from b" {
			t.Errorf("Get() after a's late write-back = %q, %v; want b's newer value", v, err)
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
	m := relManager(t, rdb, cachemgr.WithBreaker(0, time.Second))
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
