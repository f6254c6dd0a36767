package cachemgr

// WithWriteBehind takes the write-back of a Fetch miss off the caller's
// path: Fetch returns as soon as the loader has returned, and the loaded
// value is written to Redis, under the same guard as always (a Delete, Bump
// or InvalidateTags that ran during the load keeps it out), one round trip
// later, on a goroutine the Manager tracks (Close lets the write-backs
// under way land before it closes anything).
//
// Reads in this process do not see the difference: a Get, Fetch, GetMany or
// FetchMany of the key that begins after the Fetch returned waits for the
// write-back, then reads what it wrote. Other processes do: their Fetch of
// the key waits for the write-back through the load's lease, as it waits
// for the load, and still calls no loader; but a Get in another process, or
// a raw read of the key, that runs during the write-back's round trip finds
// nothing yet. Turn it on where a miss's latency matters more than that
// window. Default: off (Fetch returns after the write-back has landed).
// FetchMany, Warm and stale-while-revalidate refreshes write back as
// before.
func WithWriteBehind(on bool) CacheOption {
	return func(c *cacheConfig) error {
		c.writeBehind = on
		return nil
	}
}
