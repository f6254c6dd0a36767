package cachemgr

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"sync"
	"time"
)

// Entry lets a loader describe the value it is producing, when it learns
// how long it stays good only by loading it. Get it with EntryFrom inside a
// loader.
type Entry struct {
	mu          sync.Mutex
	ttl         time.Duration
	tags        []string
	err         error
	noCache     bool            // DoNotCache(): nothing of the load is cached
	noCacheKeys map[string]bool // DoNotCache(keys...)
}

type entryKey struct{}

// EntryFrom returns the Entry of the load that ctx belongs to, or nil
// outside a loader. The methods of a nil *Entry do nothing, so a loader can
// also run outside the cache.
func EntryFrom(ctx context.Context) *Entry {
	e, _ := ctx.Value(entryKey{}).(*Entry)
	return e
}

// SetTTL sets how long the loaded value stays fresh, overriding the cache's
// TTL and the call's TTL option. An invalid d (see TTL) keeps the value out
// of Redis: Fetch still returns it, and the error is counted and logged.
func (e *Entry) SetTTL(d time.Duration) {
	if e == nil {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.ttl, e.err = d, checkTTL(d)
}

func (e *Entry) get() (time.Duration, []string, error) {
	if e == nil {
		return 0, nil, nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.ttl, e.tags, e.err
}

// loaded is the outcome of one load, shared by everyone who waited for it.
type loaded[T any] struct {
	val T
	enc []byte // the envelope, so each waiter decodes a private copy
	err error
	// stale reports that an invalidation of the key ran during the load:
	// the value is not cached, and callers who joined the flight late must
	// not take it either.
	stale bool
	// checked is when the flight last confirmed with Redis that no
	// invalidation had happened (zero: it could not). A caller whose own
	// lookup began later missed for a newer reason and must not take it.
	checked time.Time
	// began is when the load began; without a check, only callers that
	// began before it may take its result.
	began time.Time
}

// usableBy reports whether a caller that did not run the load, and began
// its lookup at start, may return this result. A load that began after the
// caller did read the source after every invalidation that returned before
// the caller began, so its value is current for that caller whatever
// happened since. An older load's value is usable only up to the moment the
// flight last confirmed with Redis that nothing had invalidated it.
func (r *loaded[T]) usableBy(start time.Time) bool {
	if !r.began.IsZero() && !start.After(r.began) {
		return true
	}
	return !r.stale && !r.checked.IsZero() && !start.After(r.checked)
}

// Fetch returns the value under key, calling load to produce it on a miss
// and storing the result. Concurrent Fetches of one key in this process
// share a single load; each caller gets its own copy of the value. A caller
// whose ctx ends stops waiting at once, while the load goes on (on a context
// detached from the caller's, bounded by the load timeout) for the others.
//
// A loader error is returned and not cached; ErrNotFound from the loader is
// cached as a negative entry for the negative TTL. A loader panic is
// returned as a *PanicError (which matches ErrLoaderPanic). When Redis is down, slow or behind an open
// breaker, Fetch answers from the loader within the op timeout plus the
// loader's time. A load that began before a Delete of its key does not write
// its result back. A nil load returns ErrNilLoader.
func (c *Cache[T]) Fetch(ctx context.Context, key string, load func(context.Context) (T, error), opts ...WriteOption) (T, error) {
	var zero T
	if load == nil {
		return zero, ErrNilLoader
	}
	if ctx.Err() != nil {
		return zero, context.Cause(ctx)
	}
	start := monotonic()
	w, err := writeOptions(opts)
	if err != nil {
		return zero, fmt.Errorf("fetch %.64q: %w", key, err)
	}
	if t, ok := c.flying(key); ok && !c.m.covering(c.name, key, nil) {
		// A load of this key is under way here: join it rather than send
		// one more GET that would only miss (a stampede's 999 others).
		c.stats.joins.Add(1)
		v, err := c.share(ctx, start, t, load, w, true)
		if err != nil {
			return v, fmt.Errorf("fetch %.64q: %w", key, err)
		}
		return v, nil
	}
	v, f, err := c.lookup(ctx, key)
	switch {
	case err == nil:
		return c.serve(ctx, v, f, load, w), nil
	case errors.Is(err, ErrNotFound), errors.Is(err, ErrClosed):
		return zero, fmt.Errorf("fetch %.64q: %w", key, err)
	case ctx.Err() != nil:
		return zero, context.Cause(ctx)
	case errors.Is(err, errPendingMiss):
		// What Redis holds may be what the invalidation retires, and a
		// load shared with callers who began earlier may be too: load
		// afresh, and leave Redis alone until the invalidation lands.
		v, _, err := c.callLoader(ctx, &Entry{}, load)
		if err != nil {
			return zero, fmt.Errorf("fetch %.64q: %w", key, err)
		}
		return v, nil
	}
	v, err = c.share(ctx, start, target{key: key, rkey: f.rkey, version: f.version}, load, w, !errors.Is(err, ErrUnavailable))
	if err != nil {
		return v, fmt.Errorf("fetch %.64q: %w", key, err)
	}
	return v, nil
}

// share runs one load per key in this process and hands its result to
// every caller. The load runs on a goroutine the Manager owns, so a caller
// can leave on ctx.Done without cancelling the load for the others. A caller
// that joined a flight which an invalidation overtook joins the next one,
// which began after the caller did: it waits for at most one load that
// began after it, and never returns a value an invalidation retired before
// it began.
func (c *Cache[T]) share(ctx context.Context, start time.Time, t target, load func(context.Context) (T, error), w writeConfig, redisOK bool) (T, error) {
	var zero T
	for {
		var ran bool
		if r := c.recentResult(t.rkey, start); r != nil {
			return c.own(r)
		}
		flight := func() (any, error) {
			ran = true
			c.flights.Add(1)
			c.inflight.Store(t.rkey, struct{}{})
			defer func() {
				c.inflight.Delete(t.rkey)
				c.flights.Add(-1)
			}()
			r := c.loadAndStore(ctx, t, load, w, redisOK)
			c.remember(t.rkey, r)
			return r, nil
		}
		var r *loaded[T]
		if ctx.Done() == nil {
			// The caller cannot leave early: wait on its own goroutine.
			v, _, _ := c.group.Do(t.rkey, flight)
			r = v.(*loaded[T])
		} else {
			ch := make(chan *loaded[T], 1)
			if !c.m.goTracked(func() {
				v, _, _ := c.group.Do(t.rkey, flight)
				ch <- v.(*loaded[T])
			}) {
				return zero, ErrClosed
			}
			select {
			case r = <-ch:
			case <-ctx.Done():
				return zero, context.Cause(ctx)
			}
		}
		if !ran && !r.usableBy(start) {
			if c.m.done.Load() {
				return zero, ErrClosed
			}
			// The namespace version may have moved: the next flight is
			// keyed by the one this process knows now.
			t = c.target(t.key)
			continue
		}
		if ran {
			if r.err != nil {
				return zero, r.err
			}
			return r.val, nil
		}
		return c.own(r)
	}
}

// own returns a shared result to a caller that did not run its load: the
// error, or a private copy of the value.
func (c *Cache[T]) own(r *loaded[T]) (T, error) {
	var zero T
	if r.err != nil {
		return zero, r.err
	}
	if r.enc == nil {
		return r.val, nil
	}
	var own T
	if _, _, err := c.m.decode(r.enc, c.codec, c.shape, &own); err != nil {
		return r.val, nil
	}
	return own, nil
}

// recentSlots is how many finished flights a cache remembers (by hash of
// the data key; a newer flight replaces an older one in its slot).
const recentSlots = 64

// recentFlight is a finished flight, remembered for the callers whose own
// lookup was still under way when it finished: in a stampede on a slow
// Redis those lookups time out after the flight has ended, and each would
// otherwise start a load of its own.
type recentFlight[T any] struct {
	rkey string
	r    *loaded[T]
	at   time.Time
}

// remember keeps r, the result of a flight of rkey that confirmed with
// Redis (only such a result can serve a caller that began after its load).
func (c *Cache[T]) remember(rkey string, r *loaded[T]) {
	if r.checked.IsZero() || r.stale {
		return
	}
	kept := *r
	if kept.enc != nil {
		var zero T
		kept.val = zero // callers decode their copy from enc; hold only the bytes
	}
	c.recent[maphash.String(c.recentSeed, rkey)%recentSlots].Store(&recentFlight[T]{rkey: rkey, r: &kept, at: monotonic()})
}

// recentResult returns a remembered flight of rkey that a caller which
// began at start may take (see loaded.usableBy): one that confirmed with
// Redis after the caller began, within an op timeout of now.
func (c *Cache[T]) recentResult(rkey string, start time.Time) *loaded[T] {
	f := c.recent[maphash.String(c.recentSeed, rkey)%recentSlots].Load()
	if f == nil || f.rkey != rkey || time.Since(f.at) > c.m.opTimeout || !f.r.usableBy(start) {
		return nil
	}
	return f.r
}

// target is the key a flight loads: the user's key, its data key and the
// namespace version that data key is in ("" when not versioned).
type target struct {
	key, rkey, version string
}

// target returns the data key of key under the namespace version this
// process knows ("" when not versioned or not known yet: then the flight is
// keyed by the unversioned key, and never matches a versioned one).
func (c *Cache[T]) target(key string) target {
	if !c.versioned {
		return target{key: key, rkey: c.keys.Key(key)}
	}
	if p := c.version.Load(); p != nil {
		return target{key: key, rkey: c.keys.KeyAt(*p, key), version: *p}
	}
	return target{key: key, rkey: c.keys.Key(key)}
}

// flying reports whether this process is loading key, and what.
func (c *Cache[T]) flying(key string) (target, bool) {
	if c.flights.Load() == 0 {
		return target{}, false
	}
	t := c.target(key)
	if c.versioned && t.version == "" {
		return t, false
	}
	_, ok := c.inflight.Load(t.rkey)
	return t, ok
}

// loadAndStore claims the key (its invalidation marker, and the lease that
// keeps other processes from loading it too), calls the loader and writes
// the result back only if the marker has not changed, so a Delete that ran
// during the load wins. A tagged result is stamped with the load's start,
// so an InvalidateTags during the load makes it unreadable.
func (c *Cache[T]) loadAndStore(ctx context.Context, t target, load func(context.Context) (T, error), w writeConfig, redisOK bool) *loaded[T] {
	ctx = context.WithoutCancel(ctx)
	began := monotonic()
	st := storeRequest{key: t.key, version: t.version, rkey: t.rkey, start: c.m.now(), tags: w.tags}
	if redisOK && (!c.versioned || t.version != "") {
		if r := c.claimLoad(ctx, &st); r != nil {
			return r
		}
	}
	entry := &Entry{}
	v, took, err := c.callLoader(ctx, entry, load)
	r := c.store(ctx, st, v, took, err, entry, w)
	r.began = began
	if st.uncertain != "" {
		c.releaseLater(st.rkey, st.uncertain)
	}
	return r
}

// loadStamp is the tag stamp of a load, in Unix µs: an InvalidateTags
// stamped at or after it makes the result unreadable. It is the Redis
// server's time when the load claimed its key (serverUS), the clock
// InvalidateTags stamps by; on a Cluster, whose masters keep clocks of their
// own, less the skew allowance. Without a server time it is the process's
// clock at start less the allowance.
func (c *Cache[T]) loadStamp(serverUS int64, start time.Time) int64 {
	if serverUS > 0 {
		return serverUS - c.m.serverSkew().Microseconds()
	}
	return start.Add(-c.m.skew).UnixMicro()
}

// storeRequest is what a load learned from Redis before it began.
type storeRequest struct {
	key      string // the user's key, for the L1 tier
	version  string // the namespace version of rkey
	rkey     string
	start    time.Time // when the load began, by the Manager's clock
	marker   string    // invalidation marker before the load
	markerOK bool      // marker read: the result may be written back
	markerAt time.Time // when it was read (monotonic)
	token    string    // lease held, released by the write-back; "" none
	replace  string    // SHA-1 of the stale value a refresh replaces; "" write only if absent
	refresh  bool      // a background refresh: keep the lease after a failure
	tags     []string  // tags known before the load (the Tags option)
	epoch    string    // the tag epoch when the load began (keys.TagEpoch)
	epochOK  bool      // epoch was read
	serverUS int64     // the server's time at the claim, Unix µs; 0 unknown
	// uncertain is the token of a lease claim whose reply never came: it
	// may have run, so the lease is released once Redis answers again.
	uncertain string
}
