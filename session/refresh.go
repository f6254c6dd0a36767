package session

import (
	"sync"
	"time"
)

// maxRefreshTracked bounds how many sessions a Store remembers as recently
// refreshed. Past it, a session that is not remembered is refreshed on
// every use, as with WithRefreshInterval(0): more PEXPIREs, never fewer.
const maxRefreshTracked = 1 << 17

// refresher decides which uses of a session also restart its idle timeout
// in Redis: at most one per session per period of the refresh interval in
// this process. The periods are consecutive windows of this process's
// monotonic clock; a session refreshed in the current window is not
// refreshed again until the next. So whenever a use skips the refresh, the
// last refresh was sent less than one interval earlier, and Redis's TTL,
// which alone ends the session, still has more than idle - interval to
// run.
//
// Forgetting a session (after a failed refresh, Destroy, Renew) only
// causes an extra refresh. The zero refresher with every 0 refreshes on
// every use.
type refresher struct {
	every time.Duration // 0: refresh on every use
	since func() time.Duration

	mu     sync.Mutex
	window int64
	done   map[string]struct{} // keys refreshed in window
}

// newRefresher returns a refresher of interval every, timed by since, a
// monotonic clock.
func newRefresher(every time.Duration, since func() time.Duration) *refresher {
	return &refresher{every: every, since: since}
}

// due reports whether a use of key now must refresh its idle timeout, and
// if so remembers it as refreshed: the caller sends the refresh, or calls
// forget when it fails.
func (r *refresher) due(key string) bool {
	if r.every <= 0 {
		return true
	}
	w := int64(r.since() / r.every)
	r.mu.Lock()
	defer r.mu.Unlock()
	if w != r.window || r.done == nil {
		r.window = w
		// A new map rather than clear: clear keeps the old map's size.
		r.done = make(map[string]struct{}, len(r.done)/2)
	}
	if _, ok := r.done[key]; ok {
		return false
	}
	if len(r.done) < maxRefreshTracked {
		r.done[key] = struct{}{}
	}
	return true
}

// mark remembers key as refreshed now, by a call that set its TTL anyway
// (create, Renew).
func (r *refresher) mark(key string) {
	if r.every > 0 {
		r.due(key)
	}
}

// forget makes the next use of key refresh it.
func (r *refresher) forget(key string) {
	if r.every <= 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.done, key)
}
