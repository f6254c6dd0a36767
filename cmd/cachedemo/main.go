// Command cachedemo shows what a cachemgr.Cache does for a slow repository.
//
// A fake product repository answers every load after 20ms, and one product
// id in a hundred does not exist. Concurrent workers ask for products with a
// Zipf-skewed key choice, as real traffic does: a few products are hot, most
// are rarely asked for.
//
// The demo runs three phases of the same number of requests (-requests):
//
//  1. without cache: the workers call the repository directly;
//  2. warm-up: the same workload through Cache.Fetch, starting from an
//     empty cache (on a real server, from what earlier runs left), reported
//     on its own line (-warmup requests; 0 skips it);
//  3. with cache: the same workload again, on the cache the warm-up filled.
//
// Phases 1 and 3 draw the same key sequence, so their numbers compare one to
// one. The report gives, for each phase, the p50, p90 and p99 latency, the
// throughput, the hit ratio and how often the repository was called, then
// compares p50 and p99 with and without the cache and says in a sentence
// what the numbers mean: the median falls to a Redis round trip, while the
// p99 is set by whatever share of requests still miss (a miss costs the
// repository's 20ms plus Redis round trips, so it cannot beat no cache).
//
// It runs on an embedded miniredis by default, so nothing needs installing:
//
//	go run ./cmd/cachedemo
//
// or against a real Redis server:
//
//	go run ./cmd/cachedemo -redis redis://127.0.0.1:6379
//
// Keys are written under the "cachedemo" prefix; on a real server they
// outlive the run for -ttl, so a second run's warm-up starts warm. Ctrl-C
// ends the run early and still prints the report.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cachemgr/cachemgr"
	"github.com/cachemgr/cachemgr/internal/demoredis"
	"github.com/redis/go-redis/v9"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// After the first signal, restore the default handling so that a second
	// Ctrl-C stops the demo at once instead of waiting for the report.
	context.AfterFunc(ctx, stop)
	err := run(ctx, os.Args[1:], os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "cachedemo:", err)
		os.Exit(1)
	}
}

// config is the parsed command line.
type config struct {
	redis    *redis.Options // nil: embedded miniredis
	workers  int
	requests int
	warmup   int
	keys     int
	zipf     float64
	ttl      time.Duration
	latency  time.Duration
	seed     uint64
}

// parseFlags parses args. -h prints the usage to stdout and returns
// flag.ErrHelp.
func parseFlags(args []string, stdout io.Writer) (config, error) {
	fs := flag.NewFlagSet("cachedemo", flag.ContinueOnError)
	// Errors are returned, not printed: main prints them once, on stderr.
	fs.SetOutput(io.Discard)
	var cfg config
	url := fs.String("redis", "", "Redis URL, such as redis://127.0.0.1:6379 (default: embedded miniredis)")
	fs.IntVar(&cfg.workers, "workers", 32, "concurrent workers")
	fs.IntVar(&cfg.requests, "requests", 5000, "requests in each measured phase (without cache, with cache)")
	fs.IntVar(&cfg.warmup, "warmup", 5000, "requests of the warm-up phase, which starts from an empty cache on the embedded miniredis (0 skips it)")
	fs.IntVar(&cfg.keys, "keys", 10000, "number of distinct product ids")
	fs.Float64Var(&cfg.zipf, "zipf", 1.1, "Zipf skew s of the key choice (> 1; higher is more skewed)")
	fs.DurationVar(&cfg.ttl, "ttl", 30*time.Second, "TTL of cached products")
	fs.DurationVar(&cfg.latency, "latency", 20*time.Millisecond, "time the fake repository takes per call")
	fs.Uint64Var(&cfg.seed, "seed", 1, "seed of the workers' random key choice")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(stdout, "Usage: cachedemo [flags]\n\nFlags:\n")
			fs.SetOutput(stdout)
			fs.PrintDefaults()
		}
		return config{}, err
	}
	switch {
	case fs.NArg() > 0:
		return config{}, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	case cfg.workers < 1:
		return config{}, fmt.Errorf("-workers %d: want at least 1", cfg.workers)
	case cfg.requests < 1:
		return config{}, fmt.Errorf("-requests %d: want at least 1", cfg.requests)
	case cfg.warmup < 0:
		return config{}, fmt.Errorf("-warmup %d: want >= 0", cfg.warmup)
	case cfg.keys < 1:
		return config{}, fmt.Errorf("-keys %d: want at least 1", cfg.keys)
	case !(cfg.zipf > 1) || math.IsInf(cfg.zipf, 0):
		// rand.NewZipf needs s > 1.
		return config{}, fmt.Errorf("-zipf %v: want > 1", cfg.zipf)
	case cfg.ttl <= 0 || cfg.ttl > cachemgr.MaxTTL:
		return config{}, fmt.Errorf("-ttl %v: want > 0 and <= %v", cfg.ttl, cachemgr.MaxTTL)
	case cfg.latency < 0 || cfg.latency > time.Minute:
		return config{}, fmt.Errorf("-latency %v: want 0 to 1m", cfg.latency)
	}
	if *url != "" {
		opts, err := redis.ParseURL(*url)
		if err != nil {
			return config{}, fmt.Errorf("-redis: %w", err)
		}
		cfg.redis = opts
	}
	return cfg, nil
}

