package cachemgr_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cachemgr/cachemgr"
	"github.com/cachemgr/cachemgr/internal/faultproxy"
	"github.com/cachemgr/cachemgr/internal/redistest"
	"github.com/redis/go-redis/v9"
)

func TestNewRejectsBadInput(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	t.Cleanup(func() { rdb.Close() })
	tests := []struct {
		name   string
		client redis.UniversalClient
		opts   []cachemgr.Option
	}{
		{"nil client", nil, nil},
		{"nil option", rdb, []cachemgr.Option{nil}},
		{"brace in prefix", rdb, []cachemgr.Option{cachemgr.WithPrefix("a{b}")}},
		{"nil codec", rdb, []cachemgr.Option{cachemgr.WithCodec(nil)}},
		{"nil compressor", rdb, []cachemgr.Option{cachemgr.WithCompressor(nil)}},
		{"negative threshold", rdb, []cachemgr.Option{cachemgr.WithCompressThreshold(-1)}},
		{"zero op timeout", rdb, []cachemgr.Option{cachemgr.WithOpTimeout(0)}},
		{"negative load timeout", rdb, []cachemgr.Option{cachemgr.WithLoadTimeout(-time.Second)}},
		{"negative breaker", rdb, []cachemgr.Option{cachemgr.WithBreaker(-1, time.Second)}},
		{"zero cooldown", rdb, []cachemgr.Option{cachemgr.WithBreaker(3, 0)}},
		{"zero max value", rdb, []cachemgr.Option{cachemgr.WithMaxValueSize(0)}},
		{"zero max key", rdb, []cachemgr.Option{cachemgr.WithMaxKeyLen(0)}},
		{"nil logger", rdb, []cachemgr.Option{cachemgr.WithLogger(nil)}},
		{"nil clock", rdb, []cachemgr.Option{cachemgr.WithClock(nil)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := cachemgr.New(tt.client, tt.opts...)
			if !errors.Is(err, cachemgr.ErrInvalidOption) {
				t.Errorf("New() = %v, %v; want ErrInvalidOption", m, err)
			}
		})
	}
}

func TestNewCacheRejectsBadInput(t *testing.T) {
	m, _ := newManager(t, redistest.StartMini(t))
	tests := []struct {
		name  string
		cache string
		opts  []cachemgr.CacheOption
		want  error
	}{
		{"empty name", "", nil, cachemgr.ErrInvalidOption},
		{"colon in name", "a:b", nil, cachemgr.ErrInvalidOption},
		{"brace in name", "{a}", nil, cachemgr.ErrInvalidOption},
		{"nil option", "ok", []cachemgr.CacheOption{nil}, cachemgr.ErrInvalidOption},
		{"zero ttl", "ok", []cachemgr.CacheOption{cachemgr.WithTTL(0)}, cachemgr.ErrInvalidTTL},
		{"negative ttl", "ok", []cachemgr.CacheOption{cachemgr.WithTTL(-time.Second)}, cachemgr.ErrInvalidTTL},
		{"huge ttl", "ok", []cachemgr.CacheOption{cachemgr.WithTTL(cachemgr.MaxTTL + 1)}, cachemgr.ErrInvalidTTL},
		{"negative negative ttl", "ok", []cachemgr.CacheOption{cachemgr.WithNegativeTTL(-1)}, cachemgr.ErrInvalidTTL},
		{"jitter above half", "ok", []cachemgr.CacheOption{cachemgr.WithJitter(0.6)}, cachemgr.ErrInvalidOption},
		{"negative jitter", "ok", []cachemgr.CacheOption{cachemgr.WithJitter(-0.1)}, cachemgr.ErrInvalidOption},
		{"nil cache codec", "ok", []cachemgr.CacheOption{cachemgr.WithCacheCodec(nil)}, cachemgr.ErrInvalidOption},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := cachemgr.NewCache[int](m, tt.cache, tt.opts...); !errors.Is(err, tt.want) {
				t.Errorf("NewCache(%q) error = %v, want %v", tt.cache, err, tt.want)
			}
		})
	}
	if _, err := cachemgr.NewCache[int](m, "ok"); err != nil {
		t.Fatalf("NewCache[int](ok) error = %v", err)
	}
	if _, err := cachemgr.NewCache[string](m, "ok"); !errors.Is(err, cachemgr.ErrInvalidOption) {
		t.Errorf("NewCache[string](name used for int) error = %v, want ErrInvalidOption", err)
	}
	if _, err := cachemgr.NewCache[int](m, "ok"); err != nil {
		t.Errorf("NewCache[int](same name, same type) error = %v, want a second handle", err)
	}
	if _, err := cachemgr.NewCache[int](nil, "x"); !errors.Is(err, cachemgr.ErrInvalidOption) {
		t.Errorf("NewCache(nil manager) error = %v, want ErrInvalidOption", err)
	}
}

