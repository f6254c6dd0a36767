package cachemgr

import (
	"fmt"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"
)

// The L1 tier keeps decoded values in process memory, in front of Redis.
// Each cache has its own store, bounded by entry count and sharded so that
// parallel hits only share a read lock. Eviction is CLOCK (second chance):
// a hit sets a bit, and the evictor skips entries with the bit set once,
// which keeps hot keys without a list update on every hit. Values are
// stored decoded and returned as they are: an L1 hit costs no decode and no
// allocation, and every caller of that entry shares one value, which they
// must treat as read-only. Coherence comes from pub/sub events (events.go);
// every entry also expires after the L1 TTL, or when its value stops being
// fresh, whichever is first.

const l1Shards = 16

// WithL1 gives every cache of the Manager an in-process tier of up to n
// entries, kept coherent across processes by pub/sub invalidation events on
// the Manager's channel. Values served from it are shared between callers:
// treat them as read-only (copy before changing a slice, map or pointer
// field). 0 turns it off. Default: 0.
func WithL1(n int) Option {
	return func(c *config) error {
		if n < 0 {
			return fmt.Errorf("%w: L1 size %d", ErrInvalidOption, n)
		}
		c.l1Size = n
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

// l1Entry is one value in the L1 tier.
type l1Entry[T any] struct {
	key      string
	version  string // namespace version it was read under
	val      T
	negative bool
	tags     []string
	expires  int64 // UnixNano, by the Manager's clock
	visited  atomic.Bool
	gone     atomic.Bool // removed from the map; the ring drops it lazily
}

type l1Shard[T any] struct {
	mu    sync.RWMutex
	items map[string]*l1Entry[T]
	ring  []*l1Entry[T] // insertion order, for CLOCK eviction
	head  int
}

// l1Slots is how many slots remember the last removal of the keys that
// hash to them (see l1Store.token).
const l1Slots = 1024

// l1Store is a cache's L1 tier.
//
// A read from Redis can be overtaken by an invalidation of its key: the
// event arrives while the reply is on its way, and filling the tier with
// the reply would keep the retired value until the L1 TTL. So a reader takes
// a token before it sends the read, and put refuses an entry when any
// removal of its key (or of everything) happened after the token was taken.
// Removals are remembered per hash slot, so a removal of another key in the
// same slot may refuse a fill too: a spare Redis read later, never a stale
// entry.
type l1Store[T any] struct {
	seed      maphash.Seed
	shards    [l1Shards]l1Shard[T]
	perShard  int
	evictions *atomic.Uint64
	gen       atomic.Uint64 // counts removals
	all       atomic.Uint64 // gen of the last removal of several entries
	slots     [l1Slots]atomic.Uint64
}

func newL1[T any](size int, evictions *atomic.Uint64) *l1Store[T] {
	s := &l1Store[T]{seed: maphash.MakeSeed(), perShard: max(1, (size+l1Shards-1)/l1Shards), evictions: evictions}
	for i := range s.shards {
		s.shards[i].items = make(map[string]*l1Entry[T])
	}
	return s
}

func (s *l1Store[T]) shard(key string) (*l1Shard[T], *atomic.Uint64) {
	h := maphash.String(s.seed, key)
	return &s.shards[h%l1Shards], &s.slots[(h/l1Shards)%l1Slots]
}

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
// sending the read, unless e's key was removed since; it evicts by CLOCK
// when the shard is full. It reports whether e was stored.
func (s *l1Store[T]) put(e *l1Entry[T], tok uint64) bool {
	sh, slot := s.shard(e.key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	// A removal records its generation before it takes the shard lock, so
	// one that this check misses removes e after it is stored.
	if slot.Load() > tok || s.all.Load() > tok {
		return false
	}
	if old, ok := sh.items[e.key]; ok {
		old.gone.Store(true)
	}
	for len(sh.items) >= s.perShard || len(sh.ring)-sh.head >= 2*s.perShard {
		if !sh.evictOne() {
			break
		}
		s.evictions.Add(1)
	}
	sh.items[e.key] = e
	sh.ring = append(sh.ring, e)
	if sh.head > len(sh.ring)/2 {
		sh.ring = append(sh.ring[:0], sh.ring[sh.head:]...)
		sh.head = 0
	}
	return true
}

// evictOne removes one entry, giving visited ones a second chance. It
// reports whether a live entry was evicted.
func (sh *l1Shard[T]) evictOne() bool {
	for sh.head < len(sh.ring) {
		e := sh.ring[sh.head]
		sh.ring[sh.head] = nil
		sh.head++
		if e.gone.Load() {
			continue
		}
		if e.visited.Load() {
			e.visited.Store(false)
			sh.ring = append(sh.ring, e)
			continue
		}
		e.gone.Store(true)
		delete(sh.items, e.key)
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
		e.gone.Store(true)
		delete(sh.items, key)
	}
}

// removeIf drops every entry for which drop returns true.
func (s *l1Store[T]) removeIf(drop func(*l1Entry[T]) bool) {
	s.removed(nil)
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		for k, e := range sh.items {
			if drop(e) {
				e.gone.Store(true)
				delete(sh.items, k)
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
		sh.ring, sh.head = sh.ring[:0], 0
		sh.mu.Unlock()
	}
}
