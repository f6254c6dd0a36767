package cachemgr_test

// Helpers shared by the test files of this package: the test Manager and
// its options, goroutine-leak checks, and the fault tests' clients,
// self-checking values, workloads and latency budgets.
//
// The fault tests (fault_*_test.go, soak_test.go) put the scenarios of
// docs/reliability.md to the test; that page maps every scenario to its
// test. Their names start with TestReliability, TestFault or TestSoak, so
// `go test -race -run 'Reliab|Fault|Soak' .` runs exactly them; TestSoak
// runs only when CACHEMGR_SOAK is set.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cachemgr/cachemgr"
	"github.com/cachemgr/cachemgr/internal/redistest"
	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// The fault tests make go-redis log every failed dial; keep the
	// output readable. Tests assert on errors and Stats instead.
	redis.SetLogger(discardPrintf{})
	goleak.VerifyTestMain(m)
}

type discardPrintf struct{}

func (discardPrintf) Printf(context.Context, string, ...any) {}

// quiet is a logger for tests that provoke errors on purpose.
var quiet = slog.New(slog.DiscardHandler)

// testOpTimeout is the op timeout of test Managers. Tests that are not
// about timeouts must not trip one on a loaded machine, where a round trip
// to a local Redis can take hundreds of milliseconds; tests about timeouts
// set their own with WithOpTimeout, which wins.
const testOpTimeout = 3 * time.Second

// testOptions returns the options every test Manager starts from, then
// opts: the test prefix, a quiet logger and testOpTimeout for reads and
// writes.
func testOptions(opts ...cachemgr.Option) []cachemgr.Option {
	return append([]cachemgr.Option{cachemgr.WithPrefix("test"), cachemgr.WithLogger(quiet), cachemgr.WithOpTimeout(testOpTimeout), cachemgr.WithWriteTimeout(testOpTimeout)}, opts...)
}

// newManager returns a Manager over a fresh client of s, closed when the
// test ends, with the client for direct inspection.
func newManager(t *testing.T, s *redistest.Server, opts ...cachemgr.Option) (*cachemgr.Manager, *redis.Client) {
	t.Helper()
	rdb := s.Client(t)
	return managerOn(t, rdb, opts...), rdb
}

// newCache returns a Cache[T] called name on m.
func newCache[T any](t *testing.T, m *cachemgr.Manager, name string, opts ...cachemgr.CacheOption) *cachemgr.Cache[T] {
	t.Helper()
	c, err := cachemgr.NewCache[T](m, name, opts...)
	if err != nil {
		t.Fatalf("NewCache(%q) error = %v", name, err)
	}
	return c
}

// waitFor is redistest.WaitFor.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	redistest.WaitFor(t, what, cond)
}

// relItem is a self-describing value: it names the key
// it was produced for and the database version it was read at, so one
// cheap check catches another key's data whatever the cause.
type relItem struct {
	Key     string `json:"key"`
	Version int64  `json:"version"`
}

// noLeaks fails the test if goroutines started during it are still
// running once its cleanups (Manager, clients, servers, proxies) are done.
// Call it first, so its check runs last.
func noLeaks(t *testing.T) {
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

// managerOn returns a Manager over rdb, made from testOptions then opts,
// closed when t ends.
func managerOn(t *testing.T, rdb redis.UniversalClient, opts ...cachemgr.Option) *cachemgr.Manager {
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

// relAllocated returns the bytes allocated by the process while fn ran.
func relAllocated(fn func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	fn()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// relFakeReplies is a go-redis hook that replaces the reply of the first
// commands matching each rule with an error, after the command ran.
type relFakeReplies struct {
	mu    sync.Mutex
	rules []relFakeRule
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

type relFakeRule struct {
	args  []string // leading arguments to match
	err   error
	times int
}

// pausedPair is the scenario of invalidations made while Redis is paused
// longer than the write timeout: processes a (the writer) and b share the
// cache "paused", in which x (tag t-x) and y (tag t-y) hold "old".
type pausedPair struct {
	s      *redistest.Server
	a      *cachemgr.Manager
	ca, cb *cachemgr.Cache[string]
}

// newPausedPair sets the pair up, with Redis not yet paused.
func newPausedPair(t *testing.T) *pausedPair {
	ctx := context.Background()
	s := redistest.Start(t)
	// A short write timeout, so the calls give up while the server is
	// paused; the pause lasts until after they have returned.
	a, _ := newManager(t, s, cachemgr.WithOpTimeout(500*time.Millisecond), cachemgr.WithWriteTimeout(time.Second))
	b, _ := newManager(t, s)
	p := &pausedPair{s: s, a: a,
		ca: newCache[string](t, a, "paused", cachemgr.WithTTL(time.Hour)),
		cb: newCache[string](t, b, "paused", cachemgr.WithTTL(time.Hour))}
	for _, k := range []string{"x", "y"} {
		if err := p.ca.Set(ctx, k, "old", cachemgr.Tags("t-"+k)); err != nil {
			t.Fatalf("Set(%q) error = %v", k, err)
		}
	}
	return p
}

// checkQueued checks, while Redis is still paused after the invalidations
// of x and of tag t-y, that both are queued and that the writer serves
// neither: it loads them again.
func (p *pausedPair) checkQueued(t *testing.T) {
	t.Helper()
	if st := p.a.Stats(); st.InvalidationsPending != 2 {
		t.Errorf("Stats().InvalidationsPending = %d, want 2 (the key and the tag)", st.InvalidationsPending)
	}
	for _, k := range []string{"x", "y"} {
		v, err := p.ca.Fetch(context.Background(), k, func(context.Context) (string, error) { return "new", nil })
		if err != nil || v != "new" {
			t.Errorf("Fetch(%q) in the writer process while its invalidation is queued = %q, %v; want new (loaded)", k, v, err)
		}
	}
}

// checkLanded checks, once Redis is back, that the queued invalidations
// land without another call: process b no longer reads the old values.
func (p *pausedPair) checkLanded(t *testing.T) {
	t.Helper()
	waitFor(t, "the queued invalidations to land", func() bool { return p.a.Stats().InvalidationsPending == 0 })
	for _, k := range []string{"x", "y"} {
		if v, err := p.cb.Get(context.Background(), k); v == "old" || (err != nil && !errors.Is(err, cachemgr.ErrMiss)) {
			t.Errorf("another process's Get(%q) after the queue drained = %q, %v; want a miss or new", k, v, err)
		}
	}
	if st := p.a.Stats(); st.InvalidationsRecovered != 2 {
		t.Errorf("Stats().InvalidationsRecovered = %d, want 2", st.InvalidationsRecovered)
	}
}
