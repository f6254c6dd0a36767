package cachemgr

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
)

// WarmOption configures one Warm.
type WarmOption func(*warmConfig)

type warmConfig struct {
	concurrency int
	batchSize   int
	progress    func(done, total, failed int)
	write       []WriteOption
	err         error
}

// Concurrency sets how many chunks of keys Warm works on at once, which
// bounds the loader calls in flight. It must be at least 1; anything else
// makes Warm return ErrInvalidOption. Default: 8.
func Concurrency(n int) WarmOption {
	return func(w *warmConfig) {
		if n < 1 {
			w.err = fmt.Errorf("%w: concurrency %d", ErrInvalidOption, n)
			return
		}
		w.concurrency = n
	}
}

// Progress sets a function Warm calls each time it finishes a key (keys
// finish a chunk at a time), with the number of keys finished (loaded,
// skipped or failed), the number of keys and the failures so far. Calls
// never overlap, and done grows by one each time, ending at total unless ctx
// ends first; they run on Warm's workers, so a slow fn slows the warming.
// nil means no reports.
// Default: nil.
func Progress(fn func(done, total, failed int)) WarmOption {
	return func(w *warmConfig) {
		w.progress = fn
	}
}

// WarmReport counts what Warm did. Keys left undone because ctx ended are
// in none of the counts.
type WarmReport struct {
	// Loaded counts missing keys that load filled. A loader's ErrNotFound
	// counts here: it is cached as a negative entry (see WithNegativeTTL).
	Loaded int
	// Skipped counts keys that were already cached, negative entries
	// included, and repeats of a key; the loader was not called for them.
	Skipped int
	// Failed counts keys left uncached: the loader returned an error or
	// panicked, or Redis could not be read.
	Failed int
	// FirstErr is the first failure, for the log; nil when Failed is 0.
	FirstErr error
}

// BatchSize sets how many keys Warm reads, loads and writes at a time:
// one batch loader call (WithBatchLoader), and two round trips to Redis, per
// chunk. It must be at least 1; anything else makes Warm return
// ErrInvalidOption. Default: 500.
func BatchSize(n int) WarmOption {
	return func(w *warmConfig) {
		if n < 1 {
			w.err = fmt.Errorf("%w: batch size %d", ErrInvalidOption, n)
			return
		}
		w.batchSize = n
	}
}

// WarmWrite sets the write options (TTL, Tags) of the values Warm
// stores. A bad one makes Warm return ErrInvalidOption. Default: none, the
// cache's TTL and no tags.
func WarmWrite(opts ...WriteOption) WarmOption {
	return func(w *warmConfig) {
		w.write = append(w.write, opts...)
	}
}

// Warm fills the cache before traffic arrives (after a deploy, or a Redis
// restart). It goes through keys a chunk at a time (BatchSize): one read of
// the chunk, one loader call for the keys that hold no value, one write of
// their values, at most Concurrency chunks at a time. load is a loader by
// key, called for each missing key of a chunk in turn; nil means the
// cache's loaders: the batch loader, called once per chunk, else the loader
// by key (ErrNoLoader without either). A key already cached (negative
// entries included) is skipped without calling a loader. Values get the
// cache's TTL, or WarmWrite's options, or what the loader sets through
// EntryFrom (whose DoNotCache keeps them out); a Delete or InvalidateTags
// during the load keeps its result out, as with FetchMany. Warm's reads and
// loads are counted apart from traffic (Stats.Warmed and the other Warm
// fields), not as hits or misses.
//
// A failing key does not stop the run: it is counted in the report and the
// run goes on. Warm returns an error only when it stopped early: ctx ended
// (the error wraps its cause) or the Manager was closed (ErrClosed). When
// ctx ends, no new key is started and the context of the loads in flight
// ends too; what was loaded before is still stored and counted, and Warm
// returns once the loads have ended, so no call of a loader is running,
// and no goroutine Warm started is left, when it returns. A load that
// ignores its context is waited for, up to the load timeout.
//
// While Redis is down, the read of a chunk fails and its keys count as
// failed without calling a loader: a cache that cannot be written is not
// worth warming.
func (c *Cache[T]) Warm(ctx context.Context, keys []string, load func(ctx context.Context, key string) (T, error), opts ...WarmOption) (WarmReport, error) {
	w, many, err := c.warmSetup(load, opts)
	if err != nil {
		return WarmReport{}, err
	}
	ctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	run := &warmRun[T]{c: c, keys: distinct(keys), load: many, write: w.write,
		stop: stop, progress: w.config.progress, total: len(keys)}
	run.size = w.config.chunkSize(len(run.keys), load != nil || c.batchLoader == nil)
	var wg sync.WaitGroup
	for range min(w.config.concurrency, (len(run.keys)+run.size-1)/run.size) {
		wg.Go(func() { run.work(ctx) })
	}
	wg.Wait()
	if run.done < len(run.keys) {
		if err := context.Cause(ctx); err != nil {
			return run.rep, fmt.Errorf("warm %q: stopped after %d of %d keys: %w", c.name, run.done, len(keys), err)
		}
	}
	run.finish(appendResults(nil, len(keys)-len(run.keys), warmResult{outcome: warmSkipped}))
	return run.rep, nil
}

// warmSettings are one Warm's options, checked.
type warmSettings struct {
	config warmConfig
	write  writeConfig
}

