package cachemgr

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"time"
)

// Loader loads the value of one key from the source of truth. It returns
// ErrNotFound (wrapped or not) when the key does not exist there.
type Loader[T any] func(ctx context.Context, key string) (T, error)

// BatchLoader loads many keys from the source of truth in one call (one
// query with an IN list, one RPC). Keys it leaves out of its map do not
// exist there: they are not found, and cached as negative entries. An error
// fails every key of the call.
type BatchLoader[T any] func(ctx context.Context, keys []string) (map[string]T, error)

// ErrNoLoader reports a Load, LoadMany or Warm without a loader on a cache
// made without WithLoader or WithBatchLoader. It matches ErrNilLoader too.
var ErrNoLoader = fmt.Errorf("%w: the cache has no loader (WithLoader, WithBatchLoader)", ErrNilLoader)

// WithLoader sets the cache's loader by key, which Load, LoadMany, Warm
// and the refreshes of values Load returned use. With only a loader by key,
// batches call it once per key. T must be the cache's type; anything else
// makes NewCache return ErrInvalidOption. Default: none.
func WithLoader[T any](load Loader[T]) CacheOption {
	return func(c *cacheConfig) error {
		if load == nil {
			return fmt.Errorf("%w: nil loader", ErrInvalidOption)
		}
		c.loader = load
		return nil
	}
}

// WithBatchLoader sets the cache's loader in batches, which LoadMany and
// Warm use (Warm in chunks of BatchSize keys). With only a batch loader,
// Load calls it with one key. T must be the cache's type; anything else
// makes NewCache return ErrInvalidOption. Default: none.
func WithBatchLoader[T any](load BatchLoader[T]) CacheOption {
	return func(c *cacheConfig) error {
		if load == nil {
			return fmt.Errorf("%w: nil batch loader", ErrInvalidOption)
		}
		c.batchLoader = load
		return nil
	}
}

// loaders checks the loaders given to NewCache against the cache's type.
func loaders[T any](cfg cacheConfig) (Loader[T], BatchLoader[T], error) {
	var one Loader[T]
	var many BatchLoader[T]
	var zero T
	if cfg.loader != nil {
		var ok bool
		if one, ok = cfg.loader.(Loader[T]); !ok {
			return nil, nil, fmt.Errorf("%w: WithLoader for %T on a cache of %T", ErrInvalidOption, cfg.loader, zero)
		}
	}
	if cfg.batchLoader != nil {
		var ok bool
		if many, ok = cfg.batchLoader.(BatchLoader[T]); !ok {
			return nil, nil, fmt.Errorf("%w: WithBatchLoader for %T on a cache of %T", ErrInvalidOption, cfg.batchLoader, zero)
		}
	}
	return one, many, nil
}

// Load is Fetch with the cache's loader (WithLoader, or WithBatchLoader
// called with one key): it returns the value under key, loading and
// storing it on a miss, and refreshes it with the same loader. It returns
// ErrNoLoader on a cache without one.
func (c *Cache[T]) Load(ctx context.Context, key string, opts ...WriteOption) (T, error) {
	load, err := c.oneLoader(key)
	if err != nil {
		var zero T
		return zero, fmt.Errorf("load %.64q: %w", key, err)
	}
	return c.Fetch(ctx, key, load, opts...)
}

// LoadMany is FetchMany with the cache's loader: the batch loader when
// there is one, else the loader by key, called for each missing key in
// turn. It returns ErrNoLoader on a cache without one.
func (c *Cache[T]) LoadMany(ctx context.Context, keys []string, opts ...WriteOption) ([]T, []error, error) {
	load := c.manyLoader()
	if load == nil {
		return make([]T, len(keys)), make([]error, len(keys)), fmt.Errorf("load many: %w", ErrNoLoader)
	}
	return c.fetchMany(ctx, keys, load, opts)
}

// oneLoader returns the cache's loader for key, for Fetch.
func (c *Cache[T]) oneLoader(key string) (func(context.Context) (T, error), error) {
	switch {
	case c.loader != nil:
		return func(ctx context.Context) (T, error) { return c.loader(ctx, key) }, nil
	case c.batchLoader != nil:
		return func(ctx context.Context) (T, error) {
			vals, err := c.batchLoader(ctx, []string{key})
			if v, ok := vals[key]; ok || err != nil {
				return v, err
			}
			var zero T
			return zero, ErrNotFound
		}, nil
	}
	return nil, ErrNoLoader
}

// manyLoad loads the missing keys of a batch: one batch loader call, or
// a loader by key's calls in turn. It returns one item per key, with its
// value or error, its Entry and its load time, for storeAll.
type manyLoad[T any] func(ctx context.Context, c *Cache[T], keys []string, warm bool) []item[T]

// manyLoader returns the cache's loader for batches, nil without one.
func (c *Cache[T]) manyLoader() manyLoad[T] {
	switch {
	case c.batchLoader != nil:
		return batchOf(c.batchLoader)
	case c.loader != nil:
		return keyByKey(c.loader)
	}
	return nil
}