func TestClosedManager(t *testing.T) {
	m, _ := newManager(t, redistest.StartMini(t))
	c := newCache[string](t, m, "closed")
	if err := c.Set(context.Background(), "k", "v"); err != nil {
		t.Fatalf("Set() error = %v", err)
	}
	if err := m.Close(); err != nil {
		t.Fatalf("Close() error = %v", err)
	}
	if err := m.Close(); err != nil {
		t.Fatalf("second Close() error = %v", err)
	}
	ctx := context.Background()
	loads := 0
	load := func(context.Context) (string, error) { loads++; return "x", nil }
	if _, err := c.Get(ctx, "k"); !errors.Is(err, cachemgr.ErrClosed) {
		t.Errorf("Get after Close error = %v, want ErrClosed", err)
	}
	if err := c.Set(ctx, "k", "v"); !errors.Is(err, cachemgr.ErrClosed) {
		t.Errorf("Set after Close error = %v, want ErrClosed", err)
	}
	if err := c.Delete(ctx, "k"); !errors.Is(err, cachemgr.ErrClosed) {
		t.Errorf("Delete after Close error = %v, want ErrClosed", err)
	}
	if _, err := c.Fetch(ctx, "k", load); !errors.Is(err, cachemgr.ErrClosed) || loads != 0 {
		t.Errorf("Fetch after Close = %v with %d loads, want ErrClosed and 0 loads", err, loads)
	}
	if _, err := cachemgr.NewCache[int](m, "late"); !errors.Is(err, cachemgr.ErrClosed) {
		t.Errorf("NewCache after Close error = %v, want ErrClosed", err)
	}
}

// fetchWithin runs a Fetch of key and fails the test unless it returns the
// loader's value within limit.
// fetchWithin fails t unless Fetch of key answers from the loader within
// limit plus the slack a loaded two-core machine running -race needs
// (1.5s): what it catches is a Fetch that waited for the client's socket
// timeout (3s in tests) or for ever.
func fetchWithin(t *testing.T, c *cachemgr.Cache[string], key string, limit time.Duration) {
	t.Helper()
	limit += 1500 * time.Millisecond
	start := time.Now()
	got, err := c.Fetch(context.Background(), key, func(context.Context) (string, error) {
		return "from loader " + key, nil
	})
	took := time.Since(start)
	if err != nil || got != "from loader "+key {
		t.Fatalf("Fetch(%q) = %q, %v; want the loader's value", key, got, err)
	}
	if took > limit {
		t.Errorf("Fetch(%q) took %v, want at most %v", key, took, limit)
	}
}

// TestFailOpenServerKilled proves guarantee 2 for a dead server: every Fetch
// answers from the loader, the breaker opens, and after a restart it closes
// and the cache fills again.
func TestFailOpenServerKilled(t *testing.T) {
	s := redistest.Start(t)
	const op = 100 * time.Millisecond
	m, _ := newManager(t, s, cachemgr.WithOpTimeout(op), cachemgr.WithBreaker(3, 200*time.Millisecond))
	c := newCache[string](t, m, "fo")
	ctx := context.Background()
	fetchWithin(t, c, "warm", time.Second)
	s.Kill()
	for i := 0; i < 20; i++ {
		fetchWithin(t, c, fmt.Sprint("k", i), 3*op)
	}
	st := m.Stats()
	if st.Breaker != "open" || st.Skipped == 0 || st.RedisErrors == 0 {
		t.Errorf("Stats() with server dead = %+v, want breaker open, calls skipped, errors counted", st)
	}
	if _, err := c.Get(ctx, "warm"); !errors.Is(err, cachemgr.ErrUnavailable) {
		t.Errorf("Get() with server dead error = %v, want ErrUnavailable", err)
	}
	s.Restart()
	waitFor(t, "the breaker to close after restart", func() bool {
		fetchWithin(t, c, "after", 3*op)
		return m.Stats().Breaker == "closed"
	})
	if _, err := c.Fetch(ctx, "again", func(context.Context) (string, error) { return "v", nil }); err != nil {
		t.Fatalf("Fetch() after restart error = %v", err)
	}
	if v, err := c.Get(ctx, "again"); err != nil || v != "v" {
		t.Errorf("Get() after restart = %q, %v; want the cached value", v, err)
	}
}

