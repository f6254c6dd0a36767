package faultproxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cachemgr/cachemgr/internal/redistest"
	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// echoServer starts a TCP server that writes back what it reads, and
// stops it when t ends.
func echoServer(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

// dial connects to addr and closes the connection when t ends.
func dial(t testing.TB, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// roundTrip writes msg to c and reads back as many bytes.
func roundTrip(t testing.TB, c net.Conn, msg []byte) []byte {
	t.Helper()
	if err := c.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatalf("SetDeadline: %v", err)
	}
	if _, err := c.Write(msg); err != nil {
		t.Fatalf("Write: %v", err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("ReadFull: %v", err)
	}
	return got
}

// firstError dials addr and reads one byte, and returns the first error.
// A reset sent right after accept may reach the client during its dial or
// on its first read.
func firstError(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = c.Read(make([]byte, 1))
	return err
}

// waitFor polls cond until it holds or 5s pass.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}

func TestLatency(t *testing.T) {
	tests := []struct {
		name       string
		up, down   time.Duration
		atLeast    time.Duration
		underAbout time.Duration
	}{
		{"none", 0, 0, 0, 500 * time.Millisecond},
		{"upstream", 100 * time.Millisecond, 0, 100 * time.Millisecond, 600 * time.Millisecond},
		{"downstream", 0, 100 * time.Millisecond, 100 * time.Millisecond, 600 * time.Millisecond},
		{"both", 100 * time.Millisecond, 50 * time.Millisecond, 150 * time.Millisecond, 650 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := New(t, echoServer(t))
			c := dial(t, p.Addr())
			roundTrip(t, c, []byte("warm"))
			// Set after connecting: latency applies to live connections.
			p.SetLatency(Upstream, tt.up)
			p.SetLatency(Downstream, tt.down)
			start := time.Now()
			roundTrip(t, c, []byte("ping"))
			if rtt := time.Since(start); rtt < tt.atLeast || rtt > tt.underAbout {
				t.Errorf("round trip with latency up=%v down=%v took %v, want [%v, %v]", tt.up, tt.down, rtt, tt.atLeast, tt.underAbout)
			}
		})
	}
}

func TestLatencyKeepsOrder(t *testing.T) {
	p := New(t, echoServer(t))
	p.SetLatency(Upstream, 20*time.Millisecond)
	p.SetLatency(Downstream, 10*time.Millisecond)
	c := dial(t, p.Addr())
	var want bytes.Buffer
	for i := range 200 {
		msg := fmt.Sprintf("msg-%03d;", i)
		want.WriteString(msg)
		if _, err := c.Write([]byte(msg)); err != nil {
			t.Fatalf("Write(%q): %v", msg, err)
		}
	}
	got := make([]byte, want.Len())
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("ReadFull: %v", err)
	}
	if !bytes.Equal(got, want.Bytes()) {
		t.Errorf("echo through latency = %q, want %q", got, want.Bytes())
	}
}

// redisThrough returns a client of s that dials through a new proxy.
func redisThrough(t *testing.T, s *redistest.Server) (*Proxy, *redis.Client) {
	t.Helper()
	p := New(t, s.Addr())
	c := s.ClientWith(t, func(o *redis.Options) { o.Addr = p.Addr() })
	if err := c.Set(context.Background(), "k", "v", 0).Err(); err != nil {
		t.Fatalf("Set(k) through proxy = %v", err)
	}
	return p, c
}

// get runs GET k under a 200ms deadline and reports how long it took.
func get(c *redis.Client) (string, error, time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	v, err := c.Get(ctx, "k").Result()
	return v, err, time.Since(start)
}

