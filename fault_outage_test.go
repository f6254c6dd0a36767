package cachemgr_test

// Fault tests: Redis down, frozen, paused, flapping, unreachable, slow or
// cutting connections (docs/reliability.md, group A).

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cachemgr/cachemgr"
	"github.com/cachemgr/cachemgr/internal/faultproxy"
	"github.com/cachemgr/cachemgr/internal/redistest"
	"github.com/redis/go-redis/v9"
)

// TestReliabilityServerKilledUnderLoad (scenarios 1, 6, 59): 64 goroutines
// of mixed Fetch/Get/Set; the server is SIGKILLed mid-run and restarted
// empty. No Fetch fails, no value of another key is returned, Fetch stays
// within its budget, the breaker opens and closes again by itself, the
// pool reconnects, and nothing is left running after Close.
func TestReliabilityServerKilledUnderLoad(t *testing.T) {
	noLeaks(t)
	const op, load = relOp, 5 * time.Millisecond
	s := redistest.Start(t)
	rdb := relClient(t, s.Addr(), nil)
	m := managerOn(t, rdb, cachemgr.WithOpTimeout(op), cachemgr.WithWriteTimeout(op), cachemgr.WithBreaker(3, 200*time.Millisecond))
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
	noLeaks(t)
	const op, load = relOp, 10 * time.Millisecond
	s := redistest.Start(t)
	rdb := relClient(t, s.Addr(), nil)
	m := managerOn(t, rdb, cachemgr.WithOpTimeout(op), cachemgr.WithWriteTimeout(op), cachemgr.WithBreaker(5, 200*time.Millisecond))
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
			noLeaks(t)
			s := redistest.Start(t)
			rdb := relClient(t, s.Addr(), nil)
			m := managerOn(t, rdb, cachemgr.WithOpTimeout(op), cachemgr.WithWriteTimeout(op), cachemgr.WithBreaker(5, 200*time.Millisecond))
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
			noLeaks(t)
			d := faultproxy.NewDialer(t)
			rdb := relClient(t, tt.target(t), func(o *redis.Options) { o.Dialer = d.DialContext })
			start := time.Now()
			m := managerOn(t, rdb, cachemgr.WithOpTimeout(op), cachemgr.WithWriteTimeout(op), cachemgr.WithBreaker(3, 200*time.Millisecond))
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
	noLeaks(t)
	const op, load = 50 * time.Millisecond, 2 * time.Millisecond
	s := redistest.Start(t)
	d := faultproxy.NewDialer(t)
	rdb := relClient(t, s.Addr(), func(o *redis.Options) { o.Dialer = d.DialContext })
	// Writes are retried within their own timeout, each retry a dial while
	// the server is down; with the write timeout at the op timeout, the
	// dials counted here are those the breaker bounds.
	m := managerOn(t, rdb, cachemgr.WithOpTimeout(op), cachemgr.WithWriteTimeout(op), cachemgr.WithBreaker(3, 100*time.Millisecond))
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
	noLeaks(t)
	const op, load = relOp, 5 * time.Millisecond
	s := redistest.Start(t)
	rdb := relClient(t, s.Addr(), func(o *redis.Options) { o.PoolSize = 2 })
	m := managerOn(t, rdb, cachemgr.WithOpTimeout(op), cachemgr.WithWriteTimeout(op))
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

// TestReliabilityWritesDuringOutage (scenario 12): process A loses Redis
// while process B keeps it. A's Set and Delete report ErrUnavailable
// (never a false success); B keeps serving the value A failed to replace,
// as A was told; once A is back, its writes are seen by B.
func TestReliabilityWritesDuringOutage(t *testing.T) {
	noLeaks(t)
	s := redistest.Start(t)
	p := faultproxy.New(t, s.Addr())
	a := managerOn(t, relClient(t, p.Addr(), nil), cachemgr.WithOpTimeout(50*time.Millisecond), cachemgr.WithBreaker(3, 100*time.Millisecond))
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
			noLeaks(t)
			s := redistest.Start(t)
			p := faultproxy.New(t, s.Addr())
			d := faultproxy.NewDialer(t)
			rdb := relClient(t, p.Addr(), func(o *redis.Options) {
				o.Dialer = d.DialContext
				tt.opts(o)
			})
			m := managerOn(t, rdb, cachemgr.WithOpTimeout(op), cachemgr.WithWriteTimeout(op), cachemgr.WithBreaker(5, 100*time.Millisecond))
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

// TestReliabilityFlightRedisFails (guarantee 2, found by TestSoak): a Fetch
// misses, and by the time its load claims the key another process has
// written a tagged value; reading that value's tag stamps then fails
// (a connection reset). Fetch must fall back to the loader, as it does
// everywhere else Redis fails, not return ErrUnavailable.
func TestReliabilityFlightRedisFails(t *testing.T) {
	s := redistest.Start(t)
	ctx := context.Background()
	rdb := relClient(t, s.Addr(), nil)
	m := managerOn(t, rdb)
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

// freezeAtClaim is a hook that blackholes p when the claim of dataKey goes
// out (the lookup before it has been answered), and counts the claims sent.
type freezeAtClaim struct {
	p       *faultproxy.Proxy
	dataKey string
	once    sync.Once
	sha     any
	claims  atomic.Int32
}

func (h *freezeAtClaim) see(cmd redis.Cmder) {
	a := cmd.Args()
	if name, _ := a[0].(string); (name == "evalsha" || name == "eval") && len(a) > 3 && a[3] == h.dataKey {
		// The first script of the key is the claim; a lost claim's
		// write-back, another script, may follow it.
		h.once.Do(func() { h.sha = a[1] })
		if a[1] == h.sha {
			h.claims.Add(1)
		}
		h.p.Blackhole(true)
	}
}

func (h *freezeAtClaim) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *freezeAtClaim) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.see(cmd)
		return next(ctx, cmd)
	}
}

func (h *freezeAtClaim) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, cmd := range cmds {
			h.see(cmd)
		}
		return next(ctx, cmds)
	}
}

// TestReliabilityFrozenAtClaim: Redis answers a Fetch's lookup and stops
// answering as its claim goes out. A claim that timed out on a breaker
// that is closed is sent again once (a slow Redis is the likelier cause,
// and a second load costs more than an op timeout), and no more: Fetch
// answers from the loader within two op timeouts of the lookup, plus the
// loader's time.
func TestReliabilityFrozenAtClaim(t *testing.T) {
	s := redistest.Start(t)
	p := faultproxy.New(t, s.Addr())
	rdb := relClient(t, p.Addr(), nil)
	m := managerOn(t, rdb, cachemgr.WithOpTimeout(relOp), cachemgr.WithWriteTimeout(relOp))
	c := newCache[string](t, m, "frozenclaim")
	h := &freezeAtClaim{p: p, dataKey: "test:frozenclaim:{=k}"}
	rdb.AddHook(h)
	v, err := c.Fetch(context.Background(), "k", func(context.Context) (string, error) { return "loaded", nil })
	if err != nil || v != "loaded" {
		t.Fatalf("Fetch() with Redis frozen at the claim = %q, %v; want the loaded value (fail-open)", v, err)
	}
	if n := h.claims.Load(); n != 2 {
		t.Errorf("claims sent = %d, want 2: a claim that timed out is sent again once", n)
	}
	p.Blackhole(false)
}