// Key streams: the measured phases draw the same sequence, the warm-up
// another one, so that the cached phase is not a replay of the warm-up.
const (
	measuredStream = 1
	warmupStream   = 2
)

// run is the demo; main only adds signal handling and the exit code.
func run(ctx context.Context, args []string, stdout io.Writer) error {
	cfg, err := parseFlags(args, stdout)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}

	rdb, where, closeRedis, err := demoredis.Connect(ctx, cfg.redis, max(2*cfg.workers, 10))
	if err != nil {
		return err
	}
	defer closeRedis()

	m, err := cachemgr.New(rdb, cachemgr.WithPrefix("cachedemo"))
	if err != nil {
		return err
	}
	defer m.Close()
	products, err := cachemgr.NewCache[product](m, "product", cachemgr.WithTTL(cfg.ttl))
	if err != nil {
		return err
	}
	repo := &repository{latency: cfg.latency}

	fmt.Fprintf(stdout, "cachedemo: %d workers, %d keys, zipf s=%.2f, ttl %v, repository %v per call, %s\n",
		cfg.workers, cfg.keys, cfg.zipf, cfg.ttl, cfg.latency, where)

	direct := func(ctx context.Context, id int64) (bool, error) {
		_, err := repo.product(ctx, id)
		return true, err
	}
	fetch := func(ctx context.Context, id int64) (bool, error) {
		loaded := false
		_, err := products.Fetch(ctx, strconv.FormatInt(id, 10), func(ctx context.Context) (product, error) {
			loaded = true
			return repo.product(ctx, id)
		})
		return loaded, err
	}
	r := reportData{cfg: cfg, embedded: cfg.redis == nil}
	// On a real server the keys of an earlier run may still be there.
	start := "an empty cache"
	if !r.embedded {
		start = "what the server holds (nothing on a first run)"
	}
	steps := []struct {
		p      *phase
		name   string
		what   string
		n      int
		stream uint64
		call   func(context.Context, int64) (bool, error)
	}{
		{&r.base, "without cache", "calling the repository directly", cfg.requests, measuredStream, direct},
		{&r.warmup, "warm-up", "Fetch through cachemgr, from " + start, cfg.warmup, warmupStream, fetch},
		{&r.cached, "with cache", "Fetch through cachemgr, on the warmed cache", cfg.requests, measuredStream, fetch},
	}
	for _, s := range steps {
		if s.n == 0 || ctx.Err() != nil {
			continue
		}
		fmt.Fprintf(stdout, "\n%s: %s, %s requests\n", s.name, s.what, count(uint64(s.n)))
		before, callsBefore := m.Stats(), repo.calls.Load()
		*s.p = runPhase(ctx, cfg, s.n, s.stream, stdout, s.call, func(done uint64) string {
			st := m.Stats()
			line := fmt.Sprintf("requests %s  repository calls %s", count(done), count(repo.calls.Load()-callsBefore))
			if st.Hits+st.Misses > before.Hits+before.Misses {
				line += fmt.Sprintf("  hit ratio %.1f%%", 100*delta(before, st).HitRatio())
			}
			return line
		})
		s.p.name = s.name
		s.p.loaderCalls = repo.calls.Load() - callsBefore
		s.p.stats = delta(before, m.Stats())
	}

	// Counters are read before Close: Close cancels the loads and Redis
	// calls that the last requests left running, and those would show up
	// as load and Redis errors that no measured request saw.
	r.stats = m.Stats()
	r.interrupted = ctx.Err() != nil
	if err := m.Close(); err != nil {
		return err
	}
	report(stdout, r)
	return nil
}

