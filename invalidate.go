package cachemgr

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cachemgr/cachemgr/internal/transport"
	"github.com/redis/go-redis/v9"
)

// Writes and invalidations must not be lost to a busy or briefly sick
// Redis: a lost Delete leaves a stale value for its whole TTL. So they have
// their own timeout, longer than a read's, are retried with back-off while
// Redis cannot be reached, and are not stopped by a breaker that read
// failures opened. One that still fails is returned to the caller and kept
// in a bounded queue that retries it in the background until it lands or
// every entry it covers has expired; meanwhile this process serves nothing
// it covers from Redis or its L1 tier, so a writer never reads back what it
// just invalidated.

// WithWriteTimeout bounds each Set, Delete, Bump, InvalidateTags and each
// step of InvalidatePrefix, retries included. Default: 1s.
func WithWriteTimeout(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return fmt.Errorf("%w: write timeout %v", ErrInvalidOption, d)
		}
		c.writeTimeout = d
		return nil
	}
}

// Back-off between attempts of one write.
const (
	writeRetryMin = 10 * time.Millisecond
	writeRetryMax = 200 * time.Millisecond
)

// doWrite sends cmds as a write: in one pipeline, not stopped by an open
// breaker, attempted again with back-off while Redis cannot be reached,
// until the write timeout has passed. Errors are those of doAll.
func (m *Manager) doWrite(ctx context.Context, cmds ...redis.Cmder) error {
	deadline := monotonic().Add(m.writeTimeout)
	wait := writeRetryMin
	cmds, replicas := m.withWait(ctx, cmds) // WithReplicaReads: they must apply it too
	for {
		err := m.doAllWith(ctx, transport.Policy{Timeout: time.Until(deadline), Write: true}, cmds...)
		if err == nil {
			if err = m.acked(replicas); err != nil {
				return err // it landed on the master; the kept retry waits again
			}
		}
		if err == nil || !errors.Is(err, ErrUnavailable) || ctx.Err() != nil || time.Until(deadline) < wait {
			return err
		}
		m.stats.writeRetries.Add(1)
		pause(ctx, wait)
		wait = min(2*wait, writeRetryMax)
		for _, c := range cmds {
			c.SetErr(nil)
		}
	}
}

// errPendingMiss is the miss of a key that an invalidation which has not
// reached Redis yet covers.
var errPendingMiss = fmt.Errorf("%w: an invalidation of it has not reached Redis yet", ErrMiss)

// maxPending bounds the queue of invalidations waiting to reach Redis.
const maxPending = 10_000

// pendingInvalidation is an invalidation that did not reach Redis.
type pendingInvalidation struct {
	cache  string   // the cache it covers; "" for tags
	key    string   // one key, when set
	prefix *string  // the keys starting with it, when set
	tags   []string // entries carrying any of them, when set
	// With none of key, prefix and tags set, the whole cache is covered.
	retry func(ctx context.Context) error // sends it again
	until time.Time                       // when every entry it covers has expired
}

// covers reports whether p covers key of cache name, or an entry of it
// carrying tags.
func (p *pendingInvalidation) covers(name, key string, tags []string) bool {
	switch {
	case p.tags != nil:
		for _, t := range tags {
			if slices.Contains(p.tags, t) {
				return true
			}
		}
		return false
	case p.cache != name:
		return false
	case p.key != "":
		return p.key == key
	case p.prefix != nil:
		return strings.HasPrefix(key, *p.prefix)
	}
	return true
}

// pendingQueue holds the invalidations that did not reach Redis.
type pendingQueue struct {
	n       atomic.Int64 // len(items), read on every lookup
	mu      sync.Mutex
	items   []*pendingInvalidation
	running bool // a retry loop is under way
}

// covering reports whether an invalidation that did not reach Redis covers
// key of cache name (tags: the entry's, when known).
func (m *Manager) covering(name, key string, tags []string) bool {
	if m.pending.n.Load() == 0 {
		return false
	}
	m.pending.mu.Lock()
	defer m.pending.mu.Unlock()
	for _, p := range m.pending.items {
		if p.covers(name, key, tags) {
			return true
		}
	}
	return false
}

// keep queues p after its first attempt failed with err, and starts the
// retry loop. It returns err wrapped for the caller, who learns that the
// invalidation has not landed yet.
func (m *Manager) keep(p *pendingInvalidation, err error) error {
	if errors.Is(err, ErrClosed) || !errors.Is(err, ErrUnavailable) {
		return err
	}
	q := &m.pending
	q.mu.Lock()
	if len(q.items) >= maxPending {
		q.mu.Unlock()
		m.stats.invalidationsGivenUp.Add(1)
		m.logError("invalidation dropped: retry queue full", err, "cache", p.cache, "key", p.key)
		return err
	}
	q.items = append(q.items, p)
	q.n.Store(int64(len(q.items)))
	start := !q.running
	q.running = true
	q.mu.Unlock()
	if start && !m.goTracked(m.retryPending) {
		q.mu.Lock()
		q.running = false
		q.mu.Unlock()
	}
	return fmt.Errorf("%w (kept for retry)", err)
}

// retryPending sends the queued invalidations again, with back-off, until
// the queue is empty or the Manager closes.
func (m *Manager) retryPending() {
	wait := 50 * time.Millisecond
	for {
		if m.flushPending(m.ctx) {
			return
		}
		pause(m.ctx, wait)
		if m.ctx.Err() != nil {
			return
		}
		wait = min(2*wait, time.Second)
	}
}

// flushPending tries every queued invalidation once and reports whether
// the queue is empty and the loop has stopped.
func (m *Manager) flushPending(ctx context.Context) bool {
	q := &m.pending
	q.mu.Lock()
	items := slices.Clone(q.items)
	q.mu.Unlock()
	var done []*pendingInvalidation
	for _, p := range items {
		if monotonic().After(p.until) {
			m.stats.invalidationsGivenUp.Add(1)
			done = append(done, p)
			continue
		}
		m.stats.invalidationRetries.Add(1)
		if err := p.retry(ctx); err == nil || !errors.Is(err, ErrUnavailable) {
			if err != nil {
				m.logError("queued invalidation failed", err, "cache", p.cache, "key", p.key)
			} else {
				m.stats.invalidationsRecovered.Add(1)
			}
			done = append(done, p)
		}
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	q.items = slices.DeleteFunc(q.items, func(p *pendingInvalidation) bool { return slices.Contains(done, p) })
	q.n.Store(int64(len(q.items)))
	if len(q.items) == 0 {
		q.running = false
		return true
	}
	return false
}

// closePending makes a last attempt at the queued invalidations, bounded
// by the write timeout, when the Manager closes.
func (m *Manager) closePending() {
	if m.pending.n.Load() == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), m.writeTimeout)
	defer cancel()
	m.flushPending(ctx)
}

// noteLifetime records that an entry living d (fresh and stale time) was
// written, or may be by a cache just created.
func (m *Manager) noteLifetime(d time.Duration) {
	for {
		cur := m.longest.Load()
		if int64(d) <= cur || m.longest.CompareAndSwap(cur, int64(d)) {
			return
		}
	}
}

// horizon is when every entry this process has written, or would write
// now with its caches' settings, has expired. (An entry another process
// wrote with a longer per-call TTL can outlive it.)
func (m *Manager) horizon() time.Time {
	return monotonic().Add(time.Duration(m.longest.Load()))
}
