package cachemgr

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"hash/maphash"
	"reflect"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/cachemgr/cachemgr/codec"
	"github.com/cachemgr/cachemgr/internal/envelope"
	"github.com/cachemgr/cachemgr/internal/keys"
	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/singleflight"
)

// Cache is a typed namespace of a Manager: every key of a Cache[T] holds a
// T. Create it with NewCache; it is safe for concurrent use and needs no
// closing of its own.
type Cache[T any] struct {
	m         *Manager
	name      string
	keys      keys.Builder
	codec     codec.Codec
	shape     uint32 // fingerprint of T's shape (see shapeOf)
	ttl       ttlPolicy
	versioned bool
	version   atomic.Pointer[string] // last namespace version seen
	swr       swrPolicy
	// writeBehind: a Fetch miss's write-back leaves the caller's path
	// (WithWriteBehind).
	writeBehind bool
	group       singleflight.Group
	// refreshing holds the data keys this process is refreshing.
	refreshing sync.Map
	// inflight holds the flight (*flight) of each data key this process is
	// loading; flights counts the loads running, so hits skip the map.
	inflight  sync.Map
	flights   atomic.Int64
	flightGen atomic.Uint64 // numbers the flights (see flight.gen)
	l1        *l1Store[T]   // nil without an L1 tier
	l1Copy    bool          // L1Copy: each hit decodes its own value
	// byValue: assigning a T copies all of it (copiedByValue), so the
	// callers of a shared load take the value, not a decode of their own.
	byValue bool
	// lookups holds the shared lookups of cold keys under way (see
	// startLookup); hot holds the hashes of keys found recently.
	lookups sync.Map
	hot     [hotSlots]atomic.Uint64
	// coldScore rises with cold lookups that miss and falls with those
	// that hit (see claimsFirst).
	coldScore atomic.Int32
	// recent remembers finished flights (see recentFlight).
	recent     [recentSlots]atomic.Pointer[recentFlight[T]]
	recentSeed maphash.Seed
	stats      *counters // this cache name's (Cache.Stats)
	// loader and batchLoader are the cache's loaders (nil: none).
	loader      Loader[T]
	batchLoader BatchLoader[T]
}

type cacheConfig struct {
	ttl       ttlPolicy
	codec     codec.Codec
	versioned bool
	swr       swrPolicy
	// writeBehind takes a Fetch miss's write-back off the caller's path
	// (WithWriteBehind).
	writeBehind bool
	// loader and batchLoader are a Loader[T] and BatchLoader[T], checked
	// against the cache's T by NewCache.
	loader, batchLoader any
	l1                  l1Config
}

// CacheOption configures NewCache.
type CacheOption func(*cacheConfig) error

// WithCacheCodec sets the codec of one cache, overriding the Manager's:
// codec.Raw() for a Cache[[]byte] or Cache[string] skips encoding
// altogether. Default: the Manager's codec.
func WithCacheCodec(cd codec.Codec) CacheOption {
	return func(c *cacheConfig) error {
		if cd == nil || cd.ID() == 0 {
			return fmt.Errorf("%w: nil codec or codec ID 0", ErrInvalidOption)
		}
		c.codec = cd
		return nil
	}
}

