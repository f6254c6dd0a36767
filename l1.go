package cachemgr

import (
	"fmt"
	"hash/maphash"
	"math"
	"reflect"
	"sync"
	"sync/atomic"
	"time"
)

// The L1 tier keeps values in process memory, in front of Redis. Each
// cache has its own store, bounded by entry count, by bytes or both, and
// sharded so that parallel hits only share a read lock. Eviction is CLOCK
// (second chance): a hit sets a bit, and the evictor skips entries with the
// bit set once, which keeps hot keys without a list update on every hit.
//
// An entry's size is estimated from what Redis stores for it (the encoded
// envelope, and for a compressed value kept decoded its uncompressed
// length too) plus its key and a fixed overhead; an entry larger than one
// shard's share of the byte limit (1/16 of it) is not admitted.
//
// With shared values (L1Shared, the default) entries are stored decoded and
// returned as they are: a hit costs no decode and no allocation, and every
// caller of that entry shares one value, which they must treat as
// read-only. With private copies (L1Copy) entries keep the stored bytes and
// each hit decodes its own value from them.
//
// Coherence comes from server-assisted invalidation (tracking.go) and
// pub/sub events (events.go); every entry also expires after the L1 TTL, or
// when its value stops being fresh, whichever is first.

const l1Shards = 16

// l1EntryOverhead approximates what an entry costs beyond its stored bytes
// and key: the entry, its map slot and its ring slot.
const l1EntryOverhead = 128

// WithL1 gives every cache of the Manager an in-process tier of up to n
// entries, unless the cache says otherwise (WithCacheL1). It is kept
// coherent across processes by Redis itself (server-assisted invalidation,
// CLIENT TRACKING, for any change of a cached key by any client, by expiry,
// eviction or FLUSHALL) and by pub/sub events on the Manager's channel (for
// Bump and InvalidateTags). Values served from it are shared between
// callers unless the cache chose WithL1Isolation(L1Copy): treat them as
// read-only (copy before changing a slice, map or pointer field). Bound
// memory too with WithL1Bytes. 0 turns it off. Default: 0.
func WithL1(n int) Option {
	return func(c *config) error {
		if n < 0 {
			return fmt.Errorf("%w: L1 size %d", ErrInvalidOption, n)
		}
		c.l1Size = n
		return nil
	}
}

// WithL1Bytes bounds each cache's L1 tier, by default, to about n bytes of
// stored (encoded) values, as WithCacheL1 does for one cache. With
// WithL1(0) it gives every cache an L1 tier bounded by bytes only. 0: no
// byte bound. Default: 0.
func WithL1Bytes(n int64) Option {
	return func(c *config) error {
		if n < 0 {
			return fmt.Errorf("%w: L1 bytes %d", ErrInvalidOption, n)
		}
		c.l1Bytes = n
		return nil
	}
}

// WithL1TTL bounds how long an entry stays in the L1 tier, which is also
// how long a lost invalidation event can leave it stale. Default: 5s.
func WithL1TTL(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 || d > time.Hour {
			return fmt.Errorf("%w: L1 TTL %v", ErrInvalidOption, d)
		}
		c.l1TTL = d
		return nil
	}
}

// WithCacheL1 gives this cache its own L1 tier of at most entries entries
// and about maxBytes bytes, overriding the Manager's WithL1 and
// WithL1Bytes; 0 leaves that bound out, and WithCacheL1(0, 0) turns the
// tier off for this cache. Sizes are estimated from the stored (encoded)
// size of each value plus its key; a value larger than 1/16 of maxBytes is
// not kept in L1 (it is still cached in Redis). Each cache's bounds hold
// independently of the others'. Default: the Manager's.
func WithCacheL1(entries int, maxBytes int64) CacheOption {
	return func(c *cacheConfig) error {
		if entries < 0 || maxBytes < 0 {
			return fmt.Errorf("%w: L1 bounds %d entries, %d bytes", ErrInvalidOption, entries, maxBytes)
		}
		c.l1 = l1Config{set: true, entries: entries, bytes: maxBytes, isolation: c.l1.isolation}
		return nil
	}
}

// L1Isolation says whether callers served by the L1 tier share one value or
// each get their own.
type L1Isolation int

const (
	// L1Shared serves every caller the same decoded value: no decode and
	// no allocation per hit, but the value must be treated as read-only,
	// since a change made by one caller is what the next hit returns.
	L1Shared L1Isolation = iota
	// L1Copy serves every caller a private value, decoded again from the
	// stored bytes on each hit (as a Redis-tier hit is): callers may
	// change it freely. A hit then costs one decode.
	L1Copy
)