// delta returns the counters of b that grew since a.
func delta(a, b cachemgr.Stats) cachemgr.Stats {
	return cachemgr.Stats{
		Hits:         b.Hits - a.Hits,
		Misses:       b.Misses - a.Misses,
		NegativeHits: b.NegativeHits - a.NegativeHits,
		RedisErrors:  b.RedisErrors - a.RedisErrors,
	}
}

// phase is the outcome of one workload of a fixed number of requests.
type phase struct {
	name        string
	requests    uint64
	notFound    uint64
	errors      uint64
	firstErr    error
	elapsed     time.Duration
	lat         []time.Duration // sorted
	loadLat     []time.Duration // sorted; of the requests that called the repository
	loaderCalls uint64
	stats       cachemgr.Stats // what the Manager counted during the phase
}

// ran reports whether the phase ran at all.
func (p phase) ran() bool { return p.requests > 0 }

func (p phase) p(q float64) time.Duration { return percentile(p.lat, q) }

// worker is one workload goroutine's state. Only the worker writes to it;
// the progress ticker reads n.
type worker struct {
	n        atomic.Uint64
	notFound uint64
	errors   uint64
	firstErr error
	lat      []time.Duration
	loadLat  []time.Duration
	_        [64]byte // keeps the hot counters of two workers off one cache line
}

// runPhase runs cfg.workers goroutines that call call on Zipf-chosen ids
// from key stream stream until n requests have been made or ctx ends,
// printing progress(requests) every second.
func runPhase(ctx context.Context, cfg config, n int, stream uint64, out io.Writer,
	call func(context.Context, int64) (bool, error), progress func(uint64) string) phase {
	start := time.Now()
	ws := make([]*worker, cfg.workers)
	var next atomic.Int64 // requests handed out
	var wg sync.WaitGroup
	for i := range ws {
		w := &worker{lat: make([]time.Duration, 0, min(n/cfg.workers+1, 1<<16))}
		ws[i] = w
		// Each worker has its own source: no lock is shared between them.
		src := rand.New(rand.NewPCG(cfg.seed, stream<<32|uint64(i)))
		z := rand.NewZipf(src, cfg.zipf, 1, uint64(cfg.keys-1))
		wg.Go(func() { w.loop(ctx, z, call, func() bool { return next.Add(1) <= int64(n) }) })
	}
	finished := make(chan struct{})
	go func() {
		wg.Wait()
		close(finished)
	}()

	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	requests := func() uint64 {
		var n uint64
		for _, w := range ws {
			n += w.n.Load()
		}
		return n
	}
wait:
	for {
		select {
		case <-finished:
			break wait
		case <-tick.C:
			fmt.Fprintf(out, "  %5.1fs  %s\n", time.Since(start).Seconds(), progress(requests()))
		}
	}

	p := phase{elapsed: time.Since(start)}
	for _, w := range ws {
		p.requests += w.n.Load()
		p.notFound += w.notFound
		p.errors += w.errors
		if p.firstErr == nil {
			p.firstErr = w.firstErr
		}
	}
	p.lat = make([]time.Duration, 0, p.requests)
	for _, w := range ws {
		p.lat = append(p.lat, w.lat...)
		p.loadLat = append(p.loadLat, w.loadLat...)
	}
	slices.Sort(p.lat)
	slices.Sort(p.loadLat)
	return p
}