// NewCache returns the cache called name on m. The name becomes part of
// every key ("prefix:name:…"): it must be non-empty, at most 128 bytes, with
// no colon or brace. Caches of one name share their keys: NewCache refuses
// (ErrInvalidOption) a second name with another type on the same Manager,
// but cannot see other processes, so give each type its own name.
func NewCache[T any](m *Manager, name string, opts ...CacheOption) (*Cache[T], error) {
	if m == nil {
		return nil, fmt.Errorf("%w: nil manager", ErrInvalidOption)
	}
	if m.done.Load() {
		return nil, ErrClosed
	}
	if err := keys.ValidateName(name); err != nil {
		return nil, invalidOption(err)
	}
	cfg := cacheConfig{
		ttl:   ttlPolicy{ttl: time.Minute, jitter: 0.1, negativeTTL: 10 * time.Second},
		codec: m.codec,
		swr:   swrPolicy{lease: 5 * time.Second},
	}
	for _, opt := range opts {
		if opt == nil {
			return nil, fmt.Errorf("%w: nil option", ErrInvalidOption)
		}
		if err := opt(&cfg); err != nil {
			return nil, err
		}
	}
	one, many, err := loaders[T](cfg)
	if err != nil {
		return nil, err
	}
	if err := m.claimName(name, reflect.TypeFor[T]()); err != nil {
		return nil, err
	}
	m.noteLifetime(time.Duration(float64(max(cfg.ttl.ttl, cfg.ttl.negativeTTL))*(1+cfg.ttl.jitter)) + cfg.swr.stale)
	c := &Cache[T]{
		m:           m,
		name:        name,
		keys:        keys.New(m.prefix, name, m.maxKey),
		codec:       cfg.codec,
		shape:       Shape[T](),
		byValue:     copiedByValue(reflect.TypeFor[T]()),
		ttl:         cfg.ttl,
		versioned:   cfg.versioned,
		swr:         cfg.swr,
		writeBehind: cfg.writeBehind,
		recentSeed:  maphash.MakeSeed(),
		stats:       m.countersOf(name),
		loader:      one,
		batchLoader: many,
	}
	entries, maxBytes := m.l1Size, m.l1Bytes
	if cfg.l1.set {
		entries, maxBytes = cfg.l1.entries, cfg.l1.bytes
	}
	if entries > 0 || maxBytes > 0 {
		c.l1 = newL1[T](entries, maxBytes, &c.stats.l1Evictions, m.now)
		c.l1Copy = cfg.l1.isolation == L1Copy
		m.addHolder(c)
	}
	return c, nil
}

// Name returns the cache's name.
func (c *Cache[T]) Name() string { return c.name }

// Manager returns the Manager the cache belongs to.
func (c *Cache[T]) Manager() *Manager { return c.m }

// WriteOption configures one Set or Fetch.
type WriteOption func(*writeConfig)

type writeConfig struct {
	ttl  time.Duration
	tags []string
	err  error
}

// TTL sets how long this one value stays fresh, overriding the cache's
// WithTTL (jitter still applies). It must be positive and at most MaxTTL;
// anything else makes the call return ErrInvalidTTL (and ErrInvalidOption). Durations below a
// millisecond are rounded up to one.
func TTL(d time.Duration) WriteOption {
	return func(w *writeConfig) {
		if err := checkTTL(d); err != nil {
			w.err = invalidOption(err)
			return
		}
		w.ttl = d
	}
}

// writeOptions applies opts. Without any it returns at once: the config
// that options write through escapes to the heap, and a Fetch served by the
// L1 tier allocates nothing.
func writeOptions(opts []WriteOption) (writeConfig, error) {
	if len(opts) == 0 {
		return writeConfig{}, nil
	}
	return applyWriteOptions(opts)
}

// applyWriteOptions is writeOptions with options.
func applyWriteOptions(opts []WriteOption) (writeConfig, error) {
	var w writeConfig
	for _, opt := range opts {
		if opt != nil {
			opt(&w)
		}
	}
	if w.err == nil {
		w.tags, w.err = checkTags(w.tags)
	}
	return w, w.err
}

// Get returns the value stored under key. A key that holds nothing returns
// ErrMiss; a cached negative entry returns ErrNotFound; a stored value that
// does not decode, or that an invalidation (Delete, Bump, InvalidateTags)
// made stale, is a miss too. When Redis fails, times out or the breaker is
// open, Get returns an error wrapping ErrUnavailable within the op timeout.
func (c *Cache[T]) Get(ctx context.Context, key string) (T, error) {
	v, _, err := c.lookup(ctx, key)
	if err != nil {
		return v, fmt.Errorf("get %.64q: %w", key, err)
	}
	return v, nil
}

