// Command cachedemo shows what a cachemgr.Cache does for a slow repository.
//
// A fake product repository answers every load after 20ms, and one product
// id in a hundred does not exist. Concurrent workers ask for products with a
// Zipf-skewed key choice, as real traffic does: a few products are hot, most
// are rarely asked for. The demo first calls the repository directly for
// -baseline to measure the uncached path, then for -duration puts a
// cachemgr.Cache in front of it and calls Fetch. Every second it prints
// progress; at the end it reports throughput, the hit ratio, how often the
// repository was still called (the stampede of concurrent misses on one key
// costs a single load), negative hits (cached "not found" answers) and the
// p50/p90/p99 latency with and without the cache.
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
// outlive the run for -ttl, so a second run starts warm. Ctrl-C ends the
// run early and still prints the report.
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
	duration time.Duration
	baseline time.Duration
	keys     int
	zipf     float64
	ttl      time.Duration
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
	fs.DurationVar(&cfg.duration, "duration", 5*time.Second, "length of the cached phase")
	fs.DurationVar(&cfg.baseline, "baseline", time.Second, "length of the uncached phase run first (0 skips it)")
	fs.IntVar(&cfg.keys, "keys", 10000, "number of distinct product ids")
	fs.Float64Var(&cfg.zipf, "zipf", 1.1, "Zipf skew s of the key choice (> 1; higher is more skewed)")
	fs.DurationVar(&cfg.ttl, "ttl", 30*time.Second, "TTL of cached products")
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
	case cfg.duration <= 0:
		return config{}, fmt.Errorf("-duration %v: want > 0", cfg.duration)
	case cfg.baseline < 0:
		return config{}, fmt.Errorf("-baseline %v: want >= 0", cfg.baseline)
	case cfg.keys < 1:
		return config{}, fmt.Errorf("-keys %d: want at least 1", cfg.keys)
	case !(cfg.zipf > 1) || math.IsInf(cfg.zipf, 0):
		// rand.NewZipf needs s > 1.
		return config{}, fmt.Errorf("-zipf %v: want > 1", cfg.zipf)
	case cfg.ttl <= 0 || cfg.ttl > cachemgr.MaxTTL:
		return config{}, fmt.Errorf("-ttl %v: want > 0 and <= %v", cfg.ttl, cachemgr.MaxTTL)
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
	repo := &repository{latency: 20 * time.Millisecond}

	fmt.Fprintf(stdout, "cachedemo: %d workers, %d keys, zipf s=%.2f, ttl %v, %s\n",
		cfg.workers, cfg.keys, cfg.zipf, cfg.ttl, where)

	var base phase
	if cfg.baseline > 0 {
		fmt.Fprintf(stdout, "\nwithout cache: calling the repository directly for %v\n", cfg.baseline)
		direct := func(ctx context.Context, id int64) error {
			_, err := repo.product(ctx, id)
			return err
		}
		base = runPhase(ctx, cfg, cfg.baseline, stdout, direct, func(requests uint64) string {
			return fmt.Sprintf("requests %s  loader calls %s", count(requests), count(repo.calls.Load()))
		})
	}

	var cached phase
	callsBefore := repo.calls.Load()
	if ctx.Err() == nil {
		fmt.Fprintf(stdout, "\nwith cache: Fetch through cachemgr for %v\n", cfg.duration)
		fetch := func(ctx context.Context, id int64) error {
			_, err := products.Fetch(ctx, strconv.FormatInt(id, 10), func(ctx context.Context) (product, error) {
				return repo.product(ctx, id)
			})
			return err
		}
		var prev cachemgr.Stats
		cached = runPhase(ctx, cfg, cfg.duration, stdout, fetch, func(requests uint64) string {
			st := m.Stats()
			last := cachemgr.Stats{Hits: st.Hits - prev.Hits, Misses: st.Misses - prev.Misses}
			prev = st
			return fmt.Sprintf("requests %s  hit ratio %.2f%% (last 1s %.2f%%)  loader calls %s",
				count(requests), 100*st.HitRatio(), 100*last.HitRatio(), count(repo.calls.Load()-callsBefore))
		})
	}

	// Counters are read before Close: Close cancels the loads and Redis
	// calls that the last requests left running, and those would show up
	// as load and Redis errors that no measured request saw.
	r := reportData{
		base:        base,
		cached:      cached,
		stats:       m.Stats(),
		loaderCalls: repo.calls.Load() - callsBefore,
		interrupted: ctx.Err() != nil,
	}
	if err := m.Close(); err != nil {
		return err
	}
	report(stdout, r)
	return nil
}