// warmSetup applies and checks the options of a Warm that loads with load
// (nil: the cache's loaders), and returns them with the loader to use.
func (c *Cache[T]) warmSetup(load func(ctx context.Context, key string) (T, error), opts []WarmOption) (warmSettings, manyLoad[T], error) {
	w, werr := newWarmSettings(opts)
	many := c.manyLoader()
	if load != nil {
		many = keyByKey(load)
	}
	switch {
	case many == nil:
		return w, nil, fmt.Errorf("warm %q: %w", c.name, ErrNoLoader)
	case werr != nil:
		return w, nil, fmt.Errorf("warm %q: %w", c.name, werr)
	case c.m.done.Load():
		return w, nil, ErrClosed
	}
	return w, many, nil
}

// newWarmSettings applies opts to the defaults (8 workers, chunks of 500
// keys) and checks them: the first error is an option's, then the write
// options'.
func newWarmSettings(opts []WarmOption) (warmSettings, error) {
	w := warmSettings{config: warmConfig{concurrency: 8, batchSize: 500}}
	for _, opt := range opts {
		if opt != nil {
			opt(&w.config)
		}
	}
	var werr error
	w.write, werr = writeOptions(w.config.write)
	if w.config.err != nil {
		return w, w.config.err
	}
	return w, werr
}

// chunkSize returns the number of keys per chunk for n distinct keys: the
// batch size, and for a loader by key (byKey), which runs the keys of a
// chunk in turn, chunks small enough to keep every worker busy and each
// round trip short.
func (cfg *warmConfig) chunkSize(n int, byKey bool) int {
	if !byKey {
		return cfg.batchSize
	}
	return max(1, min(cfg.batchSize, warmKeyChunk, (n+cfg.concurrency-1)/cfg.concurrency))
}

// warmRun is what the workers of one Warm share.
type warmRun[T any] struct {
	c     *Cache[T]
	keys  []string // distinct
	size  int      // keys per chunk
	load  manyLoad[T]
	write writeConfig
	next  atomic.Int64 // the first key of the next chunk
	// stop ends the run, with its cause.
	stop     context.CancelCauseFunc
	progress func(done, total, failed int)
	total    int // keys, repeats included

	mu   sync.Mutex // guards rep and done, and serialises progress
	rep  WarmReport
	done int
}

// work warms chunks of keys until none is left or the run ends.
func (r *warmRun[T]) work(ctx context.Context) {
	for ctx.Err() == nil {
		lo := int(r.next.Add(int64(r.size))) - r.size
		if lo >= len(r.keys) {
			return
		}
		rs, err := r.c.warmChunk(ctx, r.keys[lo:min(lo+r.size, len(r.keys))], r.load, r.write)
		r.finish(rs)
		if err != nil {
			r.stop(err)
			return
		}
	}
}

// finish counts the results of finished keys, and reports progress.
func (r *warmRun[T]) finish(rs []warmResult) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, res := range rs {
		r.c.warmCount(&r.rep, res)
		r.done++
		if r.progress != nil {
			r.progress(r.done, r.total, r.rep.Failed)
		}
	}
}

// appendResults appends n copies of r to out.
func appendResults(out []warmResult, n int, r warmResult) []warmResult {
	for range n {
		out = append(out, r)
	}
	return out
}

// warmKeyChunk is the largest chunk for a loader by key, whose calls, not
// the round trips, take the time.
const warmKeyChunk = 16

type warmOutcome int

const (
	warmLoaded warmOutcome = iota
	warmSkipped
	warmFailed
)

type warmResult struct {
	outcome warmOutcome
	err     error
}

// warmCount counts r in rep and in the cache's counters.
func (c *Cache[T]) warmCount(rep *WarmReport, r warmResult) {
	switch r.outcome {
	case warmLoaded:
		rep.Loaded++
		c.stats.warmed.Add(1)
	case warmSkipped:
		rep.Skipped++
		c.stats.warmSkipped.Add(1)
	case warmFailed:
		rep.Failed++
		c.stats.warmFailed.Add(1)
		if rep.FirstErr == nil {
			rep.FirstErr = r.err
		}
	}
}

// warmChunk warms a chunk of distinct keys through the batch path and
// returns the results of the keys it finished. The error reports that the
// run must end (ctx ended, or the Manager closed): keys left unfinished
// then have no result.
func (c *Cache[T]) warmChunk(ctx context.Context, keys []string, load manyLoad[T], w writeConfig) ([]warmResult, error) {
	vals := make([]T, len(keys))
	errs := make([]error, len(keys))
	b, err := c.readBatch(ctx, keys, vals, errs, true)
	if stop := c.warmStop(ctx, err); stop != nil {
		return nil, stop
	}
	out := make([]warmResult, 0, len(keys))
	if err != nil {
		return appendResults(out, len(keys), warmResult{warmFailed, err}), nil
	}
	out = appendResults(out, len(keys)-len(b.missing), warmResult{outcome: warmSkipped})
	if len(b.missing) == 0 {
		return out, nil
	}
	// The loader's context ends with Warm's; the writes of what it loaded
	// do not.
	results := c.loadBatch(ctx, b, load, w, true)
	var stop error
	for _, k := range b.missing {
		r := results[k]
		if s := c.warmStop(ctx, r.err); s != nil {
			stop = s
			continue
		}
		switch {
		case r.err == nil, errors.Is(r.err, ErrNotFound):
			out = append(out, warmResult{outcome: warmLoaded})
		default:
			out = append(out, warmResult{warmFailed, fmt.Errorf("warm %.64q: %w", k, r.err)})
		}
	}
	return out, stop
}

// warmStop returns why the run must end after a key's err: the Manager
// closed or ctx ended; nil otherwise.
func (c *Cache[T]) warmStop(ctx context.Context, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrClosed), c.m.done.Load():
		return ErrClosed
	case ctx.Err() != nil:
		return context.Cause(ctx)
	}
	return nil
}