// loop calls call on ids 1 to keys, drawn from z, while take grants one
// more request and ctx lasts. call reports whether it called the
// repository. A call cut short by ctx is not counted.
func (w *worker) loop(ctx context.Context, z *rand.Zipf, call func(context.Context, int64) (bool, error), take func() bool) {
	for ctx.Err() == nil && take() {
		id := int64(z.Uint64()) + 1
		start := time.Now()
		loaded, err := call(ctx, id)
		took := time.Since(start)
		switch {
		case err == nil:
		case errors.Is(err, cachemgr.ErrNotFound):
			w.notFound++
		case ctx.Err() != nil:
			return
		default:
			w.errors++
			if w.firstErr == nil {
				w.firstErr = err
			}
		}
		w.lat = append(w.lat, took)
		if loaded {
			w.loadLat = append(w.loadLat, took)
		}
		w.n.Add(1)
	}
}

// reportData is what the final report shows.
type reportData struct {
	cfg                  config
	embedded             bool // Redis is the embedded miniredis
	base, warmup, cached phase
	stats                cachemgr.Stats // the Manager's totals
	interrupted          bool
}

// report prints the final report.
func report(out io.Writer, r reportData) {
	fmt.Fprintf(out, "\nreport\n")
	if r.interrupted {
		fmt.Fprintf(out, "  (interrupted: the numbers cover the part that ran)\n")
	}
	fmt.Fprintf(out, "  %-14s %9s %10s %10s %10s %12s %10s %11s\n",
		"phase", "requests", "p50", "p90", "p99", "throughput", "hit ratio", "repo calls")
	for _, p := range []phase{r.base, r.warmup, r.cached} {
		if !p.ran() {
			continue
		}
		hits := "-"
		if p.stats.Hits+p.stats.Misses > 0 {
			hits = fmt.Sprintf("%.1f%%", 100*p.stats.HitRatio())
		}
		fmt.Fprintf(out, "  %-14s %9s %10s %10s %10s %6s req/s %10s %11s\n", p.name,
			count(p.requests), ms(p.p(0.50)), ms(p.p(0.90)), ms(p.p(0.99)),
			count(uint64(perSecond(p.requests, p.elapsed))), hits, count(p.loaderCalls))
	}

	b, c := r.base, r.cached
	if b.ran() && c.ran() {
		fmt.Fprintf(out, "\n  with cache vs without: p50 %s vs %s (%s), p99 %s vs %s (%s)\n",
			ms(c.p(0.50)), ms(b.p(0.50)), ratio(b.p(0.50), c.p(0.50)),
			ms(c.p(0.99)), ms(b.p(0.99)), ratio(b.p(0.99), c.p(0.99)))
		fmt.Fprintf(out, "\n%s\n", wrap(explain(r), 76, "  "))
	}

	fmt.Fprintf(out, "\n  %-15s %12s  (of %s not-found answers with the cache)\n", "negative hits",
		count(r.stats.NegativeHits), count(r.warmup.notFound+c.notFound))
	fmt.Fprintf(out, "  %-15s %12s  (breaker %s)\n", "redis errors", count(r.stats.RedisErrors), r.stats.Breaker)
	for _, p := range []phase{r.base, r.warmup, c} {
		if p.errors > 0 {
			fmt.Fprintf(out, "  %-15s %12s  (%s; first: %v)\n", "errors", count(p.errors), p.name, p.firstErr)
		}
	}
}