// found is what a lookup read.
type found struct {
	key     string // the user's key
	rkey    string // the data key, in the namespace version read
	version string // that version ("" when not versioned)
	raw     string // the stored bytes
	h       envelope.Header
	l1      bool // answered by the L1 tier: no Redis, nothing to refresh
}

// lookup reads and decodes key, counting hits and misses. The error is
// ErrMiss, ErrNotFound, ErrUnavailable, ErrClosed or the caller's ctx
// error, possibly wrapping a cause.
func (c *Cache[T]) lookup(ctx context.Context, key string) (T, found, error) {
	c.awaitWriteBack(ctx, key)
	if c.m.covering(c.name, key, nil) {
		var zero T
		c.missed(ctx)
		return zero, found{key: key}, errPendingMiss
	}
	if v, err, ok := c.lookupL1(ctx, key); ok {
		return v, found{l1: true}, err
	}
	return c.lookupRedis(ctx, key)
}

// lookupL1 is lookup's L1 tier: ok reports that it answered, with the value
// or ErrNotFound (a cached negative entry). An entry that a pending
// invalidation covers (its key or one of its tags) does not answer.
func (c *Cache[T]) lookupL1(ctx context.Context, key string) (T, error, bool) {
	var zero T
	if c.l1 == nil || !c.m.l1Trusted.Load() {
		return zero, nil, false
	}
	e, ok := c.l1.get(key, c.l1.now())
	if !ok || e.version != c.localVersionOrEmpty() || c.m.covering(c.name, key, e.tags) {
		return zero, nil, false
	}
	v, ok := c.l1Value(e)
	if !ok {
		return zero, nil, false
	}
	c.hitL1(ctx)
	if e.negative {
		c.stats.negativeHits.Add(1)
		return v, ErrNotFound, true
	}
	return v, nil, true
}

// lookupRedis is lookup's Redis tier.
func (c *Cache[T]) lookupRedis(ctx context.Context, key string) (T, found, error) {
	var v T
	fill := c.l1Token()
	t, s, err := c.read(ctx, key)
	rkey := t.rkey
	f := found{key: key, rkey: rkey, version: t.version, raw: s}
	if err != nil {
		switch {
		case errors.Is(err, redis.Nil):
			c.missed(ctx)
			return v, f, ErrMiss
		case isReply(err):
			// WRONGTYPE and the like: not ours to delete.
			c.missed(ctx)
			return v, f, fmt.Errorf("%w: %w", ErrMiss, err)
		}
		return v, f, err
	}
	// The reply string is never written to; decode only reads it.
	h, ti, err := c.m.decode(unsafe.Slice(unsafe.StringData(s), len(s)), c.codec, c.shape, &v)
	f.h = h
	if err == nil && len(ti.tags) > 0 && c.m.covering(c.name, key, ti.tags) {
		var zero T
		c.missed(ctx)
		return zero, f, errPendingMiss
	}
	if err == nil && len(ti.tags) > 0 {
		err = c.m.checkTags(ctx, ti)
	}
	if err != nil {
		var zero T
		if errors.Is(err, ErrUnavailable) || ctx.Err() != nil {
			return zero, f, err
		}
		return zero, f, c.unusable(ctx, rkey, s, err, true)
	}
	c.hit(ctx, fill, key, t.version, s, h, ti)
	if h.Negative {
		return v, f, ErrNotFound
	}
	return v, f, nil
}

// hit counts a Redis-tier hit and keeps a copy in the L1 tier, read by a
// reader that took token fill before sending the read.
func (c *Cache[T]) hit(ctx context.Context, fill uint64, key, version, raw string, h envelope.Header, ti tagInfo) {
	c.stats.hits.Add(1)
	if h.Negative {
		c.stats.negativeHits.Add(1)
	}
	if c.m.obs != nil {
		c.m.obs.Hit(ctx, c.name, false, c.m.now().UnixMilli() >= h.FreshUntil)
	}
	c.fillL1(fill, key, version, raw, h, ti)
}

