package faultproxy

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/cachemgr/cachemgr/internal/redistest"
	"github.com/redis/go-redis/v9"
)

// dialVia connects to addr through d and closes the connection when t ends.
func dialVia(t *testing.T, d *Dialer, addr string) net.Conn {
	t.Helper()
	c, err := d.DialContext(context.Background(), "tcp", addr)
	if err != nil {
		t.Fatalf("DialContext(%s): %v", addr, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func TestDialerPassesData(t *testing.T) {
	d := NewDialer(t)
	c := dialVia(t, d, echoServer(t))
	if got := roundTrip(t, c, []byte("hello")); string(got) != "hello" {
		t.Errorf("echo through Dialer = %q, want hello", got)
	}
	if n := d.Dials(); n != 1 {
		t.Errorf("Dials() = %d, want 1", n)
	}
	if n := d.Conns(); n != 1 {
		t.Errorf("Conns() = %d, want 1", n)
	}
	_ = c.Close()
	if n := d.Conns(); n != 0 {
		t.Errorf("Conns() after Close = %d, want 0", n)
	}
}

func TestDialerCountsFailedDials(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	d := NewDialer(t)
	for range 3 {
		if c, err := d.DialContext(context.Background(), "tcp", addr); err == nil {
			_ = c.Close()
			t.Fatalf("DialContext(closed port) succeeded")
		}
	}
	if n := d.Dials(); n != 3 {
		t.Errorf("Dials() = %d, want 3", n)
	}
}

// TestDialerLoseAcks: the server executes the request, the client gets
// ErrLostAck instead of the reply, and the next connection works.
func TestDialerLoseAcks(t *testing.T) {
	s := redistest.Start(t)
	d := NewDialer(t)
	c := s.ClientWith(t, func(o *redis.Options) { o.Dialer = d.DialContext })
	ctx := context.Background()
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("PING: %v", err)
	}
	d.LoseAcks(1)
	if err := c.Set(ctx, "k", "executed", 0).Err(); !errors.Is(err, ErrLostAck) {
		t.Fatalf("SET with its reply lost = %v, want ErrLostAck", err)
	}
	if n := d.LostAcks(); n != 1 {
		t.Errorf("LostAcks() = %d, want 1", n)
	}
	// The write happened: the admin connection sees it.
	if v, err := s.Do(ctx, "GET", "k").Text(); v != "executed" || err != nil {
		t.Errorf("GET k on the server = %q, %v, want executed (the request was forwarded)", v, err)
	}
	if v, err := c.Get(ctx, "k").Result(); v != "executed" || err != nil {
		t.Errorf("GET k after the lost ack = %q, %v, want executed on a new connection", v, err)
	}
	if n := d.LostAcks(); n != 1 {
		t.Errorf("LostAcks() = %d, want still 1", n)
	}
}

func TestDialerHalfOpen(t *testing.T) {
	tests := []struct {
		dir          Direction
		wantExecuted bool
	}{
		{Upstream, false},
		{Downstream, true},
	}
	for _, tt := range tests {
		t.Run(tt.dir.String(), func(t *testing.T) {
			s := redistest.Start(t)
			d := NewDialer(t)
			c := s.ClientWith(t, func(o *redis.Options) { o.Dialer = d.DialContext })
			ctx := context.Background()
			if err := c.Ping(ctx).Err(); err != nil {
				t.Fatalf("PING: %v", err)
			}
			d.HalfOpen(tt.dir, true)
			tctx, cancel := context.WithTimeout(ctx, 150*time.Millisecond)
			start := time.Now()
			err := c.Set(tctx, "k", "v", 0).Err()
			cancel()
			if !isTimeout(err) {
				t.Fatalf("SET while %v is half-open = %v, want a timeout", tt.dir, err)
			}
			if took := time.Since(start); took > time.Second {
				t.Errorf("SET while half-open took %v, want about 150ms", took)
			}
			n, err := s.Do(ctx, "EXISTS", "k").Int()
			if err != nil {
				t.Fatalf("EXISTS k on the server: %v", err)
			}
			if got := n == 1; got != tt.wantExecuted {
				t.Errorf("SET executed while %v half-open = %v, want %v", tt.dir, got, tt.wantExecuted)
			}
			d.HalfOpen(tt.dir, false)
			if err := c.Set(ctx, "k", "v2", 0).Err(); err != nil {
				t.Errorf("SET after HalfOpen(false) = %v, want it to work on a new connection", err)
			}
		})
	}
}

func TestDialerCutAll(t *testing.T) {
	d := NewDialer(t)
	c := dialVia(t, d, echoServer(t))
	roundTrip(t, c, []byte("x"))
	d.CutAll()
	if n := d.Conns(); n != 0 {
		t.Errorf("Conns() after CutAll = %d, want 0", n)
	}
	_ = c.SetReadDeadline(time.Now().Add(time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Errorf("Read after CutAll succeeded, want an error")
	}
}

func TestDialerWithProxy(t *testing.T) {
	s := redistest.Start(t)
	p := New(t, s.Addr())
	d := NewDialer(t)
	c := s.ClientWith(t, func(o *redis.Options) { o.Addr, o.Dialer = p.Addr(), d.DialContext })
	ctx := context.Background()
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET through Dialer and Proxy: %v", err)
	}
	if p.Conns() != 1 || d.Conns() != 1 {
		t.Errorf("Proxy.Conns() = %d, Dialer.Conns() = %d, want 1 and 1", p.Conns(), d.Conns())
	}
}

func TestDialerLoseAcksStops(t *testing.T) {
	d := NewDialer(t)
	addr := echoServer(t)
	d.LoseAcks(100)
	d.LoseAcks(0)
	c := dialVia(t, d, addr)
	if got := roundTrip(t, c, []byte("kept")); string(got) != "kept" {
		t.Errorf("echo after LoseAcks(0) = %q, want kept", got)
	}
	d.LoseAcks(1)
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("lost")); err != nil {
		t.Fatalf("Write: %v", err)
	}
	if _, err := c.Read(make([]byte, 4)); !errors.Is(err, ErrLostAck) {
		t.Errorf("Read after LoseAcks(1) = %v, want ErrLostAck", err)
	}
	if n := d.LostAcks(); n != 1 {
		t.Errorf("LostAcks() = %d, want 1", n)
	}
}