// explain says in plain words what the comparison of the measured phases
// shows: why the median falls, and what sets the p99.
func explain(r reportData) string {
	b, c := r.base, r.cached
	var s strings.Builder
	misses := 1 - c.stats.HitRatio()
	warm := "With the cache warm"
	if !r.warmup.ran() {
		warm = "With the cache, which started empty (-warmup 0)"
	}
	fmt.Fprintf(&s, "%s, half of the requests took under %s instead of %s: "+
		"%.1f%% of them were hits, answered by Redis without calling the repository, "+
		"which was called %s times instead of %s.",
		warm, ms(c.p(0.50)), ms(b.p(0.50)), 100*c.stats.HitRatio(), count(c.loaderCalls), count(b.loaderCalls))
	switch {
	case misses >= 0.01:
		fmt.Fprintf(&s, " The p99 is not a hit: %.1f%% of requests still missed (keys asked for "+
			"the first time, from the long tail of the key distribution), so the slowest 1%% "+
			"of requests are loads. With the cache a load took a median of %s (p99 %s): the "+
			"repository's %v plus the Redis round trips around it (a lookup, a lease claim, "+
			"a write-back), so it cannot beat calling the repository directly, and the p99 "+
			"compares loads with direct calls: %s with the cache against %s without.",
			100*misses, ms(percentile(c.loadLat, 0.50)), ms(percentile(c.loadLat, 0.99)),
			r.cfg.latency, ms(c.p(0.99)), ms(b.p(0.99)))
		if r.cfg.latency > 0 && b.p(0.99) > r.cfg.latency*3/2 {
			fmt.Fprintf(&s, " Without the cache the p99 is already %.1fx the repository's %v: "+
				"the machine is busy, and its scheduling delays, not the cache, set both tails.",
				float64(b.p(0.99))/float64(r.cfg.latency), r.cfg.latency)
		}
		s.WriteString(" A longer warm-up, fewer distinct keys or a longer TTL leave fewer " +
			"misses; below 1% of misses the p99 is a hit too.")
	default:
		fmt.Fprintf(&s, " The p99 falls too (%s against %s): fewer than 1%% of requests missed, "+
			"so even the slowest 1%% were answered by Redis.", ms(c.p(0.99)), ms(b.p(0.99)))
	}
	if r.warmup.ran() {
		start := "an empty cache"
		if !r.embedded {
			start = "what the server held from earlier runs, if anything"
		}
		fmt.Fprintf(&s, " The warm-up, which started from %s, is reported apart "+
			"(%.1f%% hits, p99 %s) so that its cold misses do not blur the comparison.",
			start, 100*r.warmup.stats.HitRatio(), ms(r.warmup.p(0.99)))
	}
	if r.embedded {
		s.WriteString(" Redis here is the embedded miniredis, a Go server sharing this process's CPU: " +
			"a real Redis answers hits faster (-redis URL).")
	}
	return s.String()
}

// wrap breaks text into lines of at most width bytes, each starting with
// indent.
func wrap(text string, width int, indent string) string {
	var b strings.Builder
	line := 0
	for _, w := range strings.Fields(text) {
		if line > 0 && line+1+len(w) > width {
			b.WriteByte('\n')
			line = 0
		}
		if line == 0 {
			b.WriteString(indent)
		} else {
			b.WriteByte(' ')
			line++
		}
		b.WriteString(w)
		line += len(w)
	}
	return b.String()
}

// ratio says how many times faster after is than before ("3.2x faster"),
// or slower.
func ratio(before, after time.Duration) string {
	switch {
	case before <= 0 || after <= 0:
		return "n/a"
	case after <= before:
		return fmt.Sprintf("%.1fx faster", float64(before)/float64(after))
	}
	return fmt.Sprintf("%.1fx slower", float64(after)/float64(before))
}

// percentile returns the q-quantile of sorted by the nearest-rank method,
// or 0 for no samples.
func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// ms formats d in milliseconds, so that columns compare at a glance.
func ms(d time.Duration) string {
	if d == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.3fms", float64(d)/float64(time.Millisecond))
}

func perSecond(n uint64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

// count formats n with thousands separators.
func count(n uint64) string {
	s := strconv.FormatUint(n, 10)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
