package cachemgr

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"hash/maphash"
	"strconv"
	"sync"
	"sync/atomic"
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
	// current is the value the write-back found in Redis instead of
	// writing (a Set or another process's load arrived first; or an
	// invalidation ran and a newer value followed it), read at checked in
	// the namespace version current then: what a caller that began by
	// checked would have read itself.
	current string
	// settled, when not nil, closes once the write-back has landed or
	// failed: stale, checked and current are read only after it. The
	// value and error are there from the start, for the callers that
	// began before the load (began).
	settled chan struct{}
}

// settle waits until r's write-back has settled, or ctx ends.
func (r *loaded[T]) settle(ctx context.Context) error {
	if r.settled == nil {
		return nil
	}
	select {
	case <-r.settled:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// usableBy reports whether a caller that did not run the load, and began
// its lookup at start, may return this result. A load that began after the
// caller did read the source after every invalidation that returned before
// the caller began, so its value is current for that caller whatever
// happened since. An older load's value is usable only up to the moment the
// flight last confirmed with Redis that nothing had invalidated it.
func (r *loaded[T]) usableBy(start time.Time) bool {
	if r.beganAfter(start) {
		return true
	}
	return !r.stale && !r.checked.IsZero() && !start.After(r.checked)
}

// beganAfter reports whether r's load began after a caller that began at
// start did: then its result serves that caller whatever its write-back
// finds.
func (r *loaded[T]) beganAfter(start time.Time) bool {
	return !r.began.IsZero() && !start.After(r.began)
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
// its result back. The write-back is part of the call unless the cache has
// WithWriteBehind, which returns first. A nil load returns ErrNilLoader.
func (c *Cache[T]) Fetch(ctx context.Context, key string, load func(context.Context) (T, error), opts ...WriteOption) (T, error) {
	var zero T
	if load == nil {
		return zero, ErrNilLoader
	}
	if ctx.Err() != nil {
		return zero, context.Cause(ctx)
	}
	w, err := writeOptions(opts)
	if err != nil {
		return zero, fmt.Errorf("fetch %.64q: %w", key, err)
	}
	c.awaitWriteBack(ctx, key)
	// An L1 hit answers before any of the bookkeeping of loads and shared
	// lookups below: it needs none of it.
	if v, err, ok := c.lookupL1(ctx, key); ok {
		if err != nil {
			return zero, fmt.Errorf("fetch %.64q: %w", key, err)
		}
		return v, nil
	}
	// The caller begins here for every rule about which loads may serve
	// it; taken after the L1 tier, it is later than the call itself, which
	// only narrows what may.
	start := monotonic()
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
	if c.claimsFirst(key) {
		// Cold lookups of this cache have mostly missed: the flight's
		// claim, which reads the key and takes the lease in one script,
		// is the lookup, one round trip fewer on a miss.
		t := c.target(key)
		t.first = true
		v, err := c.share(ctx, start, t, load, w, true)
		if err != nil {
			return v, fmt.Errorf("fetch %.64q: %w", key, err)
		}
		return v, nil
	}
	lk, mine := c.startLookup(key)
	if !mine {
		// Another caller's lookup of this cold key is under way: wait for
		// it rather than add one more GET to the burst.
		v, err, shared := c.joinLookup(ctx, start, key, lk, load, w)
		if shared {
			return v, err
		}
	}
	v, f, err := c.lookup(ctx, key)
	if mine && lk != nil {
		c.endLookup(key, lk, f, err, ctx.Err() == nil)
		c.noteCold(err == nil || errors.Is(err, ErrNotFound), errors.Is(err, ErrMiss))
	}
	switch {
	case err == nil:
		c.noteHit(key)
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

// joinLookup waits for lk, another caller's lookup of key. If it missed,
// the load that follows begins after this caller did, so the caller shares
// it (shared true, with its outcome). If it found a value, read perhaps
// before this caller began, or an invalidation of this process is still
// pending for the key, the caller looks up on its own (shared false).
func (c *Cache[T]) joinLookup(ctx context.Context, start time.Time, key string, lk *sharedLookup, load func(context.Context) (T, error), w writeConfig) (T, error, bool) {
	var zero T
	select {
	case <-lk.done:
	case <-ctx.Done():
		return zero, context.Cause(ctx), true
	}
	if !lk.missed || c.m.covering(c.name, key, nil) {
		return zero, nil, false
	}
	c.stats.joins.Add(1)
	v, err := c.share(ctx, start, lk.target, load, w, lk.redisOK)
	if err != nil {
		return v, fmt.Errorf("fetch %.64q: %w", key, err), true
	}
	return v, nil, true
}

// share runs one load per key in this process and hands its result to
// every caller. The load runs on a goroutine the Manager owns, so a caller
// can leave on ctx.Done without cancelling the load for the others. A caller
// that joined a flight which may have begun before it did leaves it as soon
// as an invalidation of the key lands here (this process's, see overtake)
// and joins the next one, which begins then, after the caller did: it waits
// for at most one load that began after it, and never returns a value an
// invalidation retired before it began.
func (c *Cache[T]) share(ctx context.Context, start time.Time, t target, load func(context.Context) (T, error), w writeConfig, redisOK bool) (T, error) {
	var zero T
	for {
		var ran bool
		if v, err, ok := c.sharedResult(c.recentResult(t.rkey), start); ok {
			return v, err
		}
		f := c.flightFor(t.rkey)
		run := func() (any, error) {
			if r := f.res.Load(); r != nil {
				// The flight's load has ended and its write-back is under
				// way: its result, not a second load.
				return r, nil
			}
			ran = true
			now := monotonic()
			f.began.CompareAndSwap(nil, &now)
			c.flights.Add(1)
			c.inflight.LoadOrStore(t.rkey, f)
			r := c.loadAndStore(ctx, t, load, w, redisOK, f.token, func(out []*loaded[T]) {
				// The write-back has settled: the flight ends.
				c.remember(t.rkey, out[0])
				c.inflight.CompareAndDelete(t.rkey, f)
				c.flights.Add(-1)
				close(f.ended)
			})
			f.res.Store(r)
			return r, nil
		}
		// A flight whose load began before this caller did is left when an
		// invalidation overtakes it: its result would not serve the caller,
		// and the next flight starts now rather than when it ends.
		var over chan struct{}
		if f.created.Before(start) {
			over = f.over
		}
		var r *loaded[T]
		if ctx.Done() == nil && over == nil {
			// The caller cannot leave early: wait on its own goroutine.
			v, _, _ := c.group.Do(f.groupKey(t.rkey), run)
			r = v.(*loaded[T])
		} else {
			ch := make(chan *loaded[T], 1)
			if !c.m.goTracked(func() {
				v, _, _ := c.group.Do(f.groupKey(t.rkey), run)
				ch <- v.(*loaded[T])
			}) {
				return zero, ErrClosed
			}
			var err error
			if r, err = waitFlight(ctx, f, ch, over, start); err != nil {
				return zero, err
			}
			if r == nil {
				continue // overtaken: the next flight
			}
		}
		if ran {
			if r.err != nil {
				return zero, r.err
			}
			return r.val, nil
		}
		if err := r.settle(ctx); err != nil && !r.beganAfter(start) {
			return zero, err
		}
		if v, err, ok := c.sharedResult(r, start); ok {
			return v, err
		}
		if c.m.done.Load() {
			return zero, ErrClosed
		}
		// The namespace version may have moved: the next flight is keyed
		// by the one this process knows now.
		t = c.target(t.key)
	}
}

// sharedResult returns r, a flight's result, to a caller that did not run
// its load and began at start, when it may take it: the value loaded (see
// loaded.usableBy) or the one the write-back found (see current).
func (c *Cache[T]) sharedResult(r *loaded[T], start time.Time) (T, error, bool) {
	var zero T
	switch {
	case r == nil:
		return zero, nil, false
	case r.usableBy(start):
		v, err := c.own(r)
		return v, err, true
	}
	v, ok := c.current(r, start)
	return v, nil, ok
}

// current returns the value a flight's write-back found in Redis, to a
// caller that began before the write-back read it, as a private copy. It
// declines a tagged or negative value (their checks need Redis again), one
// past its fresh time, and one that does not decode: the caller then takes
// the next flight, which reads Redis itself.
func (c *Cache[T]) current(r *loaded[T], start time.Time) (T, bool) {
	var v T
	if r.current == "" || r.checked.IsZero() || start.After(r.checked) {
		return v, false
	}
	h, ti, err := c.m.decode([]byte(r.current), c.codec, c.shape, &v)
	if err != nil || len(ti.tags) > 0 || h.Negative || c.m.now().UnixMilli() >= h.FreshUntil {
		var zero T
		return zero, false
	}
	return v, true
}

// own returns a shared result to a caller that did not run its load: the
// error, or a private copy of the value (the value itself for a T that
// assignment copies whole, a decode of the envelope otherwise).
func (c *Cache[T]) own(r *loaded[T]) (T, error) {
	var zero T
	if r.err != nil {
		return zero, r.err
	}
	if r.enc == nil || c.byValue {
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

// remember keeps r, the result of a flight of rkey, unless an invalidation
// overtook it or the loader failed (the next caller tries again). One that
// could not confirm with Redis still serves the callers that began before
// its load did (see loaded.usableBy): in a stampede on a Redis too slow for
// the op timeout, those are the callers whose lookups time out after the
// load ended.
func (c *Cache[T]) remember(rkey string, r *loaded[T]) {
	if r.current == "" && (r.stale || r.err != nil && !errors.Is(r.err, ErrNotFound) || r.checked.IsZero() && r.began.IsZero()) {
		return
	}
	kept := *r
	if kept.enc != nil && !c.byValue {
		var zero T
		kept.val = zero // callers decode their copy from enc; hold only the bytes
	}
	c.recent[maphash.String(c.recentSeed, rkey)%recentSlots].Store(&recentFlight[T]{rkey: rkey, r: &kept, at: monotonic()})
}

// recentWindow is how long a finished flight is remembered: long enough
// for the lookups that were under way when it finished to end (an op
// timeout, or a second for the scheduling delays of a busy machine), short
// enough that the slots do not hold values for long. Which callers may take
// a remembered result is decided by loaded.usableBy, not by this window.
func (m *Manager) recentWindow() time.Duration { return max(m.opTimeout, time.Second) }

// recentResult returns the remembered flight of rkey, within recentWindow;
// which callers may take it is sharedResult's to decide.
func (c *Cache[T]) recentResult(rkey string) *loaded[T] {
	f := c.recent[maphash.String(c.recentSeed, rkey)%recentSlots].Load()
	if f == nil || f.rkey != rkey || time.Since(f.at) > c.m.recentWindow() {
		return nil
	}
	return f.r
}

// target is the key a flight loads: the user's key, its data key and the
// namespace version that data key is in ("" when not versioned).
type target struct {
	key, rkey, version string
	// first: the flight's claim is the caller's lookup (claimsFirst); no
	// read of the key went before it.
	first bool
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

// flight is a load of one data key in this process, from the moment its
// first caller chose it until it ends.
type flight struct {
	gen     uint64    // unique among the cache's flights (flightGen)
	created time.Time // before its load began
	// token is the lease token that the key's flights here share: a flight
	// that starts while an overtaken one still holds the lease takes it
	// over instead of waiting for it (see claimScript).
	token string
	over  chan struct{} // closed when an invalidation of the key overtakes it
	once  sync.Once
	began atomic.Pointer[time.Time] // when its load began; nil: not yet
	// res is the load's result (a *loaded[T]) once the loader has
	// returned; its write-back may still be under way.
	res atomic.Value
	// ended closes when the write-back has settled and the flight has
	// left the cache's inflight map.
	ended chan struct{}
}

// waitFlight waits for ch, the result of f, for a caller that began at start: nil
// when an invalidation overtook f (over, nil if that does not matter) and
// f's load began before the caller did, so the caller must take the next
// flight. A load that had not begun, or began after the caller, serves it
// whatever overtakes it.
func waitFlight[T any](ctx context.Context, f *flight, ch <-chan *loaded[T], over <-chan struct{}, start time.Time) (*loaded[T], error) {
	select {
	case r := <-ch:
		return r, nil
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	case <-over:
		if b := f.began.Load(); b != nil && b.Before(start) {
			return nil, nil
		}
	}
	select {
	case r := <-ch:
		return r, nil
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
}

// overtake marks f as overtaken by an invalidation of its key.
func (f *flight) overtake() { f.once.Do(func() { close(f.over) }) }

// overtaken reports whether an invalidation overtook f.
func (f *flight) overtaken() bool {
	select {
	case <-f.over:
		return true
	default:
		return false
	}
}

// groupKey is f's key in the cache's singleflight group.
func (f *flight) groupKey(rkey string) string {
	return rkey + "\x00" + strconv.FormatUint(f.gen, 10)
}

// flightFor returns the flight of rkey a caller joins: the one under way,
// unless an invalidation overtook it; then, or when there is none, a new
// one, which begins after the caller did.
func (c *Cache[T]) flightFor(rkey string) *flight {
	for {
		cur, ok := c.inflight.Load(rkey)
		if !ok {
			f := &flight{gen: c.flightGen.Add(1), created: monotonic(), token: rand.Text(), over: make(chan struct{}), ended: make(chan struct{})}
			if _, loaded := c.inflight.LoadOrStore(rkey, f); !loaded {
				return f
			}
			continue
		}
		old := cur.(*flight)
		if !old.overtaken() {
			return old
		}
		f := &flight{gen: c.flightGen.Add(1), created: monotonic(), token: old.token, over: make(chan struct{}), ended: make(chan struct{})}
		if c.inflight.CompareAndSwap(rkey, old, f) {
			return f
		}
	}
}

// overtake tells the flights of keys under way here that an invalidation
// of their key has landed: their callers that began after them move to a
// new flight at once.
func (c *Cache[T]) overtake(keys []string) {
	if c.flights.Load() == 0 {
		return
	}
	for _, k := range keys {
		if cur, ok := c.inflight.Load(c.target(k).rkey); ok {
			cur.(*flight).overtake()
		}
	}
}

// awaitWriteBack waits, when this process has loaded key and the load's
// write-back is still under way (see store), until it settles or ctx ends:
// a read in this process that begins after a Fetch of key returned then
// finds what that Fetch wrote, in the L1 tier or in Redis, as if the
// write-back had been part of the Fetch. A load still running is not
// waited for here.
func (c *Cache[T]) awaitWriteBack(ctx context.Context, key string) {
	if c.flights.Load() == 0 {
		return
	}
	cur, ok := c.inflight.Load(c.target(key).rkey)
	if !ok {
		return
	}
	if f := cur.(*flight); f.res.Load() != nil {
		select {
		case <-f.ended:
		case <-ctx.Done():
		}
	}
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

// hotSlots is how many keys a cache remembers as recently found (by hash;
// a newer key replaces an older one in its slot).
const hotSlots = 256

// noteHit remembers that key was found, so its next lookups go out at
// once: sharing a lookup (startLookup) is for cold keys, where a burst of
// callers would all miss.
func (c *Cache[T]) noteHit(key string) {
	h := maphash.String(c.recentSeed, key) | 1 // 0 marks an empty slot
	if s := &c.hot[h%hotSlots]; s.Load() != h {
		s.Store(h)
	}
}

// isHot reports whether key was found recently (noteHit).
func (c *Cache[T]) isHot(key string) bool {
	h := maphash.String(c.recentSeed, key) | 1
	return c.hot[h%hotSlots].Load() == h
}

// sharedLookup is a lookup of a cold key that concurrent Fetches of the key
// wait for instead of sending their own.
type sharedLookup struct {
	done    chan struct{}
	missed  bool   // the key is not in Redis (or Redis did not answer)
	redisOK bool   // Redis answered
	target  target // what a load of the key writes
}

// startLookup returns the lookup of key under way, or starts one (mine):
// its caller must end it with endLookup. Keys found recently (noteHit) are
// not shared: their concurrent readers each read at once. nil, true means
// the lookup is not shared.
func (c *Cache[T]) startLookup(key string) (*sharedLookup, bool) {
	if c.isHot(key) {
		return nil, true
	}
	lk := &sharedLookup{done: make(chan struct{})}
	if cur, loaded := c.lookups.LoadOrStore(key, lk); loaded {
		return cur.(*sharedLookup), false
	}
	return lk, true
}

// endLookup publishes the outcome of a shared lookup of key to its waiters:
// a miss (with the target a load would write, and whether Redis answered),
// or anything else, after which each waiter looks up on its own. A caller
// that left (ok false) publishes nothing to share.
func (c *Cache[T]) endLookup(key string, lk *sharedLookup, f found, err error, ok bool) {
	c.lookups.CompareAndDelete(key, lk)
	if ok && err != nil && !f.l1 && !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrClosed) && !errors.Is(err, errPendingMiss) {
		lk.missed, lk.redisOK = true, !errors.Is(err, ErrUnavailable)
		lk.target = target{key: key, rkey: f.rkey, version: f.version}
	}
	close(lk.done)
}

// loadAndStore claims the key (its invalidation marker, and the lease that
// keeps other processes from loading it too), calls the loader and writes
// the result back only if the marker has not changed, so a Delete that ran
// during the load wins. A tagged result is stamped with the load's start,
// so an InvalidateTags during the load makes it unreadable.
func (c *Cache[T]) loadAndStore(ctx context.Context, t target, load func(context.Context) (T, error), w writeConfig, redisOK bool, token string, then func([]*loaded[T])) *loaded[T] {
	ctx = context.WithoutCancel(ctx)
	began := monotonic()
	st := storeRequest{key: t.key, version: t.version, rkey: t.rkey, start: c.m.now(), began: began, tags: w.tags, lease: token, first: t.first}
	if redisOK && (!c.versioned || t.version != "") {
		r := c.claimLoad(ctx, &st)
		if t.first {
			c.countFirst(ctx, t.key, r, st.markerOK)
		}
		if r != nil {
			then([]*loaded[T]{r})
			return r
		}
	}
	entry := &Entry{}
	v, took, err := c.callLoader(ctx, entry, load)
	r := c.store(ctx, st, v, took, err, entry, w, then)
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
	began    time.Time // the same, monotonic (zero: not a load by key)
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
	// lease is the lease token to claim with ("": a new one).
	lease string
	// first: the claim is the lookup (claimsFirst): sent once, and
	// without its reply the load is not written back.
	first bool
}

// noteClaimLost prepares the write-back of a load whose claim got no reply
// (it timed out, or was never sent). The claim ran before the load began,
// if at all. If it ran, it set the marker to proposal where the key had
// none, and an invalidation since then replaces it; a claim that never ran
// left no such marker (proposal is random). So the write-back, which
// requires the marker to be proposal, succeeds only when the claim ran on
// a key without a marker and nothing invalidated the key since: then the
// result is as good as one whose claim answered, and the callers that
// began before the write-back may take it. Otherwise the write-back finds
// another marker and the result is not cached, as before. (The tag stamp
// of such a load is the process's clock at its start, less the skew
// allowance, as without a server time.)
func (st *storeRequest) noteClaimLost(proposal string) {
	st.marker, st.markerOK, st.markerAt = proposal, true, monotonic()
}