func TestBlackhole(t *testing.T) {
	redistest.Each(t, func(t *testing.T, s *redistest.Server) {
		p, c := redisThrough(t, s)
		p.Blackhole(true)
		_, err, elapsed := get(c)
		if !isTimeout(err) || elapsed > time.Second {
			t.Fatalf("GET while blackholed = %v after %v, want a timeout near 200ms", err, elapsed)
		}
		// go-redis drops the timed-out connection; a raw one shows that
		// the proxy keeps sockets open and silent.
		raw := dial(t, p.Addr())
		_ = raw.SetDeadline(time.Now().Add(100 * time.Millisecond))
		if _, err := raw.Write([]byte("PING\r\n")); err != nil {
			t.Fatalf("Write(PING) while blackholed = %v", err)
		}
		if _, err := raw.Read(make([]byte, 1)); !isTimeout(err) {
			t.Errorf("Read while blackholed = %v, want a timeout on an open socket", err)
		}
		if n := p.Conns(); n != 1 {
			t.Errorf("Conns() while blackholed = %d, want 1", n)
		}
		p.Blackhole(false)
		if v, err, _ := get(c); v != "v" || err != nil {
			t.Fatalf("GET after Blackhole(false) = %q, %v, want v, nil", v, err)
		}
	})
}

func TestCutAll(t *testing.T) {
	redistest.Each(t, func(t *testing.T, s *redistest.Server) {
		p, c := redisThrough(t, s)
		if n := p.Conns(); n != 1 {
			t.Fatalf("Conns() = %d, want 1", n)
		}
		p.CutAll()
		waitFor(t, "Conns() == 0 after CutAll", func() bool { return p.Conns() == 0 })
		// The pool notices the reset connection and dials a new one.
		if v, err, _ := get(c); v != "v" || err != nil {
			t.Fatalf("GET after CutAll = %q, %v, want v, nil", v, err)
		}
		if n := p.Conns(); n != 1 {
			t.Errorf("Conns() after reconnect = %d, want 1", n)
		}
	})
}

func TestCutAllResets(t *testing.T) {
	p := New(t, echoServer(t))
	c := dial(t, p.Addr())
	roundTrip(t, c, []byte("x"))
	p.CutAll()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("Read after CutAll = %v, want ECONNRESET", err)
	}
}

func TestRefuse(t *testing.T) {
	p := New(t, echoServer(t))
	live := dial(t, p.Addr())
	roundTrip(t, live, []byte("x"))
	p.Refuse(true)
	if err := firstError(p.Addr()); !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("connection while refusing got %v, want ECONNRESET", err)
	}
	if n := p.Conns(); n != 1 {
		t.Errorf("Conns() while refusing = %d, want 1 (the live one)", n)
	}
	if got := roundTrip(t, live, []byte("y")); string(got) != "y" {
		t.Errorf("live connection during Refuse echoed %q, want y", got)
	}
	p.Refuse(false)
	if got := roundTrip(t, dial(t, p.Addr()), []byte("z")); string(got) != "z" {
		t.Errorf("new connection after Refuse(false) echoed %q, want z", got)
	}
}

func TestTargetDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	p := New(t, addr)
	if err := firstError(p.Addr()); !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("connection through a proxy to a closed port got %v, want ECONNRESET", err)
	}
}

func TestCloseStopsEverything(t *testing.T) {
	opt := goleak.IgnoreCurrent()
	t.Run("busy", func(t *testing.T) {
		p := New(t, echoServer(t))
		var cs []net.Conn
		for range 5 {
			c := dial(t, p.Addr())
			roundTrip(t, c, []byte("x"))
			cs = append(cs, c)
		}
		// Leave data queued behind a long latency and a blackhole, so
		// Close must interrupt waiting writers.
		p.SetLatency(Downstream, time.Hour)
		for _, c := range cs {
			if _, err := c.Write([]byte("queued")); err != nil {
				t.Fatalf("Write: %v", err)
			}
		}
		start := time.Now()
		p.Close()
		if elapsed := time.Since(start); elapsed > time.Second {
			t.Errorf("Close took %v, want it prompt", elapsed)
		}
		if n := p.Conns(); n != 0 {
			t.Errorf("Conns() after Close = %d, want 0", n)
		}
		if _, err := net.DialTimeout("tcp", p.Addr(), time.Second); err == nil {
			t.Errorf("dial after Close succeeded, want refused")
		}
		p.Close() // idempotent
	})
	goleak.VerifyNone(t, opt)
}

// isTimeout reports whether err is a deadline or network timeout.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}