// l1Token is the token a reader takes before it sends a read whose reply
// may fill the L1 tier (see l1Store.token); 0 without an L1 tier.
func (c *Cache[T]) l1Token() uint64 {
	if c.l1 == nil {
		return 0
	}
	return c.l1.token()
}

// hitL1 counts a hit of the L1 tier.
func (c *Cache[T]) hitL1(ctx context.Context) {
	c.stats.hits.Add(1)
	c.stats.l1Hits.Add(1)
	if c.m.obs != nil {
		c.m.obs.Hit(ctx, c.name, true, false)
	}
}

// unusable handles stored bytes that cannot be served, undecodable or
// invalidated by a tag (err says which): it counts a miss (when miss),
// deletes them if unchanged, and returns the miss. An entry written for
// another shape of T is a miss but is not deleted.
func (c *Cache[T]) unusable(ctx context.Context, rkey, raw string, err error, miss bool) error {
	if errors.Is(err, errOtherShape) {
		// Another process's entry, good for its type: a miss here, and
		// left alone.
		c.stats.otherShape.Add(1)
		c.missedIf(ctx, miss)
		return fmt.Errorf("%w: %w", ErrMiss, err)
	}
	if errors.Is(err, errInvalidated) {
		c.stats.invalidated.Add(1)
	} else {
		c.stats.decodeErrors.Add(1)
	}
	c.missedIf(ctx, miss)
	c.drop(ctx, rkey, raw)
	return fmt.Errorf("%w: %w", ErrMiss, err)
}

// missed counts a miss.
func (c *Cache[T]) missed(ctx context.Context) {
	c.stats.misses.Add(1)
	if c.m.obs != nil {
		c.m.obs.Miss(ctx, c.name)
	}
}

// missedIf counts a miss if count: a warm read counts none.
func (c *Cache[T]) missedIf(ctx context.Context, count bool) {
	if count {
		c.missed(ctx)
	}
}

// localVersionOrEmpty is the namespace version an L1 entry must carry.
func (c *Cache[T]) localVersionOrEmpty() string {
	if p := c.version.Load(); p != nil {
		return *p
	}
	return ""
}

// fillL1 keeps a private decoded copy of a fresh value read from (or
// written to) Redis, until the L1 TTL or the end of its freshness, unless an
// invalidation of key reached this process after token fill was taken.
func (c *Cache[T]) fillL1(fill uint64, key, version, raw string, h envelope.Header, ti tagInfo) {
	if c.l1 == nil || !c.m.l1Trusted.Load() {
		return
	}
	life := min(c.m.l1TTL, time.Duration(h.FreshUntil*int64(time.Millisecond)-c.m.now().UnixNano()))
	if life <= 0 {
		return // stale: Redis and the refresh decide
	}
	e := &l1Entry[T]{key: key, version: version, negative: h.Negative, tags: ti.tags, expires: c.l1.now() + int64(life), size: entrySize(key, raw)}
	if !c.l1Copy && h.Compressor != 0 {
		// A decoded value is about as large as it was before compression.
		e.size += int64(h.RawLen)
	}
	if !c.l1.admits(e.size) {
		return
	}
	switch {
	case h.Negative:
	case c.l1Copy:
		e.raw = raw // immutable; each hit decodes its own value
	default:
		// Codecs do not retain what they decode from (codec.Codec).
		if _, _, err := c.m.decode(unsafe.Slice(unsafe.StringData(raw), len(raw)), c.codec, c.shape, &e.val); err != nil {
			return
		}
	}
	c.l1.put(e, fill)
}

// l1Value returns the value of L1 entry e: the shared value, or with L1Copy
// a private one decoded from the stored bytes. Those decoded when they were
// stored; should they not decode again, ok is false and the caller reads
// Redis.
func (c *Cache[T]) l1Value(e *l1Entry[T]) (T, bool) {
	if !c.l1Copy || e.negative {
		return e.val, true
	}
	return c.l1Decode(e)
}

