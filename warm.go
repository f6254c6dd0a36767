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
	progress    func(done, total, failed int)
	err         error
}

// Concurrency sets how many keys Warm works on at once, which bounds the
// loader calls in flight. It must be at least 1; anything else makes Warm
// return ErrInvalidOption. Default: 8.
func Concurrency(n int) WarmOption {
	return func(w *warmConfig) {
		if n < 1 {
			w.err = fmt.Errorf("%w: concurrency %d", ErrInvalidOption, n)
			return
		}
		w.concurrency = n
	}
}

// Progress sets a function Warm calls each time it finishes a key, with the
// number of keys finished (loaded, skipped or failed), the number of keys
// and the failures so far. Calls never overlap, and done grows by one each
// time, ending at total unless ctx ends first; they run on Warm's workers,
// so a slow fn slows the warming. nil means no reports.
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
	// included; load was not called for them.
	Skipped int
	// Failed counts keys left uncached: load returned an error or
	// panicked, or Redis could not be read.
	Failed int
	// FirstErr is the first failure, for the log; nil when Failed is 0.
	FirstErr error
}

// warmChunk is how many keys a worker takes at a time. Each key is one Get
// and, on a miss, one Fetch today; a batch read (GetMany/FetchMany) can
// take a chunk in one round trip by replacing warmKeys alone.
const warmChunk = 1

// Warm fills the cache before traffic arrives (after a deploy, or a Redis
// restart): every key of keys that holds no value is loaded with load and
// stored, at most Concurrency keys at a time. A key that is already cached
// (a Get hit, negative entries included) is skipped without calling load.
// Each missing key goes through Fetch, so a key that live traffic is
// loading at the same moment is loaded once, and a Delete during the load
// wins. Values get the cache's TTL, or what load sets through EntryFrom.
//
// A failing key does not stop the run: it is counted in the report and the
// run goes on. Warm returns an error only when it stopped early: ctx ended
// (the error wraps its cause) or the Manager was closed (ErrClosed). When
// ctx ends, no new key is started and the context of the loads in flight
// ends too; Warm returns once they have, so no call of load is running, and
// no goroutine Warm started is left, when it returns. A load that ignores
// its context is waited for, up to the load timeout, and so is a key that
// another caller or process is loading (up to the lease time, WithLease).
//
// While Redis is down, Get fails and every key counts as failed without
// calling load: a cache that cannot be written is not worth warming.
func (c *Cache[T]) Warm(ctx context.Context, keys []string, load func(ctx context.Context, key string) (T, error), opts ...WarmOption) (WarmReport, error) {
	var rep WarmReport
	w := warmConfig{concurrency: 8}
	for _, opt := range opts {
		if opt != nil {
			opt(&w)
		}
	}
	switch {
	case load == nil:
		return rep, fmt.Errorf("warm %q: %w", c.name, ErrNilLoader)
	case w.err != nil:
		return rep, fmt.Errorf("warm %q: %w", c.name, w.err)
	case c.m.done.Load():
		return rep, ErrClosed
	}
	ctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)

	var (
		next atomic.Int64
		mu   sync.Mutex // guards rep and done, and serialises progress
		done int
		wg   sync.WaitGroup
	)
	finish := func(r warmResult) {
		mu.Lock()
		defer mu.Unlock()
		switch r.outcome {
		case warmLoaded:
			rep.Loaded++
		case warmSkipped:
			rep.Skipped++
		case warmFailed:
			rep.Failed++
			if rep.FirstErr == nil {
				rep.FirstErr = r.err
			}
		}
		done++
		if w.progress != nil {
			w.progress(done, len(keys), rep.Failed)
		}
	}
	workers := min(w.concurrency, (len(keys)+warmChunk-1)/warmChunk)
	for range workers {
		wg.Go(func() {
			for ctx.Err() == nil {
				lo := int(next.Add(warmChunk)) - warmChunk
				if lo >= len(keys) {
					return
				}
				for _, r := range c.warmKeys(ctx, keys[lo:min(lo+warmChunk, len(keys))], load) {
					if r.outcome == warmStopped {
						stop(r.err)
						return
					}
					finish(r)
				}
			}
		})
	}
	wg.Wait()
	if done < len(keys) {
		if err := context.Cause(ctx); err != nil {
			return rep, fmt.Errorf("warm %q: stopped after %d of %d keys: %w", c.name, done, len(keys), err)
		}
	}
	return rep, nil
}

type warmOutcome int

const (
	warmLoaded warmOutcome = iota
	warmSkipped
	warmFailed
	// warmStopped: the key was not finished because the run must end.
	warmStopped
)

type warmResult struct {
	outcome warmOutcome
	err     error
}

// warmKeys warms a chunk of keys, one result per key; a warmStopped result
// ends the chunk early.
func (c *Cache[T]) warmKeys(ctx context.Context, keys []string, load func(context.Context, string) (T, error)) []warmResult {
	out := make([]warmResult, 0, len(keys))
	for _, key := range keys {
		r := c.warmKey(ctx, key, load)
		out = append(out, r)
		if r.outcome == warmStopped {
			break
		}
	}
	return out
}

func (c *Cache[T]) warmKey(ctx context.Context, key string, load func(context.Context, string) (T, error)) warmResult {
	_, err := c.Get(ctx, key)
	switch {
	case err == nil, errors.Is(err, ErrNotFound):
		return warmResult{outcome: warmSkipped}
	case errors.Is(err, ErrClosed):
		return warmResult{warmStopped, ErrClosed}
	case ctx.Err() != nil:
		return warmResult{warmStopped, context.Cause(ctx)}
	case !errors.Is(err, ErrMiss):
		return warmResult{warmFailed, err}
	}
	// Fetch gets a context that cannot end, so the load runs on this
	// goroutine and Warm can wait for it; the loader's own context ends
	// with Warm's instead.
	_, err = c.Fetch(context.WithoutCancel(ctx), key, func(lctx context.Context) (T, error) {
		lctx, cancel := context.WithCancelCause(lctx)
		defer cancel(nil)
		defer context.AfterFunc(ctx, func() { cancel(context.Cause(ctx)) })()
		return load(lctx, key)
	})
	switch {
	case err == nil, errors.Is(err, ErrNotFound):
		return warmResult{outcome: warmLoaded}
	case errors.Is(err, ErrClosed):
		return warmResult{warmStopped, ErrClosed}
	case ctx.Err() != nil:
		return warmResult{warmStopped, context.Cause(ctx)}
	}
	return warmResult{warmFailed, err}
}
