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

// l1Store is a cache's L1 tier.
type l1Store[T any] struct {
	seed      maphash.Seed
	shards    [l1Shards]l1Shard[T]
	perShard  int
	evictions *atomic.Uint64
}

func newL1[T any](size int, evictions *atomic.Uint64) *l1Store[T] {
	s := &l1Store[T]{seed: maphash.MakeSeed(), perShard: max(1, (size+l1Shards-1)/l1Shards), evictions: evictions}
	for i := range s.shards {
		s.shards[i].items = make(map[string]*l1Entry[T])
	}
	return s
}

func (s *l1Store[T]) shard(key string) *l1Shard[T] {
	return &s.shards[maphash.String(s.seed, key)%l1Shards]
}

// get returns the entry for key if it is there, unexpired at now.
func (s *l1Store[T]) get(key string, now int64) (*l1Entry[T], bool) {
	sh := s.shard(key)
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

// put stores e, evicting by CLOCK when the shard is full.
func (s *l1Store[T]) put(e *l1Entry[T]) {
	sh := s.shard(e.key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
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
	sh := s.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if e, ok := sh.items[key]; ok {
		e.gone.Store(true)
		delete(sh.items, key)
	}
}

// removeIf drops every entry for which drop returns true.
func (s *l1Store[T]) removeIf(drop func(*l1Entry[T]) bool) {
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
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		clear(sh.items)
		clear(sh.ring)
		sh.ring, sh.head = sh.ring[:0], 0
		sh.mu.Unlock()
	}
}