// l1Decode decodes a private copy of e's value. It is apart from l1Value
// because the value it decodes into escapes to the heap: a shared hit
// allocates nothing.
func (c *Cache[T]) l1Decode(e *l1Entry[T]) (T, bool) {
	v := new(T)
	if _, _, err := c.m.decode(unsafe.Slice(unsafe.StringData(e.raw), len(e.raw)), c.codec, c.shape, v); err != nil {
		var zero T
		return zero, false
	}
	return *v, true
}

// invalidated applies an invalidation of keys to this process's L1 tier
// at once and tells the other processes.
func (c *Cache[T]) invalidated(ctx context.Context, keys ...string) error {
	if c.l1 != nil {
		c.dropKeys(keys)
	}
	c.overtake(keys)
	return c.m.publish(ctx, event{Kind: "key", Cache: c.name, Keys: keys})
}

func (c *Cache[T]) dropKeys(keys []string) {
	for _, k := range keys {
		c.l1.remove(k)
	}
}

func (c *Cache[T]) dropAll() { c.l1.clear() }

func (c *Cache[T]) dropTags(tags []string) {
	c.l1.removeIf(func(e *l1Entry[T]) bool {
		for _, t := range e.tags {
			for _, x := range tags {
				if t == x {
					return true
				}
			}
		}
		return false
	})
}

// read returns the stored bytes of key and the data key they came from.
// The error is the reply's (redis.Nil for a miss) or doAll's.
func (c *Cache[T]) read(ctx context.Context, key string) (target, string, error) {
	if !c.versioned {
		t := target{key: key, rkey: c.keys.Key(key)}
		s, err := c.m.getData(ctx, t.rkey)
		return t, s, err
	}
	if c.m.single {
		return c.readVersioned(ctx, key)
	}
	var cmd *redis.StringCmd
	t, moved, err := c.inVersion(ctx, key, false, func(rkey string) []redis.Cmder {
		cmd = redis.NewStringCmd(ctx, "get", rkey)
		return []redis.Cmder{cmd}
	})
	switch {
	case err != nil:
		return t, "", err
	case moved:
		return t, "", redis.Nil
	}
	return t, cmd.Val(), cmd.Err()
}

func (c *Cache[T]) drop(ctx context.Context, rkey, bad string) {
	if _, err := c.m.runScript(ctx, dropArgs{key: rkey, badSHA1: sha1hex(bad)}); err != nil && !errors.Is(err, ErrClosed) {
		c.m.logError("delete unusable value", err, "key", rkey)
	}
}

// Set stores v under key, replacing any value, fresh for the cache's TTL
// or the TTL option, carrying the Tags option's tags. It returns
// ErrTooLarge for a value over the Manager's size limit, ErrInvalidOption
// for a bad per-call option, and an error wrapping ErrUnavailable when Redis
// cannot take the write within the write timeout (WithWriteTimeout); the
// key's old value is then deleted as by a failed Delete: queued for retry,
// and not served by this process meanwhile.
func (c *Cache[T]) Set(ctx context.Context, key string, v T, opts ...WriteOption) error {
	if err := c.set(ctx, key, v, opts); err != nil {
		return fmt.Errorf("set %.64q: %w", key, err)
	}
	return nil
}

