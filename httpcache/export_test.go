package httpcache

import "time"

// SetClock makes c read the time from now, for tests of freshness.
func SetClock(c *Cache, now func() time.Time) { c.now = now }
