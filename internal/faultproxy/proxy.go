package faultproxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Direction selects one way of a proxied connection.
type Direction int

// The two directions of a connection.
const (
	Upstream   Direction = iota // client to server
	Downstream                  // server to client
)

// String returns "upstream" or "downstream".
func (d Direction) String() string {
	switch d {
	case Upstream:
		return "upstream"
	case Downstream:
		return "downstream"
	}
	return fmt.Sprintf("Direction(%d)", int(d))
}

// dialTimeout bounds the proxy's own dial to the target.
const dialTimeout = 2 * time.Second

// chunkSize is the most one read forwards as a single chunk.
const chunkSize = 32 << 10

// Proxy forwards TCP connections from its own address to a target. Its
// methods are safe for concurrent use. Everything it started has stopped
// once [Proxy.Close] returns.
type Proxy struct {
	t      testing.TB
	target string
	ln     net.Listener
	ctx    context.Context // canceled by Close, to abort dials
	cancel context.CancelFunc
	wg     sync.WaitGroup // every goroutine the proxy started

	latency   [2]atomic.Int64 // per Direction, in nanoseconds
	blackhole atomic.Bool
	refuse    atomic.Bool

	mu     sync.Mutex
	closed bool
	links  map[*link]struct{}
}

// New starts a proxy to target on 127.0.0.1 and closes it when t ends. It
// does not dial target until a client connects.
func New(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("faultproxy: listen: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Proxy{
		t:      t,
		target: target,
		ln:     ln,
		ctx:    ctx,
		cancel: cancel,
		links:  make(map[*link]struct{}),
	}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.Close)
	return p
}

// Addr returns the host:port clients should dial.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Target returns the address the proxy forwards to.
func (p *Proxy) Target() string { return p.target }

// SetLatency delays every chunk of data sent in direction dir by d from the
// moment the proxy reads it, keeping the order of chunks. It applies to data
// read after the call; zero turns it off. Default: 0.
func (p *Proxy) SetLatency(dir Direction, d time.Duration) {
	p.t.Helper()
	if dir != Upstream && dir != Downstream {
		p.t.Fatalf("faultproxy: SetLatency(%v, %v): unknown direction", dir, d)
	}
	if d < 0 {
		p.t.Fatalf("faultproxy: SetLatency(%v, %v): negative latency", dir, d)
	}
	p.latency[dir].Store(int64(d))
}

// Blackhole, while on, makes the proxy forward nothing in either direction:
// connections are still accepted and kept open, and data sent on them is
// read and dropped, as when the server's host hangs. Data dropped is lost
// for good, so a connection that lost a request or reply is out of step;
// a client should use a fresh one after Blackhole(false). Default: off.
func (p *Proxy) Blackhole(on bool) { p.blackhole.Store(on) }

// Refuse, while on, makes the proxy close each new connection as soon as
// it accepts it, with a TCP reset. Live connections are not affected.
// Default: off.
func (p *Proxy) Refuse(on bool) { p.refuse.Store(on) }

// CutAll closes every live connection, on both its client and server side,
// with a TCP reset (linger 0), as a network failure or a killed peer would.
// Later connections are proxied as usual.
func (p *Proxy) CutAll() {
	for _, l := range p.snapshot() {
		l.close(true)
	}
}

// Conns returns the number of live proxied connections: those accepted and
// connected to the target and not yet closed.
func (p *Proxy) Conns() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.links)
}

// Close stops accepting, closes every connection and waits until every
// goroutine of the proxy has exited. It may be called more than once; New
// registers it with t.Cleanup.
func (p *Proxy) Close() {
	p.mu.Lock()
	already := p.closed
	p.closed = true
	p.mu.Unlock()
	if !already {
		p.cancel()
		_ = p.ln.Close()
		for _, l := range p.snapshot() {
			l.close(false)
		}
	}
	p.wg.Wait()
}

// snapshot returns the live links.
func (p *Proxy) snapshot() []*link {
	p.mu.Lock()
	defer p.mu.Unlock()
	ls := make([]*link, 0, len(p.links))
	for l := range p.links {
		ls = append(ls, l)
	}
	return ls
}

// accept runs until the listener is closed.
func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// A transient error such as EMFILE: back off briefly, unless
			// the proxy is closing.
			select {
			case <-p.ctx.Done():
				return
			case <-time.After(5 * time.Millisecond):
			}
			continue
		}
		if p.refuse.Load() {
			reset(c)
			continue
		}
		p.wg.Add(1)
		go p.serve(c)
	}
}

// serve dials the target for client connection c and forwards between the
// two until either side ends.
func (p *Proxy) serve(c net.Conn) {
	defer p.wg.Done()
	var d net.Dialer
	ctx, cancel := context.WithTimeout(p.ctx, dialTimeout)
	s, err := d.DialContext(ctx, "tcp", p.target)
	cancel()
	if err != nil {
		// The target is down: the client sees a reset, as it would
		// connecting to the target directly.
		reset(c)
		return
	}
	l := &link{client: c, server: s, done: make(chan struct{})}
	if !p.add(l) {
		l.close(false)
		return
	}
	defer p.remove(l)
	up := make(chan struct{})
	go func() {
		defer close(up)
		p.pipe(l, Upstream, c, s)
	}()
	p.pipe(l, Downstream, s, c)
	<-up
}

// add registers l, or reports false if the proxy is closing.
func (p *Proxy) add(l *link) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.links[l] = struct{}{}
	return true
}

// remove unregisters l.
func (p *Proxy) remove(l *link) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.links, l)
}

// chunk is data read from one side, due to be written to the other at due.
type chunk struct {
	data []byte
	due  time.Time
}

// pipe forwards src to dst for direction dir until either fails or l is
// closed, then closes l. A reader goroutine stamps each chunk with its due
// time, and this goroutine writes the chunks in order once due, so latency
// delays data without reordering it or slowing the reads.
func (p *Proxy) pipe(l *link, dir Direction, src, dst net.Conn) {
	defer l.close(false)
	chunks := make(chan chunk, 64)
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		defer close(chunks)
		p.readChunks(l, dir, src, chunks)
	}()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for ch := range chunks {
		if wait := time.Until(ch.due); wait > 0 {
			timer.Reset(wait)
			select {
			case <-timer.C:
			case <-l.done:
				return
			}
		}
		if p.blackhole.Load() {
			continue
		}
		if _, err := dst.Write(ch.data); err != nil {
			return
		}
	}
}

// readChunks reads src into chunks, each stamped with the time it is due
// at with direction dir's latency, until src fails or l is closed.
func (p *Proxy) readChunks(l *link, dir Direction, src net.Conn, chunks chan<- chunk) {
	buf := make([]byte, chunkSize)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			due := time.Now().Add(time.Duration(p.latency[dir].Load()))
			data := append([]byte(nil), buf[:n]...)
			select {
			case chunks <- chunk{data: data, due: due}:
			case <-l.done:
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// link is one proxied connection: the client's socket and ours to the
// target.
type link struct {
	client, server net.Conn
	done           chan struct{} // closed by close
	once           sync.Once
}

// close closes both sockets, with a reset if rst is set, and wakes the
// link's goroutines.
func (l *link) close(rst bool) {
	l.once.Do(func() {
		close(l.done)
		if rst {
			reset(l.client)
			reset(l.server)
			return
		}
		_ = l.client.Close()
		_ = l.server.Close()
	})
}

// reset closes c with a TCP RST instead of a FIN.
func reset(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}
