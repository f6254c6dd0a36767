package cachemgr

import (
	"context"
	"errors"

	"github.com/cachemgr/cachemgr/internal/breaker"
)

// A Fetch miss costs a lookup, a claim and a write-back: three round trips
// where a hand-written miss (GET, SET) makes two. The claim script reads the
// key before it takes the lease and returns the value when there is one, so
// for a key that is likely missing the claim can be the lookup: one round
// trip fewer on a miss, at the price of a script instead of a GET on a hit.
// A cache claims first while its recent cold lookups (of keys not found
// lately, see noteHit) have mostly missed, and goes back to plain lookups
// when they mostly hit.

// coldBound bounds the cold-lookup score (coldScore): a change of workload
// turns it around within that many lookups.
const coldBound = 8

// noteCold adds a cold lookup's outcome to the cache's score: found lowers
// it, a miss raises it.
func (c *Cache[T]) noteCold(found, miss bool) {
	for {
		cur := c.coldScore.Load()
		next := cur
		switch {
		case found && cur > -coldBound:
			next--
		case miss && cur < coldBound:
			next++
		}
		if next == cur || c.coldScore.CompareAndSwap(cur, next) {
			return
		}
	}
}

// claimsFirst reports whether a Fetch of key that the L1 tier did not
// answer should skip its lookup and claim at once: recent cold lookups
// mostly missed, the key is not one found lately, and the claim can answer
// everything the lookup would. On a versioned cache only once the version
// is known: the claim reads the version before it reads the key, and one
// that finds the version moved loads without writing back and learns the
// new version. Not with stale-while-revalidate
// or early refresh (the lookup serves stale values and starts refreshes),
// with replica reads (the claim goes to the master), with the breaker not
// closed (the lookup fails fast there), or while an invalidation of the key
// is pending (the lookup declines what Redis holds).
func (c *Cache[T]) claimsFirst(key string) bool {
	return c.coldScore.Load() > 0 && (!c.versioned || c.version.Load() != nil) && c.swr.stale == 0 && c.swr.beta == 0 &&
		c.m.replica == nil && !c.isHot(key) && c.m.tr.BreakerState() == breaker.Closed &&
		!c.m.covering(c.name, key, nil)
}

// countFirst records the outcome of a claim that was the lookup, as lookup
// records its own (the hit itself is counted where the claim's value is
// decoded, see usable): r is the claim's result (nil: the key was missing,
// or the claim got no reply, when answered is false).
func (c *Cache[T]) countFirst(ctx context.Context, key string, r *loaded[T], answered bool) {
	switch {
	case r == nil && answered:
		c.missed(ctx)
		c.noteCold(false, true)
	case r == nil || r.err != nil && !errors.Is(r.err, ErrNotFound):
	default:
		c.noteHit(key)
		c.noteCold(true, false)
	}
}
