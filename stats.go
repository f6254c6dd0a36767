package cachemgr

import "sync/atomic"

// Stats is a snapshot of a Manager's counters, summed over all its caches.
type Stats struct {
	// Hits counts reads answered from Redis, negative entries and stale
	// values included.
	Hits uint64
	// StaleHits counts Fetches answered with a value past its fresh TTL
	// (WithStale); each starts a background refresh.
	StaleHits uint64
	// Refreshes counts background refreshes this process ran;
	// RefreshesElsewhere those it left to another process (which held the
	// lease or had already refreshed); RefreshErrors those whose loader
	// failed (the stale value stays in service).
	Refreshes, RefreshesElsewhere, RefreshErrors uint64
	// L1Hits counts reads answered by the in-process tier (also counted
	// in Hits); L1Evictions entries it dropped for room.
	L1Hits, L1Evictions uint64
	// EventsSent and EventsReceived count invalidation and user events on
	// the Manager's channel; BadEvents those that did not parse (or whose
	// handler failed to decode them); Resyncs the L1 flushes after the
	// subscription came back.
	EventsSent, EventsReceived, BadEvents, Resyncs uint64
	// LivenessLost counts subscriptions given up because nothing arrived
	// on them for the liveness bound (WithEventsLiveness).
	LivenessLost uint64
	// LeaseWaits counts loads of a missing key that waited for another
	// process holding the key's lease.
	LeaseWaits uint64
	// Joins counts Fetches that found a load of their key already running
	// in this process and waited for it instead of reading Redis.
	Joins uint64
	// NegativeHits counts reads answered by a cached ErrNotFound.
	NegativeHits uint64
	// Misses counts reads that found no usable value.
	Misses uint64
	// Loads counts loader calls; LoadErrors those that returned an error
	// other than ErrNotFound, or panicked.
	Loads, LoadErrors uint64
	// RedisErrors counts Redis calls that failed or timed out, and error
	// replies such as WRONGTYPE or OOM.
	RedisErrors uint64
	// Skipped counts Redis calls not made because the breaker was open.
	Skipped uint64
	// DecodeErrors counts stored values that did not decode; each is
	// treated as a miss and deleted.
	DecodeErrors uint64
	// Invalidated counts reads that found an entry made stale by
	// InvalidateTags; each is treated as a miss and deleted.
	Invalidated uint64
	// OtherShape counts reads that found an entry written for another
	// shape of the cache's type (another process, another deploy of the
	// struct); each is a miss, and is left for the processes it belongs to.
	OtherShape uint64
	// WriteErrors counts failed writes of loaded values (Fetch still
	// returned the value).
	WriteErrors uint64
	// WriteRetries counts attempts of a write or invalidation made again
	// because Redis could not be reached (WithWriteTimeout).
	WriteRetries uint64
	// InvalidationsPending is how many invalidations that did not reach
	// Redis are queued for retry now; InvalidationRetries counts their
	// background attempts, InvalidationsRecovered those that then landed,
	// and InvalidationsGivenUp those dropped because every entry they
	// covered had expired (or the queue was full).
	InvalidationsPending                                              int
	InvalidationRetries, InvalidationsRecovered, InvalidationsGivenUp uint64
	// Breaker is the circuit breaker's state: "closed", "open" or "half-open".
	Breaker string
}

// HitRatio returns Hits / (Hits + Misses), or 0 before any read. L1 hits
// are in Hits.
func (s Stats) HitRatio() float64 {
	if s.Hits+s.Misses == 0 {
		return 0
	}
	return float64(s.Hits) / float64(s.Hits+s.Misses)
}

type counters struct {
	hits, negativeHits, misses                     atomic.Uint64
	loads, loadErrors                              atomic.Uint64
	redisErrors, skipped                           atomic.Uint64
	decodeErrors, writeErrors                      atomic.Uint64
	invalidated, otherShape                        atomic.Uint64
	staleHits, refreshes, refreshesElsewhere       atomic.Uint64
	refreshErrors, leaseWaits, joins               atomic.Uint64
	l1Hits, l1Evictions                            atomic.Uint64
	eventsSent, eventsReceived, badEvents, resyncs atomic.Uint64
	livenessLost, writeRetries                     atomic.Uint64
	invalidationRetries, invalidationsRecovered    atomic.Uint64
	invalidationsGivenUp                           atomic.Uint64
}

// Stats returns a snapshot of the Manager's counters. It is safe to call
// at any time, also after Close.
func (m *Manager) Stats() Stats {
	c := &m.stats
	return Stats{
		Hits:                   c.hits.Load(),
		StaleHits:              c.staleHits.Load(),
		Refreshes:              c.refreshes.Load(),
		RefreshesElsewhere:     c.refreshesElsewhere.Load(),
		RefreshErrors:          c.refreshErrors.Load(),
		LeaseWaits:             c.leaseWaits.Load(),
		Joins:                  c.joins.Load(),
		L1Hits:                 c.l1Hits.Load(),
		L1Evictions:            c.l1Evictions.Load(),
		EventsSent:             c.eventsSent.Load(),
		EventsReceived:         c.eventsReceived.Load(),
		BadEvents:              c.badEvents.Load(),
		Resyncs:                c.resyncs.Load(),
		LivenessLost:           c.livenessLost.Load(),
		NegativeHits:           c.negativeHits.Load(),
		Misses:                 c.misses.Load(),
		Loads:                  c.loads.Load(),
		LoadErrors:             c.loadErrors.Load(),
		RedisErrors:            c.redisErrors.Load(),
		Skipped:                c.skipped.Load(),
		DecodeErrors:           c.decodeErrors.Load(),
		Invalidated:            c.invalidated.Load(),
		OtherShape:             c.otherShape.Load(),
		WriteErrors:            c.writeErrors.Load(),
		WriteRetries:           c.writeRetries.Load(),
		InvalidationsPending:   int(m.pending.n.Load()),
		InvalidationRetries:    c.invalidationRetries.Load(),
		InvalidationsRecovered: c.invalidationsRecovered.Load(),
		InvalidationsGivenUp:   c.invalidationsGivenUp.Load(),
		Breaker:                m.breaker.State().String(),
	}
}