// TestFailOpenServerPaused proves guarantee 2 for a frozen server (SIGSTOP:
// connections accept, replies never come), on both call paths: a client that
// honours ctx deadlines, and one that does not (go-redis' default), whose
// calls the Manager abandons at the op timeout.
func TestFailOpenServerPaused(t *testing.T) {
	tests := []struct {
		name       string
		ctxTimeout bool
	}{
		{"context deadlines honoured", true},
		{"go-redis defaults", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := redistest.Start(t)
			rdb := s.ClientWith(t, func(o *redis.Options) {
				o.ContextTimeoutEnabled = tt.ctxTimeout
				o.ReadTimeout, o.MaxRetries = 500*time.Millisecond, 3
			})
			const op = 100 * time.Millisecond
			m, err := cachemgr.New(rdb, cachemgr.WithOpTimeout(op), cachemgr.WithLogger(quiet))
			if err != nil {
				t.Fatalf("New() error = %v", err)
			}
			c := newCache[string](t, m, "pause")
			fetchWithin(t, c, "warm", time.Second)
			s.Pause()
			for i := 0; i < 5; i++ {
				fetchWithin(t, c, fmt.Sprint("k", i), 3*op)
			}
			s.Resume()
			// Close waits for calls the Manager stopped waiting for.
			if err := m.Close(); err != nil {
				t.Fatalf("Close() error = %v", err)
			}
		})
	}
}

func TestGetUnavailableIsWrapped(t *testing.T) {
	s := redistest.Start(t)
	m, _ := newManager(t, s, cachemgr.WithOpTimeout(50*time.Millisecond))
	c := newCache[string](t, m, "u")
	s.Pause()
	defer s.Resume()
	start := time.Now()
	_, err := c.Get(context.Background(), "k")
	if !errors.Is(err, cachemgr.ErrUnavailable) {
		t.Errorf("Get() on paused server error = %v, want ErrUnavailable", err)
	}
	// Bounded by the op timeout; the slack is a loaded machine's, still
	// below the client's 3s socket timeout that an unbounded call would
	// wait for.
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Get() on paused server took %v", d)
	}
	if err := c.Set(context.Background(), "k", "v"); !errors.Is(err, cachemgr.ErrUnavailable) {
		t.Errorf("Set() on paused server error = %v, want ErrUnavailable", err)
	}
}

// TestLateReplyNeverAnswersAnotherKey: a reply that arrives after the op
// timeout must not be read as the answer to the next command on the
// connection (wrong-key data). The proxy delays replies past the timeout.
func TestLateReplyNeverAnswersAnotherKey(t *testing.T) {
	tests := []struct {
		name       string
		ctxTimeout bool
	}{
		{"context deadlines honoured", true},
		{"go-redis defaults", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := redistest.Start(t)
			p := faultproxy.New(t, s.Addr())
			rdb := redis.NewClient(&redis.Options{Addr: p.Addr(), ContextTimeoutEnabled: tt.ctxTimeout, PoolSize: 1, ReadTimeout: time.Second})
			t.Cleanup(func() { rdb.Close() })
			m, err := cachemgr.New(rdb, cachemgr.WithOpTimeout(50*time.Millisecond), cachemgr.WithLogger(quiet))
			if err != nil {
				t.Fatalf("New() error = %v", err)
			}
			t.Cleanup(func() { m.Close() })
			c := newCache[string](t, m, "late")
			ctx := context.Background()
			for _, k := range []string{"k1", "k2", "k3"} {
				if err := c.Set(ctx, k, "value of "+k); err != nil {
					t.Fatalf("Set(%q) error = %v", k, err)
				}
			}
			p.SetLatency(faultproxy.Downstream, 150*time.Millisecond)
			if v, err := c.Get(ctx, "k1"); !errors.Is(err, cachemgr.ErrUnavailable) {
				t.Fatalf("Get(k1) with slow replies = %q, %v; want ErrUnavailable", v, err)
			}
			p.SetLatency(faultproxy.Downstream, 0)
			for _, k := range []string{"k2", "k3", "k1"} {
				var v string
				var err error
				waitFor(t, "a reply within the op timeout", func() bool {
					v, err = c.Get(ctx, k)
					return !errors.Is(err, cachemgr.ErrUnavailable)
				})
				if err != nil || v != "value of "+k {
					t.Errorf("Get(%q) after a late reply = %q, %v; want %q", k, v, err, "value of "+k)
				}
			}
		})
	}
}