// WithL1Isolation chooses between shared read-only values (L1Shared, the
// default) and a private copy per hit (L1Copy) for this cache's L1 tier.
// Without an L1 tier every caller gets its own value anyway.
func WithL1Isolation(mode L1Isolation) CacheOption {
	return func(c *cacheConfig) error {
		if mode != L1Shared && mode != L1Copy {
			return fmt.Errorf("%w: L1 isolation %d", ErrInvalidOption, mode)
		}
		c.l1.isolation = mode
		return nil
	}
}

// l1Config is a cache's L1 setting.
type l1Config struct {
	set       bool // WithCacheL1 was given
	entries   int
	bytes     int64
	isolation L1Isolation
}

// l1Entry is one value in the L1 tier.
type l1Entry[T any] struct {
	key      string
	version  string // namespace version it was read under
	val      T      // the decoded value (L1Shared)
	raw      string // the stored bytes (L1Copy)
	negative bool
	tags     []string
	size     int64 // estimated bytes
	expires  int64 // by the store's clock (l1Store.now)
	visited  atomic.Bool
	pos      int // index in the shard's ring, under the shard's lock
}

type l1Shard[T any] struct {
	mu       sync.RWMutex
	items    map[string]*l1Entry[T]
	capacity int // entries
	bytes    int64
	// ring holds the entries in insertion order, for CLOCK eviction; a
	// removed entry's slot is nil, so the ring never keeps a value alive.
	ring []*l1Entry[T]
	head int
}

// l1Slots is how many slots remember the last removal of the keys that
// hash to them (see l1Store.token).
const l1Slots = 1024

// l1Store is a cache's L1 tier.
//
// A read from Redis can be overtaken by an invalidation of its key: the
// invalidation (an event, or a tracking message from Redis) arrives while
// the reply is on its way, and filling the tier with the reply would keep
// the retired value until the L1 TTL. So a reader takes a token before it
// sends the read, and put refuses an entry when any removal of its key (or
// of everything) happened after the token was taken. Removals are
// remembered per hash slot, so a removal of another key in the same slot may
// refuse a fill too: a spare Redis read later, never a stale entry.
type l1Store[T any] struct {
	seed       maphash.Seed
	shards     [l1Shards]l1Shard[T]
	nshards    uint64 // shards in use: fewer than l1Shards for a tier of fewer entries
	shardBytes int64  // bytes
	evictions  *atomic.Uint64
	gen        atomic.Uint64 // counts removals
	all        atomic.Uint64 // gen of the last removal of several entries
	slots      [l1Slots]atomic.Uint64

	// epoch starts the store's clock; wall, when set, replaces it.
	epoch time.Time
	wall  func() time.Time
}

// newL1 returns a store of at most entries entries and maxBytes bytes (0:
// no bound of that kind), whose entries expire by clock, the Manager's.
func newL1[T any](entries int, maxBytes int64, evictions *atomic.Uint64, clock func() time.Time) *l1Store[T] {
	s := &l1Store[T]{seed: maphash.MakeSeed(), nshards: l1Shards, shardBytes: math.MaxInt64, evictions: evictions, epoch: monotonic()}
	if reflect.ValueOf(clock).Pointer() != reflect.ValueOf(time.Now).Pointer() {
		s.wall = clock // WithClock: a test's clock rules L1 expiry too
	}
	if entries > 0 && entries < l1Shards {
		s.nshards = uint64(entries)
	}
	if maxBytes > 0 {
		s.shardBytes = maxBytes / int64(s.nshards)
	}
	for i := range s.shards {
		sh := &s.shards[i]
		sh.items = make(map[string]*l1Entry[T])
		sh.capacity = math.MaxInt
		if entries > 0 {
			// The capacities of the shards in use add up to entries.
			sh.capacity = entries / int(s.nshards)
			if i < entries%int(s.nshards) {
				sh.capacity++
			}
		}
	}
	return s
}

// now returns the store's time, in nanoseconds, for entry expiry: the
// monotonic time since the store was made, unless the Manager has a clock
// of its own (WithClock), whose UnixNano it is then. An entry's lifetime
// (the L1 TTL, or what is left of its freshness when it is stored) is
// counted from when it is stored, so the wall clock is read once per fill,
// not per hit: time.Now reads two clocks, the monotonic one alone half as
// much, and a hit is mostly that read.
func (s *l1Store[T]) now() int64 {
	if s.wall != nil {
		return s.wall().UnixNano()
	}
	return int64(time.Since(s.epoch))
}

// entrySize estimates what an entry of key holding stored bytes raw costs.
func entrySize(key, raw string) int64 {
	return int64(len(key)+len(raw)) + l1EntryOverhead
}

