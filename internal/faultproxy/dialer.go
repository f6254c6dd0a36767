package faultproxy

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// ErrLostAck is what a read returns on a connection whose reply a [Dialer]
// swallowed: the request reached the server, the answer never came back.
var ErrLostAck = errors.New("faultproxy: reply lost, connection closed")

// Dialer makes the connections of one client and breaks them in ways a
// proxy in the middle cannot target as precisely: it loses the reply to a
// request the server has already executed (a lost acknowledgement), or goes
// half-open in one direction only. Pass its DialContext as the Dialer of a
// go-redis client; it dials the address it is given, which may be a
// server's or a [Proxy]'s, so the faults of both combine. Its methods are
// safe for concurrent use, and faults take effect at once on live
// connections. NewDialer closes every connection it made when the test ends.
type Dialer struct {
	t        testing.TB
	dials    atomic.Int64
	lostAcks atomic.Int64 // replies still to lose
	lost     atomic.Int64 // replies lost so far
	halfOpen [2]atomic.Bool

	mu     sync.Mutex
	closed bool
	live   map[*faultConn]struct{}
}

// NewDialer returns a Dialer that injects no fault until told to, and
// closes its connections when t ends.
func NewDialer(t testing.TB) *Dialer {
	t.Helper()
	d := &Dialer{t: t, live: make(map[*faultConn]struct{})}
	t.Cleanup(d.close)
	return d
}

// DialContext dials addr over network and wraps the connection. It counts
// every attempt, failed ones included. After the test has ended it fails.
func (d *Dialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	d.dials.Add(1)
	var nd net.Dialer
	c, err := nd.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	fc := &faultConn{Conn: c, d: d}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		_ = c.Close()
		return nil, net.ErrClosed
	}
	d.live[fc] = struct{}{}
	return fc, nil
}

// Dials returns how many dials were attempted, successful or not.
func (d *Dialer) Dials() int { return int(d.dials.Load()) }

// Conns returns the number of connections made and not yet closed.
func (d *Dialer) Conns() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.live)
}

// LoseAcks makes the next n reads that receive data, on any connection,
// drop that data, reset the connection and fail with [ErrLostAck]: the
// server executed the request, the client never learns its result. It
// replaces any losses still pending, so LoseAcks(0) stops losing replies;
// a negative n counts as 0.
func (d *Dialer) LoseAcks(n int) {
	d.lostAcks.Store(int64(max(n, 0)))
}

// LostAcks returns how many replies have been lost so far.
func (d *Dialer) LostAcks() int { return int(d.lost.Load()) }

// HalfOpen, while on, stops data in direction dir and keeps the sockets
// open, as a one-way network failure would: Upstream swallows what the
// client writes (its writes still succeed, so the request never reaches
// the server), Downstream reads and drops what the server sends (the
// server executes every request, and the client's reads wait until their
// deadline). A connection that lost data is out of step; a client should
// use fresh ones after HalfOpen(dir, false). Default: off.
func (d *Dialer) HalfOpen(dir Direction, on bool) {
	d.t.Helper()
	if dir != Upstream && dir != Downstream {
		d.t.Fatalf("faultproxy: HalfOpen(%v, %t): unknown direction", dir, on)
	}
	d.halfOpen[dir].Store(on)
}

// CutAll resets every live connection, as a killed peer would.
func (d *Dialer) CutAll() {
	for _, c := range d.snapshot() {
		c.reset()
	}
}

func (d *Dialer) snapshot() []*faultConn {
	d.mu.Lock()
	defer d.mu.Unlock()
	cs := make([]*faultConn, 0, len(d.live))
	for c := range d.live {
		cs = append(cs, c)
	}
	return cs
}

func (d *Dialer) close() {
	d.mu.Lock()
	d.closed = true
	d.mu.Unlock()
	for _, c := range d.snapshot() {
		_ = c.Close()
	}
}

func (d *Dialer) forget(c *faultConn) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.live, c)
}

// takeLostAck reports whether the caller should lose the reply it read.
func (d *Dialer) takeLostAck() bool {
	for {
		n := d.lostAcks.Load()
		if n <= 0 {
			return false
		}
		if d.lostAcks.CompareAndSwap(n, n-1) {
			d.lost.Add(1)
			return true
		}
	}
}

// faultConn is a connection made by a Dialer.
type faultConn struct {
	net.Conn
	d    *Dialer
	once sync.Once
	lost atomic.Bool // a reply was lost: every later read fails alike
}

func (c *faultConn) Write(p []byte) (int, error) {
	if c.d.halfOpen[Upstream].Load() {
		return len(p), nil
	}
	return c.Conn.Write(p)
}

func (c *faultConn) Read(p []byte) (int, error) {
	for {
		if c.lost.Load() {
			return 0, ErrLostAck
		}
		n, err := c.Conn.Read(p)
		if n > 0 && c.d.takeLostAck() {
			c.lost.Store(true)
			c.reset()
			return 0, ErrLostAck
		}
		if n > 0 && c.d.halfOpen[Downstream].Load() {
			if err != nil {
				return 0, err
			}
			continue // dropped; the read deadline still applies
		}
		return n, err
	}
}

func (c *faultConn) Close() error {
	var err error
	c.once.Do(func() {
		c.d.forget(c)
		err = c.Conn.Close()
	})
	return err
}

// reset closes the connection with a TCP RST.
func (c *faultConn) reset() {
	c.once.Do(func() {
		c.d.forget(c)
		reset(c.Conn)
	})
}
