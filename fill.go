package cachemgr

import "time"

// A Fetch that finds another process loading its key waits for that
// process's lease. Polling alone (leasePollMin doubling to leasePollMax)
// leaves each waiting process up to a poll interval behind the write-back.
// So a waiting claim also marks the key as awaited (keys.Waiters), and the
// script that frees the lease, when it finds that mark, publishes a
// "filled" event on the events channel: the waiting processes claim again
// at once. The polls stay, for what pub/sub does not deliver (a
// subscription not up yet, a Ring, whose shards do not share their
// channels, a lost message).

// fillWaiter returns a channel that closes when a "filled" event of data
// key rkey arrives, and starts the event listener if it is not running.
// done must be called when the caller stops waiting.
func (m *Manager) fillWaiter(rkey string) (ch <-chan struct{}, done func()) {
	m.startEvents()
	c := make(chan struct{})
	if cur, loaded := m.ev.fills.LoadOrStore(rkey, c); loaded {
		return cur.(chan struct{}), func() {}
	}
	return c, func() { m.ev.fills.CompareAndDelete(rkey, c) }
}

// filled wakes the processes' waiters of the data keys of a "filled"
// event.
func (m *Manager) filled(rkeys []string) {
	for _, k := range rkeys {
		if c, ok := m.ev.fills.LoadAndDelete(k); ok {
			close(c.(chan struct{}))
		}
	}
}

// leaseWait waits d, or until a "filled" event of rkey arrives (filled),
// or the Manager closes; it reports false for the last.
func (m *Manager) leaseWait(d time.Duration, filled <-chan struct{}) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-filled:
	case <-m.ctx.Done():
		return false
	}
	return true
}

// isClosed reports whether c, if not nil, is closed.
func isClosed(c <-chan struct{}) bool {
	if c == nil {
		return false
	}
	select {
	case <-c:
		return true
	default:
		return false
	}
}