// failPipelines is a go-redis hook that fails every pipeline without
// marking its commands, as some instrumentation hooks do.
type failPipelines struct{}

func (failPipelines) DialHook(next redis.DialHook) redis.DialHook          { return next }
func (failPipelines) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }
func (failPipelines) ProcessPipelineHook(redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(context.Context, []redis.Cmder) error { return errors.New("pipeline refused by hook") }
}

// TestPipelineFailureWithoutMarkedCommands: a pipeline that fails as a
// whole is a Redis failure, never a set of empty replies read as data.
func TestPipelineFailureWithoutMarkedCommands(t *testing.T) {
	m, rdb := newManager(t, redistest.StartMini(t), cachemgr.WithCoalescing(false))
	c := newCache[string](t, m, "hook")
	ctx := context.Background()
	if err := c.Set(ctx, "k", "v", cachemgr.Tags("a", "b")); err != nil {
		t.Fatalf("Set() error = %v", err)
	}
	// Connections open before the hook: go-redis initialises a new one
	// with a pipeline, which the hook would refuse too.
	if err := rdb.Ping(ctx).Err(); err != nil {
		t.Fatalf("PING error = %v", err)
	}
	rdb.AddHook(failPipelines{})
	if _, err := c.Get(ctx, "k"); !errors.Is(err, cachemgr.ErrUnavailable) {
		t.Errorf("Get() with pipelines failing = %v, want ErrUnavailable", err)
	}
	if n := rdb.Exists(ctx, "test:hook:{=k}").Val(); n != 1 {
		t.Errorf("entry deleted after a failed pipeline; it was never read")
	}
}

// TestPing: Ping answers nil on a live server; on an address that refuses
// connections its error names the cause, however go-redis reported it.
func TestPing(t *testing.T) {
	ctx := context.Background()
	m, _ := newManager(t, redistest.Start(t))
	if err := m.Ping(ctx); err != nil {
		t.Errorf("Ping() on a live server = %v, want nil", err)
	}
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", ContextTimeoutEnabled: true})
	t.Cleanup(func() { rdb.Close() })
	down, err := cachemgr.New(rdb, testOptions(cachemgr.WithOpTimeout(500*time.Millisecond))...)
	if err != nil {
		t.Fatalf("New() error = %v", err)
	}
	t.Cleanup(func() { down.Close() })
	err = down.Ping(ctx)
	if !errors.Is(err, cachemgr.ErrUnavailable) || !errors.Is(err, syscall.ECONNREFUSED) || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("Ping() on a refused address = %v, want ErrUnavailable and ECONNREFUSED", err)
	}
}

// TestBreakerTransitionsLogged: the breaker opening and closing reach the
// Manager's logger, so an operator sees why the cache stopped working.
func TestBreakerTransitionsLogged(t *testing.T) {
	ctx := context.Background()
	s := redistest.Start(t)
	var logs syncBuffer
	m, _ := newManager(t, s, cachemgr.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))),
		cachemgr.WithOpTimeout(200*time.Millisecond), cachemgr.WithBreaker(1, 50*time.Millisecond))
	c := newCache[string](t, m, "brk")
	s.Pause()
	c.Get(ctx, "k")
	s.Resume()
	waitFor(t, "the breaker to close again", func() bool {
		c.Get(ctx, "k")
		return m.Stats().Breaker == "closed"
	})
	out := logs.String()
	if !strings.Contains(out, "circuit breaker open") || !strings.Contains(out, "circuit breaker closed") {
		t.Errorf("log = %q, want the breaker's opening and closing", out)
	}
}

// syncBuffer is a bytes.Buffer safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// TestInvalidOptionMessage: an option error says "cachemgr:" once and
// matches both errors.
func TestInvalidOptionMessage(t *testing.T) {
	m, _ := newManager(t, redistest.StartMini(t))
	_, err := cachemgr.NewCache[string](m, "x", cachemgr.WithTTL(0))
	if !errors.Is(err, cachemgr.ErrInvalidOption) || !errors.Is(err, cachemgr.ErrInvalidTTL) || strings.Count(err.Error(), "cachemgr:") != 1 {
		t.Errorf("NewCache(WithTTL(0)) error = %q, want ErrInvalidOption and ErrInvalidTTL, saying cachemgr: once", err)
	}
}