func (c *Cache[T]) set(ctx context.Context, key string, v T, opts []WriteOption) error {
	if c.m.done.Load() {
		return ErrClosed
	}
	w, err := writeOptions(opts)
	if err != nil {
		return err
	}
	now := c.m.now()
	exp := c.ttl.expiry(firstSet(w.ttl, c.ttl.ttl), c.m.random())
	// A tagged Set is stamped by the server's clock as it is stored (see
	// setCmd), the clock InvalidateTags stamps by: a Set just after an
	// InvalidateTags is readable, and one just before it is not.
	ti := tagInfo{stamp: now.UnixMicro(), tags: w.tags}
	buf, err := c.m.encode(c.codec, &v, envelope.Header{FreshUntil: now.Add(exp).UnixMilli(), Shape: c.shape}, ti)
	if err != nil {
		return err
	}
	c.m.noteLifetime(exp + c.swr.stale)
	var set redis.Cmder
	var tw []redis.Cmder
	_, _, err = c.inVersion(ctx, key, true, func(rkey string) []redis.Cmder {
		set = c.m.setCmd(ctx, rkey, *buf, millis(exp+c.swr.stale), len(ti.tags) > 0)
		tw = c.m.tagWrites(ctx, ti, exp, false)
		return append(tw, set)
	})
	c.releaseBuf(buf)
	if err == nil {
		err = set.Err()
	}
	for _, cmd := range tw {
		if err == nil {
			// An entry whose tag stamp could not be written is never
			// readable: report the write as failed.
			err = cmd.Err()
		}
	}
	if c.l1 != nil {
		c.dropKeys([]string{key})
	}
	if err != nil {
		// The old value may still be in Redis: it must go.
		return c.m.keep(c.pendingDelete(key), err)
	}
	if err := c.invalidated(ctx, key); err != nil {
		// The value is written; other processes' L1 tiers must still hear.
		return c.m.keep(&pendingInvalidation{cache: c.name, key: key, until: c.m.horizon(), retry: func(ctx context.Context) error {
			return c.invalidated(ctx, key)
		}}, err)
	}
	return nil
}

// pendingDelete is a Delete of key, queued for retry.
func (c *Cache[T]) pendingDelete(key string) *pendingInvalidation {
	return &pendingInvalidation{cache: c.name, key: key, until: c.m.horizon(), retry: func(ctx context.Context) error {
		return c.delete(ctx, key)
	}}
}

// releaseBuf returns buf, which a command carried, to the pool once no
// goroutine can still be sending it (transport.Buffers.Release).
func (c *Cache[T]) releaseBuf(buf *[]byte) { c.m.tr.Buffers().Release(buf) }

// deleteCmd returns the command that deletes data key rkey.
func (m *Manager) deleteCmd(ctx context.Context, rkey string) *redis.Cmd {
	return deleteArgs{key: rkey, newMarker: rand.Text(), markerTTLMS: millis(m.markerTTL())}.cmd(ctx)
}

// Delete removes key. A Fetch whose load was already running when Delete
// returned does not write its (possibly outdated) result back: the next read
// loads again. Delete is bounded by the write timeout and retried within it
// (WithWriteTimeout). When Redis still cannot be reached it returns an error
// wrapping ErrUnavailable, and keeps the delete in a queue that retries it
// in the background until it lands; meanwhile this process does not serve
// key from Redis or its L1 tier, though other processes may.
func (c *Cache[T]) Delete(ctx context.Context, key string) error {
	if c.m.done.Load() {
		return ErrClosed
	}
	if c.l1 != nil {
		c.dropKeys([]string{key})
	}
	if err := c.delete(ctx, key); err != nil {
		return fmt.Errorf("delete %.64q: %w", key, c.m.keep(c.pendingDelete(key), err))
	}
	return nil
}

// delete removes key in Redis and tells the other processes.
func (c *Cache[T]) delete(ctx context.Context, key string) error {
	var del *redis.Cmd
	_, _, err := c.inVersion(ctx, key, true, func(rkey string) []redis.Cmder {
		del = c.m.deleteCmd(ctx, rkey)
		return []redis.Cmder{del}
	})
	if err == nil {
		err = del.Err()
	}
	if err != nil {
		return err
	}
	return c.invalidated(ctx, key)
}

// firstSet returns the first non-zero duration.
func firstSet(ds ...time.Duration) time.Duration {
	for _, d := range ds {
		if d != 0 {
			return d
		}
	}
	return 0
}

// millis returns d in whole milliseconds, rounded up, at least 1.
func millis(d time.Duration) int64 {
	return max(int64((d+time.Millisecond-1)/time.Millisecond), 1)
}
