package httpcache_test

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
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
		w.Header().Set("Cache-Control", "max-age=3600")
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

// BenchmarkHitPaired measures what a hit costs above its Redis round trip.
// Each loop iteration runs a block of raw go-redis GETs of a 1 KiB value
// (A), then a block of middleware hits on a cached 1 KiB page (B), on one
// real redis-server, so that both sides see the same machine load. It
// reports the medians over blocks of each side's time per request and of
// their difference (hit-over-get-ns/op), which a noisy machine moves far
// less than either side. B/op and allocs/op are those of both sides
// together; BenchmarkMiddlewareHit has each side's.
func BenchmarkHitPaired(b *testing.B) {
	const block = 16
	ctx := context.Background()
	body := bytes.Repeat([]byte("0123456789abcdef"), 64)
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "max-age=3600")
		w.Write(body)
	})
	req := httptest.NewRequest(http.MethodGet, "/products/42?color=red&size=m", nil)
	rdb := redistest.Start(b).Client(b)
	if err := rdb.Set(ctx, "k", body, 0).Err(); err != nil {
		b.Fatal(err)
	}
	m, err := cachemgr.New(rdb, cachemgr.WithLogger(quiet))
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
	clear(w.h)
	h.ServeHTTP(w, req)
	if got := w.h.Get(httpcache.StatusHeader); got != httpcache.Hit {
		b.Fatalf("second request X-Cache = %q, want HIT", got)
	}
	var gets, hits, diffs []float64
	b.ReportAllocs()
	for b.Loop() {
		start := time.Now()
		for range block {
			if _, err := rdb.Get(ctx, "k").Bytes(); err != nil {
				b.Fatal(err)
			}
		}
		mid := time.Now()
		for range block {
			clear(w.h)
			h.ServeHTTP(w, req)
		}
		get := float64(mid.Sub(start).Nanoseconds()) / block
		hit := float64(time.Since(mid).Nanoseconds()) / block
		gets, hits, diffs = append(gets, get), append(hits, hit), append(diffs, hit-get)
	}
	b.ReportMetric(median(gets), "get-ns/op")
	b.ReportMetric(median(hits), "hit-ns/op")
	b.ReportMetric(median(diffs), "hit-over-get-ns/op")
}

// median returns the median of xs, which it sorts.
func median(xs []float64) float64 {
	slices.Sort(xs)
	return xs[len(xs)/2]
}