func (s *l1Store[T]) shard(key string) (*l1Shard[T], *atomic.Uint64) {
	h := maphash.String(s.seed, key)
	return &s.shards[h%s.nshards], &s.slots[(h/l1Shards)%l1Slots]
}

// admits reports whether an entry of size bytes may be stored at all.
func (s *l1Store[T]) admits(size int64) bool { return size <= s.shardBytes }

// token returns what a reader must hand to put for the value it is about
// to read from Redis.
func (s *l1Store[T]) token() uint64 { return s.gen.Load() }

// removed records a removal, before the entries go, in slot (nil: all).
func (s *l1Store[T]) removed(slot *atomic.Uint64) {
	g := s.gen.Add(1)
	if slot == nil {
		slot = &s.all
	}
	for {
		cur := slot.Load()
		if g <= cur || slot.CompareAndSwap(cur, g) {
			return
		}
	}
}

// get returns the entry for key if it is there, unexpired at now.
func (s *l1Store[T]) get(key string, now int64) (*l1Entry[T], bool) {
	sh, _ := s.shard(key)
	sh.mu.RLock()
	e, ok := sh.items[key]
	sh.mu.RUnlock()
	if !ok || now >= e.expires {
		return nil, false
	}
	if !e.visited.Load() {
		e.visited.Store(true)
	}
	return e, true
}

// put stores e, read from Redis by a reader that took token tok before
// sending the read, unless e's key was removed since or e is larger than a
// shard's byte share; it evicts by CLOCK until the shard has room. It
// reports whether e was stored.
func (s *l1Store[T]) put(e *l1Entry[T], tok uint64) bool {
	if !s.admits(e.size) {
		return false
	}
	sh, slot := s.shard(e.key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	// A removal records its generation before it takes the shard lock, so
	// one that this check misses removes e after it is stored.
	if slot.Load() > tok || s.all.Load() > tok {
		return false
	}
	if old, ok := sh.items[e.key]; ok {
		sh.unlink(old)
	}
	for len(sh.items) >= sh.capacity || sh.bytes+e.size > s.shardBytes {
		if !sh.evictOne() {
			break
		}
		s.evictions.Add(1)
	}
	sh.items[e.key] = e
	sh.bytes += e.size
	sh.push(e)
	if free := len(sh.ring) - len(sh.items); free > len(sh.items)+32 {
		sh.compact()
	}
	return true
}

// push appends e to the ring.
func (sh *l1Shard[T]) push(e *l1Entry[T]) {
	e.pos = len(sh.ring)
	sh.ring = append(sh.ring, e)
}

// unlink removes e from the map, the ring and the byte count.
func (sh *l1Shard[T]) unlink(e *l1Entry[T]) {
	if e.pos < len(sh.ring) && sh.ring[e.pos] == e {
		sh.ring[e.pos] = nil
	}
	delete(sh.items, e.key)
	sh.bytes -= e.size
}

// compact drops the empty slots of the ring.
func (sh *l1Shard[T]) compact() {
	live := sh.ring[:0]
	for _, e := range sh.ring[sh.head:] {
		if e != nil {
			e.pos = len(live)
			live = append(live, e)
		}
	}
	clear(sh.ring[len(live):])
	sh.ring, sh.head = live, 0
}

// evictOne removes one entry, giving visited ones a second chance. It
// reports whether a live entry was evicted.
func (sh *l1Shard[T]) evictOne() bool {
	for sh.head < len(sh.ring) {
		e := sh.ring[sh.head]
		sh.ring[sh.head] = nil
		sh.head++
		if e == nil {
			continue
		}
		if e.visited.Load() {
			e.visited.Store(false)
			sh.push(e)
			continue
		}
		sh.unlink(e)
		return true
	}
	return false
}

// remove drops key.
func (s *l1Store[T]) remove(key string) {
	sh, slot := s.shard(key)
	s.removed(slot)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if e, ok := sh.items[key]; ok {
		sh.unlink(e)
	}
}

// removeIf drops every entry for which drop returns true.
func (s *l1Store[T]) removeIf(drop func(*l1Entry[T]) bool) {
	s.removed(nil)
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		for _, e := range sh.items {
			if drop(e) {
				sh.unlink(e)
			}
		}
		sh.mu.Unlock()
	}
}

// clear drops everything.
func (s *l1Store[T]) clear() {
	s.removed(nil)
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		clear(sh.items)
		clear(sh.ring)
		sh.ring, sh.head, sh.bytes = sh.ring[:0], 0, 0
		sh.mu.Unlock()
	}
}

// usage returns the entries and estimated bytes held, for tests.
func (s *l1Store[T]) usage() (entries int, bytes int64) {
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.RLock()
		entries += len(sh.items)
		bytes += sh.bytes
		sh.mu.RUnlock()
	}
	return entries, bytes
}
