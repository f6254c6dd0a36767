package session

import "time"

// SetRefreshClock makes st time its refresh windows (WithRefreshInterval)
// by since, a monotonic clock the test moves.
func SetRefreshClock(st *Store, since func() time.Duration) { st.refresh.since = since }

// RefreshInterval returns st's refresh interval.
func RefreshInterval(st *Store) time.Duration { return st.refresh.every }
