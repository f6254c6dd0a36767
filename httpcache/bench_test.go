package httpcache_test

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/cachemgr/cachemgr"
	"github.com/cachemgr/cachemgr/httpcache"
	"github.com/cachemgr/cachemgr/internal/redistest"
)

// discard is a ResponseWriter that keeps nothing, so the benchmarks
// measure the handler and the middleware, not a recorder.
type discard struct{ h http.Header }

func (d *discard) Header() http.Header         { return d.h }
func (d *discard) Write(p []byte) (int, error) { return len(p), nil }
func (d *discard) WriteHeader(int)             {}

// BenchmarkMiddlewareHit compares serving a cached page through the
// middleware (one Redis GET, decode, replay) with calling the handler
// directly, for a handler that returns a fixed 1 KiB body, beside a raw
// go-redis GET of 1 KiB, the round trip every hit pays.
func BenchmarkMiddlewareHit(b *testing.B) {
	body := bytes.Repeat([]byte("0123456789abcdef"), 64)
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write(body)
	})
	req := httptest.NewRequest(http.MethodGet, "/products/42?color=red&size=m", nil)
	run := func(b *testing.B, h http.Handler) {
		w := &discard{h: make(http.Header)}
		b.ReportAllocs()
		for b.Loop() {
			clear(w.h)
			h.ServeHTTP(w, req)
		}
	}
	b.Run("direct", func(b *testing.B) { run(b, handler) })
	servers := []struct {
		name  string
		start func(testing.TB) *redistest.Server
	}{
		{"hit-redis", redistest.Start},
		{"hit-miniredis", redistest.StartMini},
	}
	// The floor under a hit: one GET of a 1 KiB value with go-redis.
	b.Run("baseline-redis-get", func(b *testing.B) {
		ctx := context.Background()
		rdb := redistest.Start(b).Client(b)
		if err := rdb.Set(ctx, "k", body, 0).Err(); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := rdb.Get(ctx, "k").Bytes(); err != nil {
				b.Fatal(err)
			}
		}
	})
	for _, s := range servers {
		b.Run(s.name, func(b *testing.B) {
			m, err := cachemgr.New(s.start(b).Client(b), cachemgr.WithLogger(quiet))
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { m.Close() })
			c, err := httpcache.New(m, "bench", httpcache.WithTTL(time.Hour))
			if err != nil {
				b.Fatal(err)
			}
			h := c.Middleware(handler)
			w := &discard{h: make(http.Header)}
			h.ServeHTTP(w, req) // fill
			if got := w.h.Get(httpcache.StatusHeader); got != httpcache.Miss {
				b.Fatalf("first request X-Cache = %q, want MISS", got)
			}
			clear(w.h)
			h.ServeHTTP(w, req)
			if got := w.h.Get(httpcache.StatusHeader); got != httpcache.Hit {
				b.Fatalf("second request X-Cache = %q, want HIT", got)
			}
			run(b, h)
		})
	}
}
