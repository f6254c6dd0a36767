package coherence

import (
	"bytes"
	"context"
	"net"
	"sync"
	"sync/atomic"
)

// subscribeCmd is how a SUBSCRIBE command starts on the wire (RESP), which
// is how a pubSubDialer tells a subscription's connection from the others.
var subscribeCmd = []byte("$9\r\nsubscribe\r\n")

// pubSubDialer dials a client's connections and can cut or silently stall
// those that carry a subscription, leaving the others alone: the fault of
// a half-open connection or a stalled proxy on the events channel, while
// reads and writes go on. It is safe for concurrent use.
type pubSubDialer struct {
	dropped atomic.Int64 // bytes a stalled connection read and dropped

	mu    sync.Mutex
	conns map[*trackedConn]struct{}
}

func newPubSubDialer() *pubSubDialer {
	return &pubSubDialer{conns: map[*trackedConn]struct{}{}}
}

// DialContext is a go-redis Options.Dialer.
func (d *pubSubDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	var nd net.Dialer
	c, err := nd.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	tc := &trackedConn{Conn: c, d: d}
	d.mu.Lock()
	d.conns[tc] = struct{}{}
	d.mu.Unlock()
	return tc, nil
}

// subscriptions returns the live connections that carry a subscription.
func (d *pubSubDialer) subscriptions() []*trackedConn {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []*trackedConn
	for c := range d.conns {
		if c.pubsub.Load() {
			out = append(out, c)
		}
	}
	return out
}

// Stall makes every live subscription connection drop what it sends and
// receives while staying open, and returns how many it stalled.
// Connections made later are healthy.
func (d *pubSubDialer) Stall() int {
	cs := d.subscriptions()
	for _, c := range cs {
		c.stalled.Store(true)
	}
	return len(cs)
}

// Cut resets every live subscription connection (stalled or not), as a
// network failure would, and returns how many it cut.
func (d *pubSubDialer) Cut() int {
	cs := d.subscriptions()
	for _, c := range cs {
		c.reset()
	}
	return len(cs)
}

func (d *pubSubDialer) forget(c *trackedConn) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.conns, c)
}

// trackedConn is a connection made by a pubSubDialer.
type trackedConn struct {
	net.Conn
	d       *pubSubDialer
	pubsub  atomic.Bool // a SUBSCRIBE went out on it
	stalled atomic.Bool
	once    sync.Once
}

func (c *trackedConn) Write(p []byte) (int, error) {
	if !c.pubsub.Load() && bytes.Contains(p[:min(len(p), 64)], subscribeCmd) {
		c.pubsub.Store(true)
	}
	if c.stalled.Load() {
		return len(p), nil // swallowed: the peer never sees it
	}
	return c.Conn.Write(p)
}

func (c *trackedConn) Read(p []byte) (int, error) {
	for {
		n, err := c.Conn.Read(p)
		if n > 0 && c.stalled.Load() && err == nil {
			c.d.dropped.Add(int64(n))
			continue // dropped; the read waits for more, or its deadline
		}
		if c.stalled.Load() {
			return 0, err
		}
		return n, err
	}
}

func (c *trackedConn) Close() error {
	err := net.ErrClosed
	c.once.Do(func() {
		c.d.forget(c)
		err = c.Conn.Close()
	})
	return err
}

// reset closes the connection with a TCP RST.
func (c *trackedConn) reset() {
	c.once.Do(func() {
		c.d.forget(c)
		if tc, ok := c.Conn.(*net.TCPConn); ok {
			_ = tc.SetLinger(0)
		}
		_ = c.Conn.Close()
	})
}