// batchOf calls a batch loader once for all keys: they share its Entry.
// Keys it leaves out are not found; its error fails them all.
func batchOf[T any](load func(context.Context, []string) (map[string]T, error)) manyLoad[T] {
	return func(ctx context.Context, c *Cache[T], keys []string, warm bool) []item[T] {
		entry := &Entry{}
		vals, took, err := runLoader(c, ctx, entry, warm, func(ctx context.Context) (map[string]T, error) {
			return load(ctx, keys)
		})
		items := make([]item[T], len(keys))
		for j, k := range keys {
			it := item[T]{err: err, entry: entry, took: took}
			if err == nil {
				var found bool
				if it.val, found = vals[k]; !found {
					it.err = ErrNotFound
				}
			}
			items[j] = it
		}
		return items
	}
}

// keyByKey calls a loader by key for each key in turn, each with its own
// Entry and load timeout, and starts no key once ctx has ended (those get
// its cause).
func keyByKey[T any](load func(context.Context, string) (T, error)) manyLoad[T] {
	return func(ctx context.Context, c *Cache[T], keys []string, warm bool) []item[T] {
		items := make([]item[T], len(keys))
		for j, k := range keys {
			if ctx.Err() != nil {
				items[j].err = context.Cause(ctx)
				continue
			}
			entry := &Entry{}
			v, took, err := runLoader(c, ctx, entry, warm, func(ctx context.Context) (T, error) { return load(ctx, k) })
			items[j] = item[T]{val: v, err: err, entry: entry, took: took}
		}
		return items
	}
}

// PanicError is the error of a loader that panicked: every caller waiting
// on that load receives it. It matches ErrLoaderPanic, and the panic value
// too when that is an error.
type PanicError struct {
	// Value is what the loader panicked with.
	Value any
	// Stack is the loader's goroutine stack at the panic.
	Stack []byte
}

// Error returns the panic value, without the stack.
func (e *PanicError) Error() string {
	return fmt.Sprintf("%v: %v", ErrLoaderPanic, e.Value)
}

// Unwrap returns ErrLoaderPanic, and the panic value when it is an error.
func (e *PanicError) Unwrap() []error {
	if err, ok := e.Value.(error); ok {
		return []error{ErrLoaderPanic, err}
	}
	return []error{ErrLoaderPanic}
}

// runLoader is the one way a cache calls a loader, by key or in batches:
// with entry installed (EntryFrom), under the load timeout and the
// Manager's lifetime, reported to the Observer, counted (as a Warm's load
// when warm), and with a panic turned into a *PanicError that is logged
// with its stack.
func runLoader[T, R any](c *Cache[T], ctx context.Context, entry *Entry, warm bool, load func(context.Context) (R, error)) (v R, took time.Duration, err error) {
	if c.m.obs != nil {
		var end func(error)
		ctx, end = c.m.obs.Load(ctx, c.name)
		defer func() { end(err) }()
	}
	ctx, cancel := context.WithTimeout(context.WithValue(ctx, entryKey{}, entry), c.m.loadTimeout)
	defer cancel()
	stop := context.AfterFunc(c.m.ctx, cancel)
	defer stop()
	start := monotonic()
	defer func() {
		took = time.Since(start)
		if r := recover(); r != nil {
			pe := &PanicError{Value: r, Stack: debug.Stack()}
			c.m.logger.Error("cachemgr: loader panicked", "cache", c.name, "panic", r, "stack", string(pe.Stack))
			err = pe
		}
		c.countLoad(err, warm)
	}()
	v, err = load(ctx)
	return v, took, err
}

// countLoad counts one loader call that returned err.
func (c *Cache[T]) countLoad(err error, warm bool) {
	if warm {
		c.stats.warmLoads.Add(1)
		return
	}
	c.stats.loads.Add(1)
	// A load cut short by Close is not the loader's fault.
	if err != nil && !errors.Is(err, ErrNotFound) && !c.m.done.Load() {
		c.stats.loadErrors.Add(1)
	}
}

// DoNotCache keeps the result of the load out of the cache (Redis and
// the L1 tier), for a partial result or a degraded answer: the caller still
// receives it. In a batch load, keys names the keys to keep out (none: all
// of them); in a load by key, the value is kept out whatever keys says.
func (e *Entry) DoNotCache(keys ...string) {
	if e == nil {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(keys) == 0 {
		e.noCache = true
		return
	}
	if e.noCacheKeys == nil {
		e.noCacheKeys = map[string]bool{}
	}
	for _, k := range keys {
		e.noCacheKeys[k] = true
	}
}

// cacheable reports whether the loader left key's result to be cached.
func (e *Entry) cacheable(key string, single bool) bool {
	if e == nil {
		return true
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return !e.noCache && !(single && len(e.noCacheKeys) > 0) && !e.noCacheKeys[key]
}
