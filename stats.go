package cachemgr

import "sync/atomic"

// Stats is a snapshot of counters: a Manager's (Manager.Stats), summed
// over all its caches and adding its own, or one cache's (Cache.Stats).
// Every read of a key counts once, as a hit or a miss, whichever tier
// answered it; Warm's reads and loads count apart (the Warm fields), so
// that Hits, Misses and HitRatio describe traffic only. The fields marked
// "Manager" count work no single cache owns: they are zero in Cache.Stats.
type Stats struct {
	// Hits counts reads answered by the cache: from the L1 tier (also
	// counted in L1Hits) or from Redis, negative entries (also in
	// NegativeHits) and stale values (also in StaleHits) included.
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
	// subscription came back. Manager.
	EventsSent, EventsReceived, BadEvents, Resyncs uint64
	// LivenessLost counts subscriptions given up because nothing arrived
	// on them for the liveness bound (WithEventsLiveness). Manager.
	LivenessLost uint64
	// LeaseWaits counts loads of a missing key that waited for another
	// process holding the key's lease.
	LeaseWaits uint64
	// Joins counts Fetches that found a load of their key already running
	// in this process and waited for it instead of reading Redis.
	Joins uint64
	// NegativeHits counts reads answered by a cached ErrNotFound (also
	// counted in Hits).
	NegativeHits uint64
	// Misses counts reads that found no usable value: absent, expired,
	// undecodable, invalidated, another shape's, or covered by an
	// invalidation still waiting to reach Redis. A FetchMany or GetMany
	// counts one per key.
	Misses uint64
	// Loads counts loader calls (a FetchMany's batch loader call counts
	// once, refreshes included, Warm's not); LoadErrors those that
	// returned an error other than ErrNotFound, or panicked.
	Loads, LoadErrors uint64
	// RedisErrors counts Redis calls that failed or timed out, and error
	// replies such as WRONGTYPE or OOM. Manager.
	RedisErrors uint64
	// Skipped counts Redis calls not made because the breaker was open.
	// Manager.
	Skipped uint64
	// DecodeErrors counts stored values that did not decode; each is
	// also a miss, and is deleted.
	DecodeErrors uint64
	// Invalidated counts reads that found an entry made stale by
	// InvalidateTags; each is also a miss, and is deleted.
	Invalidated uint64
	// OtherShape counts reads that found an entry written for another
	// shape of the cache's type (another process, another deploy of the
	// struct); each is also a miss, and is left for the processes it
	// belongs to.
	OtherShape uint64
	// WriteErrors counts loaded values that could not be written back (an
	// encoding error, a failed or timed-out write-back: one per value); the
	// callers still received them.
	WriteErrors uint64
	// Warmed counts keys Warm loaded and stored (negative entries
	// included), WarmSkipped those it found cached, WarmFailed those it
	// left uncached; WarmLoads counts its loader calls (one per chunk with a
	// batch loader). None of Warm's reads is in Hits or Misses.
	Warmed, WarmSkipped, WarmFailed, WarmLoads uint64
	// WriteRetries counts attempts of a write or invalidation made again
	// because Redis could not be reached (WithWriteTimeout). Manager.
	WriteRetries uint64
	// InvalidationsPending is how many invalidations that did not reach
	// Redis are queued for retry now; InvalidationRetries counts their
	// background attempts, InvalidationsRecovered those that then landed,
	// and InvalidationsGivenUp those dropped because every entry they
	// covered had expired (or the queue was full). Manager.
	InvalidationsPending                                              int
	InvalidationRetries, InvalidationsRecovered, InvalidationsGivenUp uint64
	// Breaker is the state of the Manager's circuit breaker: "closed",
	// "open" or "half-open" (in Cache.Stats too).
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

// counters are the counts of a Manager or of one cache name.
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
	warmed, warmSkipped, warmFailed, warmLoads     atomic.Uint64
}

// countersOf returns the counters of the caches called name.
func (m *Manager) countersOf(name string) *counters {
	c, _ := m.cacheStats.LoadOrStore(name, &counters{})
	return c.(*counters)
}

// addTo adds the counters to s.
func (c *counters) addTo(s *Stats) {
	s.Hits += c.hits.Load()
	s.StaleHits += c.staleHits.Load()
	s.Refreshes += c.refreshes.Load()
	s.RefreshesElsewhere += c.refreshesElsewhere.Load()
	s.RefreshErrors += c.refreshErrors.Load()
	s.LeaseWaits += c.leaseWaits.Load()
	s.Joins += c.joins.Load()
	s.L1Hits += c.l1Hits.Load()
	s.L1Evictions += c.l1Evictions.Load()
	s.EventsSent += c.eventsSent.Load()
	s.EventsReceived += c.eventsReceived.Load()
	s.BadEvents += c.badEvents.Load()
	s.Resyncs += c.resyncs.Load()
	s.LivenessLost += c.livenessLost.Load()
	s.NegativeHits += c.negativeHits.Load()
	s.Misses += c.misses.Load()
	s.Loads += c.loads.Load()
	s.LoadErrors += c.loadErrors.Load()
	s.RedisErrors += c.redisErrors.Load()
	s.Skipped += c.skipped.Load()
	s.DecodeErrors += c.decodeErrors.Load()
	s.Invalidated += c.invalidated.Load()
	s.OtherShape += c.otherShape.Load()
	s.WriteErrors += c.writeErrors.Load()
	s.Warmed += c.warmed.Load()
	s.WarmSkipped += c.warmSkipped.Load()
	s.WarmFailed += c.warmFailed.Load()
	s.WarmLoads += c.warmLoads.Load()
	s.WriteRetries += c.writeRetries.Load()
	s.InvalidationRetries += c.invalidationRetries.Load()
	s.InvalidationsRecovered += c.invalidationsRecovered.Load()
	s.InvalidationsGivenUp += c.invalidationsGivenUp.Load()
}

// Stats returns a snapshot of the Manager's counters: its own, and the sum
// of its caches'. It is safe to call at any time, also after Close.
func (m *Manager) Stats() Stats {
	s := Stats{
		InvalidationsPending: int(m.pending.n.Load()),
		Breaker:              m.tr.BreakerState().String(),
	}
	m.stats.addTo(&s)
	m.cacheStats.Range(func(_, c any) bool {
		c.(*counters).addTo(&s)
		return true
	})
	return s
}

// Stats returns a snapshot of this cache's counters, shared by every Cache
// of its name on the Manager. The fields marked "Manager" in Stats are
// zero; Breaker is the Manager's. It is safe to call at any time, also
// after Close.
func (c *Cache[T]) Stats() Stats {
	s := Stats{Breaker: c.m.tr.BreakerState().String()}
	c.stats.addTo(&s)
	return s
}