// phase is the outcome of one timed workload.
type phase struct {
	requests uint64
	notFound uint64
	errors   uint64
	firstErr error
	elapsed  time.Duration
	lat      []time.Duration // sorted
}

// worker is one workload goroutine's state. Only the worker writes to it;
// the progress ticker reads n.
type worker struct {
	n        atomic.Uint64
	notFound uint64
	errors   uint64
	firstErr error
	lat      []time.Duration
	_        [64]byte // keeps the hot counters of two workers off one cache line
}

// runPhase runs cfg.workers goroutines that call call on Zipf-chosen ids
// until d has passed or ctx ends, printing progress(requests)
// every second.
func runPhase(ctx context.Context, cfg config, d time.Duration, out io.Writer,
	call func(context.Context, int64) error, progress func(uint64) string) phase {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	start := time.Now()
	ws := make([]*worker, cfg.workers)
	var wg sync.WaitGroup
	for i := range ws {
		w := &worker{lat: make([]time.Duration, 0, 1024)}
		ws[i] = w
		// Each worker has its own source: no lock is shared between them.
		z := rand.NewZipf(rand.New(rand.NewPCG(cfg.seed, uint64(i))), cfg.zipf, 1, uint64(cfg.keys-1))
		wg.Go(func() { w.loop(ctx, z, call) })
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
	}
	slices.Sort(p.lat)
	return p
}

// loop calls call on ids 1 to keys, drawn from z, until ctx ends. A call
// cut short by the end of the phase is not counted.
func (w *worker) loop(ctx context.Context, z *rand.Zipf, call func(context.Context, int64) error) {
	done := ctx.Done()
	for {
		select {
		case <-done:
			return
		default:
		}
		id := int64(z.Uint64()) + 1
		start := time.Now()
		err := call(ctx, id)
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
		w.n.Add(1)
	}
}

// reportData is what the final report shows.
type reportData struct {
	base, cached phase
	stats        cachemgr.Stats
	loaderCalls  uint64 // repository calls during the cached phase
	interrupted  bool
}

// report prints the final report.
func report(out io.Writer, r reportData) {
	c := r.cached
	fmt.Fprintf(out, "\nreport\n")
	if r.interrupted {
		fmt.Fprintf(out, "  (interrupted: the numbers cover the part that ran)\n")
	}
	fmt.Fprintf(out, "  %-15s %12s in %.2fs\n", "requests", count(c.requests), c.elapsed.Seconds())
	fmt.Fprintf(out, "  %-15s %12s req/s\n", "throughput", count(uint64(perSecond(c.requests, c.elapsed))))
	fmt.Fprintf(out, "  %-15s %11.2f%%\n", "hit ratio", 100*r.stats.HitRatio())
	fmt.Fprintf(out, "  %-15s %12s  (%.2f%% of requests)\n", "loader calls", count(r.loaderCalls), percent(r.loaderCalls, c.requests))
	fmt.Fprintf(out, "  %-15s %12s  (of %s not-found answers)\n", "negative hits", count(r.stats.NegativeHits), count(c.notFound))
	fmt.Fprintf(out, "  %-15s %12s  (breaker %s)\n", "redis errors", count(r.stats.RedisErrors), r.stats.Breaker)
	if c.errors > 0 {
		fmt.Fprintf(out, "  %-15s %12s  (first: %v)\n", "errors", count(c.errors), c.firstErr)
	}

	fmt.Fprintf(out, "\n  %-15s %12s %12s %12s %12s %14s\n", "latency", "p50", "p90", "p99", "requests", "throughput")
	for _, row := range []struct {
		name string
		p    phase
	}{{"without cache", r.base}, {"with cache", c}} {
		fmt.Fprintf(out, "  %-15s %12s %12s %12s %12s %8s req/s\n", row.name,
			ms(percentile(row.p.lat, 0.50)), ms(percentile(row.p.lat, 0.90)), ms(percentile(row.p.lat, 0.99)),
			count(row.p.requests), count(uint64(perSecond(row.p.requests, row.p.elapsed))))
	}
	b50, c50 := percentile(r.base.lat, 0.50), percentile(c.lat, 0.50)
	speedup := "n/a"
	if b50 > 0 && c50 > 0 {
		speedup = fmt.Sprintf("%.1fx", float64(b50)/float64(c50))
	}
	fmt.Fprintf(out, "  %-15s %12s\n", "p50 speedup", speedup)
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

func percent(n, of uint64) float64 {
	if of == 0 {
		return 0
	}
	return 100 * float64(n) / float64(of)
}

// count formats n with thousands separators.
func count(n uint64) string {
	s := strconv.FormatUint(n, 10)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
