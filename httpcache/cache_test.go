package httpcache_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cachemgr/cachemgr"
	"github.com/cachemgr/cachemgr/httpcache"
	"github.com/cachemgr/cachemgr/internal/redistest"
	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	redis.SetLogger(discardPrintf{}) // the Redis-down test dials a dead port
	goleak.VerifyTestMain(m)
}

type discardPrintf struct{}

func (discardPrintf) Printf(context.Context, string, ...any) {}

// quiet is a logger for tests that provoke errors on purpose.
var quiet = slog.New(slog.DiscardHandler)

// newManager returns a Manager over a fresh client of s, closed when the
// test ends.
func newManager(t *testing.T, s *redistest.Server, opts ...cachemgr.Option) *cachemgr.Manager {
	t.Helper()
	// A generous op timeout: a busy machine must not turn a write into a
	// failure, and so a hit into a miss.
	base := []cachemgr.Option{cachemgr.WithPrefix("test"), cachemgr.WithLogger(quiet), cachemgr.WithOpTimeout(5 * time.Second)}
	m, err := cachemgr.New(s.Client(t), append(base, opts...)...)
	if err != nil {
		t.Fatalf("cachemgr.New() error = %v", err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// newCache returns a Cache called name on m.
func newCache(t *testing.T, m *cachemgr.Manager, name string, opts ...httpcache.Option) *httpcache.Cache {
	t.Helper()
	c, err := httpcache.New(m, name, opts...)
	if err != nil {
		t.Fatalf("httpcache.New(%q) error = %v", name, err)
	}
	return c
}

// counted is a handler that counts its calls.
type counted struct {
	calls atomic.Int32
	fn    http.HandlerFunc
}

func count(fn http.HandlerFunc) *counted { return &counted{fn: fn} }

func (h *counted) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.calls.Add(1)
	h.fn(w, r)
}

// text returns a handler that answers 200 with body, fresh for a minute.
func text(body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "max-age=60")
		io.WriteString(w, body)
	}
}

// plain returns a handler that answers 200 with body and no freshness
// information.
func plain(body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, body)
	}
}

// result is what a test looks at in a response.
type result struct {
	status int
	state  string // X-Cache
	header http.Header
	body   string
}

// do serves one request to h; header holds name, value pairs.
func do(h http.Handler, method, target string, header ...string) result {
	return doCtx(context.Background(), h, method, target, header...)
}

func doCtx(ctx context.Context, h http.Handler, method, target string, header ...string) result {
	req := httptest.NewRequestWithContext(ctx, method, target, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Add(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	res := rec.Result()
	body, _ := io.ReadAll(res.Body)
	return result{status: res.StatusCode, state: res.Header.Get(httpcache.StatusHeader), header: res.Header, body: string(body)}
}

// expect fails the test unless r has state and body.
func expect(t *testing.T, call string, r result, state, body string) {
	t.Helper()
	if r.state != state || r.body != body {
		t.Errorf("%s = %s %q, want %s %q", call, r.state, r.body, state, body)
	}
}

func TestHitMiss(t *testing.T) {
	redistest.Each(t, func(t *testing.T, s *redistest.Server) {
		m := newManager(t, s)
		h := count(text("hello"))
		mw := newCache(t, m, "page").Middleware(h)

		expect(t, "GET /hello #1", do(mw, "GET", "/hello"), httpcache.Miss, "hello")
		expect(t, "GET /hello #2", do(mw, "GET", "/hello"), httpcache.Hit, "hello")
		expect(t, "GET /hello #3", do(mw, "GET", "/hello"), httpcache.Hit, "hello")
		expect(t, "GET /other", do(mw, "GET", "/other"), httpcache.Miss, "hello")
		if n := h.calls.Load(); n != 2 {
			t.Errorf("handler calls = %d, want 2", n)
		}
	})
}

// TestNotStored covers every reason a response is not stored: each
// request runs the handler, and still gets its whole response.
func TestNotStored(t *testing.T) {
	big := strings.Repeat("x", 1025)
	tests := []struct {
		name    string
		method  string
		opts    []httpcache.Option
		handler http.HandlerFunc
		state   string
	}{
		{"POST", "POST", nil, text("posted"), ""},
		{"PUT", "PUT", nil, text("put"), ""},
		{"PATCH", "PATCH", nil, text("patched"), ""},
		{"DELETE", "DELETE", nil, text("deleted"), ""},
		{"OPTIONS", "OPTIONS", nil, text("options"), ""},
		{"no freshness information", "GET", nil, plain("hello"), httpcache.Miss},
		{"no-store", "GET", nil, withHeader("Cache-Control", "no-store, max-age=60", "secret"), httpcache.Miss},
		{"private", "GET", nil, withHeader("Cache-Control", "private, max-age=60", "mine"), httpcache.Miss},
		{"private in second value", "GET", nil, withHeaders(http.Header{"Cache-Control": {"max-age=60", "Private"}}, "mine"), httpcache.Miss},
		{"no-cache without validators", "GET", nil, withHeader("Cache-Control", "no-cache, max-age=60", "revalidate"), httpcache.Miss},
		{"max-age=0", "GET", nil, withHeader("Cache-Control", "max-age=0", "stale"), httpcache.Miss},
		{"quoted max-age", "GET", nil, withHeader("Cache-Control", `max-age="60"`, "stale"), httpcache.Miss},
		{"past Expires", "GET", nil, withHeader("Expires", "Thu, 01 Jan 1970 00:00:00 GMT", "stale"), httpcache.Miss},
		{"invalid Expires", "GET", nil, withHeader("Expires", "0", "stale"), httpcache.Miss},
		{"Age over max-age", "GET", nil, withHeaders(http.Header{"Cache-Control": {"max-age=60"}, "Age": {"61"}}, "stale"), httpcache.Miss},
		{"Set-Cookie", "GET", nil, withHeaders(http.Header{"Cache-Control": {"max-age=60"}, "Set-Cookie": {"session=abc"}}, "welcome"), httpcache.Miss},
		{"set-cookie not canonical", "GET", nil, withHeaders(http.Header{"Cache-Control": {"max-age=60"}, "set-cookie": {"session=abc"}}, "welcome"), httpcache.Miss},
		{"Vary *", "GET", nil, withHeaders(http.Header{"Cache-Control": {"max-age=60"}, "Vary": {"Accept, *"}}, "negotiated"), httpcache.Miss},
		{"500 with Last-Modified", "GET", nil, lastModified(http.StatusInternalServerError, "oops"), httpcache.Miss},
		{"unknown status with must-understand", "GET", nil, withStatus(599, "Cache-Control", "max-age=60, must-understand, no-store"), httpcache.Miss},
		{"over size", "GET", []httpcache.Option{httpcache.WithMaxBodySize(1024)}, text(big), httpcache.Miss},
		{"over size default", "GET", nil, text(strings.Repeat("y", 1<<20+1)), httpcache.Miss},
		{"206 despite condition", "GET", []httpcache.Option{httpcache.WithCondition(always)}, status(http.StatusPartialContent, "part"), httpcache.Miss},
		{"trailer", "GET", nil, trailer, httpcache.Miss},
		{"condition refuses", "GET", []httpcache.Option{httpcache.WithCondition(never)}, text("hello"), httpcache.Miss},
	}
	redistest.Each(t, func(t *testing.T, s *redistest.Server) {
		m := newManager(t, s)
		for i, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				want := do(tt.handler, tt.method, "/page")
				h := count(tt.handler)
				mw := newCache(t, m, fmt.Sprintf("c%d", i), tt.opts...).Middleware(h)
				for i := range 2 {
					got := do(mw, tt.method, "/page")
					if got.state != tt.state || got.status != want.status || got.body != want.body {
						t.Errorf("%s /page #%d = %s %d (%d bytes), want %s %d (%d bytes)",
							tt.method, i+1, got.state, got.status, len(got.body), tt.state, want.status, len(want.body))
					}
					for k, v := range want.header {
						if g := got.header[k]; strings.Join(g, "\n") != strings.Join(v, "\n") {
							t.Errorf("%s /page #%d header %s = %q, want %q", tt.method, i+1, k, g, v)
						}
					}
				}
				if n := h.calls.Load(); n != 2 {
					t.Errorf("handler calls = %d, want 2", n)
				}
			})
		}
	})
}

// TestStored covers responses that are stored, at the edges of the rules.
func TestStored(t *testing.T) {
	tests := []struct {
		name    string
		opts    []httpcache.Option
		handler http.HandlerFunc
	}{
		{"max-age", nil, text("hello")},
		{"max-age with leading zeros", nil, withHeader("Cache-Control", "max-age=0060", "hello")},
		{"s-maxage", nil, withHeader("Cache-Control", "s-maxage=60", "hello")},
		{"s-maxage wins over max-age=0", nil, withHeader("Cache-Control", "max-age=0, s-maxage=60", "hello")},
		{"Expires", nil, withHeader("Expires", time.Now().Add(time.Hour).UTC().Format(http.TimeFormat), "hello")},
		{"public without lifetime", nil, withHeader("Cache-Control", "public", "shared")},
		{"heuristic from Last-Modified", nil, lastModified(http.StatusOK, "old page")},
		{"heuristic 404", nil, lastModified(http.StatusNotFound, "gone")},
		{"CDN-Cache-Control over no-store", nil, withHeaders(http.Header{"Cache-Control": {"no-store"}, "Cdn-Cache-Control": {"max-age=60"}}, "cdn")},
		{"body at size limit", []httpcache.Option{httpcache.WithMaxBodySize(1024)}, text(strings.Repeat("x", 1024))},
		{"empty body", nil, status(http.StatusOK, "")},
		{"no write at all", nil, func(w http.ResponseWriter, _ *http.Request) { w.Header().Set("Cache-Control", "max-age=60") }},
		{"404", nil, status(http.StatusNotFound, "gone")},
		{"204", nil, status(http.StatusNoContent, "")},
		{"Vary", nil, withHeaders(http.Header{"Cache-Control": {"max-age=60"}, "Vary": {"Accept-Encoding"}}, "plain")},
		{"header changed after write", nil, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Cache-Control", "max-age=60")
			io.WriteString(w, "body")
			w.Header().Set("Set-Cookie", "late=1") // not sent, as by net/http
		}},
	}
	redistest.Each(t, func(t *testing.T, s *redistest.Server) {
		m := newManager(t, s)
		for i, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				h := count(tt.handler)
				mw := newCache(t, m, fmt.Sprintf("c%d", i), tt.opts...).Middleware(h)
				first := do(mw, "GET", "/page")
				second := do(mw, "GET", "/page")
				if first.state != httpcache.Miss || second.state != httpcache.Hit ||
					second.status != first.status || second.body != first.body {
					t.Errorf("GET /page twice = %s %d %q, %s %d %q; want MISS then HIT of the same",
						first.state, first.status, first.body, second.state, second.status, second.body)
				}
				if n := h.calls.Load(); n != 1 {
					t.Errorf("handler calls = %d, want 1", n)
				}
			})
		}
	})
}

func always(int, http.Header) bool { return true }
func never(int, http.Header) bool  { return false }

// withHeader returns a handler that sets one header and answers 200 with
// body.
func withHeader(name, value, body string) http.HandlerFunc {
	return withHeaders(http.Header{name: {value}}, body)
}

// withHeaders sets the keys of h as they are, canonical or not.
func withHeaders(h http.Header, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		for k, v := range h {
			w.Header()[k] = v
		}
		io.WriteString(w, body)
	}
}

// status returns a handler that answers code with body, fresh for a
// minute.
func status(code int, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		w.WriteHeader(code)
		io.WriteString(w, body)
	}
}

// withStatus returns a handler that sets one header and answers code.
func withStatus(code int, name, value string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(name, value)
		w.WriteHeader(code)
	}
}

// lastModified returns a handler that answers code with body and a
// Last-Modified a day old: no explicit freshness, so only a heuristic
// lifetime can make it fresh.
func lastModified(code int, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Last-Modified", time.Now().Add(-24*time.Hour).UTC().Format(http.TimeFormat))
		w.WriteHeader(code)
		io.WriteString(w, body)
	}
}

func trailer(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Trailer", "X-Checksum")
	io.WriteString(w, "body")
	w.Header().Set("X-Checksum", "abc")
}

func TestTrailerReachesClient(t *testing.T) {
	m := newManager(t, redistest.StartMini(t))
	mw := newCache(t, m, "page").Middleware(http.HandlerFunc(trailer))
	srv := httptest.NewServer(mw)
	defer srv.Close()
	res, err := srv.Client().Get(srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	if got := res.Trailer.Get("X-Checksum"); string(body) != "body" || got != "abc" {
		t.Errorf("GET / = %q, trailer X-Checksum %q; want \"body\", \"abc\"", body, got)
	}
}

// TestVary shows the difference a vary function makes: with it, each user
// gets their own page; without it, the first user's page goes to everyone.
func TestVary(t *testing.T) {
	greet := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		io.WriteString(w, "hello "+r.Header.Get("X-User"))
	}
	byUser := httpcache.WithVary(func(r *http.Request) string { return r.Header.Get("X-User") })
	redistest.Each(t, func(t *testing.T, s *redistest.Server) {
		m := newManager(t, s)
		t.Run("with vary", func(t *testing.T) {
			mw := newCache(t, m, "vary", byUser).Middleware(http.HandlerFunc(greet))
			expect(t, "GET /me as A", do(mw, "GET", "/me", "X-User", "A"), httpcache.Miss, "hello A")
			expect(t, "GET /me as B", do(mw, "GET", "/me", "X-User", "B"), httpcache.Miss, "hello B")
			expect(t, "GET /me as A again", do(mw, "GET", "/me", "X-User", "A"), httpcache.Hit, "hello A")
			expect(t, "GET /me as B again", do(mw, "GET", "/me", "X-User", "B"), httpcache.Hit, "hello B")
		})
		t.Run("without vary", func(t *testing.T) {
			mw := newCache(t, m, "novary").Middleware(http.HandlerFunc(greet))
			expect(t, "GET /me as A", do(mw, "GET", "/me", "X-User", "A"), httpcache.Miss, "hello A")
			// The danger WithVary exists for: B is served A's page.
			expect(t, "GET /me as B", do(mw, "GET", "/me", "X-User", "B"), httpcache.Hit, "hello A")
		})
	})
}

func TestKey(t *testing.T) {
	tests := []struct {
		name          string
		first, second string
		same          bool
	}{
		{"query order", "/p?a=1&b=2", "/p?b=2&a=1", true},
		{"query encoding", "/p?a=%41&b=x+y", "/p?b=x%20y&a=A", true},
		{"empty query", "/p", "/p?", true},
		{"order of one name's values", "/p?a=1&a=2", "/p?a=2&a=1", false},
		{"query value", "/p?a=1", "/p?a=2", false},
		{"escaped slash", "/a%2Fb", "/a/b", false},
		{"path", "/p", "/q", false},
		{"host", "http://a.example/p", "http://b.example/p", false},
		{"host case", "http://A.example/p", "http://a.example/p", true},
	}
	redistest.Each(t, func(t *testing.T, s *redistest.Server) {
		m := newManager(t, s)
		for i, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				h := count(text("page"))
				mw := newCache(t, m, fmt.Sprintf("k%d", i)).Middleware(h)
				do(mw, "GET", tt.first)
				do(mw, "GET", tt.second)
				if same := h.calls.Load() == 1; same != tt.same {
					t.Errorf("GET %s then %s shared an entry: %v, want %v", tt.first, tt.second, same, tt.same)
				}
			})
		}
	})
}

func TestMalformedQueryNotCached(t *testing.T) {
	m := newManager(t, redistest.StartMini(t))
	h := count(text("page"))
	mw := newCache(t, m, "page").Middleware(h)
	for i := range 2 {
		expect(t, fmt.Sprintf("GET /p?a=%%zz #%d", i+1), do(mw, "GET", "/p?a=%zz"), httpcache.Miss, "page")
	}
	if n := h.calls.Load(); n != 2 {
		t.Errorf("handler calls = %d, want 2", n)
	}
}

// waitMisses polls m until its lookups have missed n times, so that
// concurrent requests have reached their shared load, or until a deadline.
// Missing the deadline only weakens the test that calls it: handler counts
// hold however the requests interleave.
func waitMisses(m *cachemgr.Manager, n uint64) {
	deadline := time.Now().Add(5 * time.Second)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for m.Stats().Misses < n && time.Now().Before(deadline) {
		<-tick.C
	}
}

// TestConcurrentMissRunsHandlerOnce: 100 concurrent requests of one URL
// run the handler once and all get its response.
func TestConcurrentMissRunsHandlerOnce(t *testing.T) {
	redistest.Each(t, func(t *testing.T, s *redistest.Server) {
		m := newManager(t, s, cachemgr.WithOpTimeout(time.Second))
		release := make(chan struct{})
		h := count(func(w http.ResponseWriter, r *http.Request) {
			<-release
			w.Header().Set("Cache-Control", "max-age=60")
			io.WriteString(w, "shared")
		})
		mw := newCache(t, m, "page").Middleware(h)
		const n = 100
		results := make(chan result, n)
		var wg sync.WaitGroup
		for range n {
			wg.Go(func() { results <- do(mw, "GET", "/hot?b=2&a=1") })
		}
		// Each request misses in Get before it joins the load.
		waitMisses(m, n)
		close(release)
		wg.Wait()
		close(results)
		// Every request gets the one rendering. Most report MISS (they
		// waited for it); one that was still on its way to its lookup when
		// the render was stored, which waitMisses cannot rule out on a busy
		// machine, finds it stored and reports HIT: either is right.
		for r := range results {
			if r.body != "shared" || r.state != httpcache.Miss && r.state != httpcache.Hit {
				t.Errorf("GET /hot = %s %q, want MISS or HIT %q", r.state, r.body, "shared")
			}
		}
		if c := h.calls.Load(); c != 1 {
			t.Errorf("handler calls = %d, want 1", c)
		}
	})
}

// TestUnstoredResponseNotShared: a private response goes only to the
// request it was rendered for, even when another request of the same key
// waited on that load.
func TestUnstoredResponseNotShared(t *testing.T) {
	redistest.Each(t, func(t *testing.T, s *redistest.Server) {
		m := newManager(t, s, cachemgr.WithOpTimeout(time.Second))
		release := make(chan struct{})
		h := count(func(w http.ResponseWriter, r *http.Request) {
			<-release
			w.Header().Set("Cache-Control", "private")
			io.WriteString(w, "account of "+r.Header.Get("X-User"))
		})
		mw := newCache(t, m, "page").Middleware(h) // no vary: same key
		var a, b result
		var wg sync.WaitGroup
		wg.Go(func() { a = do(mw, "GET", "/account", "X-User", "A") })
		wg.Go(func() { b = do(mw, "GET", "/account", "X-User", "B") })
		waitMisses(m, 4)
		close(release)
		wg.Wait()
		expect(t, "GET /account as A", a, httpcache.Miss, "account of A")
		expect(t, "GET /account as B", b, httpcache.Miss, "account of B")
		if c := h.calls.Load(); c != 2 {
			t.Errorf("handler calls = %d, want 2", c)
		}
	})
}

func TestInvalidatePath(t *testing.T) {
	redistest.Each(t, func(t *testing.T, s *redistest.Server) {
		ctx := context.Background()
		m := newManager(t, s)
		pages := newCache(t, m, "page", httpcache.WithVary(func(r *http.Request) string { return r.Header.Get("X-User") }))
		mw := pages.Middleware(text("page"))
		fill := []string{"/products/1", "/products/2?color=red", "/products-old", "/users/1"}
		for _, u := range fill {
			do(mw, "GET", u)
		}
		do(mw, "GET", "/products/1", "X-User", "A")

		n, err := pages.InvalidatePath(ctx, "/products/")
		if n != 3 || err != nil {
			t.Fatalf("InvalidatePath(/products/) = %d, %v, want 3, nil", n, err)
		}
		tests := []struct{ url, state string }{
			{"/products/1", httpcache.Miss},
			{"/products/2?color=red", httpcache.Miss},
			{"/products-old", httpcache.Hit},
			{"/users/1", httpcache.Hit},
		}
		for _, tt := range tests {
			expect(t, "GET "+tt.url, do(mw, "GET", tt.url), tt.state, "page")
		}

		// "path?" is that one path with any query.
		if n, err := pages.InvalidatePath(ctx, "/products-old?"); n != 1 || err != nil {
			t.Errorf("InvalidatePath(/products-old?) = %d, %v, want 1, nil", n, err)
		}
	})
}

func TestInvalidateTags(t *testing.T) {
	redistest.Each(t, func(t *testing.T, s *redistest.Server) {
		ctx := context.Background()
		m := newManager(t, s)
		byProduct := httpcache.WithTags(func(r *http.Request) []string {
			return []string{"product:" + strings.TrimPrefix(r.URL.Path, "/products/")}
		})
		mw := newCache(t, m, "page", byProduct).Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			// Tags known only to the handler.
			cachemgr.EntryFrom(r.Context()).AddTags("catalog")
			w.Header().Set("Cache-Control", "max-age=60")
			io.WriteString(w, r.URL.Path)
		}))
		do(mw, "GET", "/products/1")
		do(mw, "GET", "/products/2")

		if err := m.InvalidateTags(ctx, "product:1"); err != nil {
			t.Fatalf("InvalidateTags(product:1) = %v", err)
		}
		expect(t, "GET /products/1", do(mw, "GET", "/products/1"), httpcache.Miss, "/products/1")
		expect(t, "GET /products/2", do(mw, "GET", "/products/2"), httpcache.Hit, "/products/2")

		if err := m.InvalidateTags(ctx, "catalog"); err != nil {
			t.Fatalf("InvalidateTags(catalog) = %v", err)
		}
		expect(t, "GET /products/2 after catalog", do(mw, "GET", "/products/2"), httpcache.Miss, "/products/2")
	})
}

func TestHead(t *testing.T) {
	redistest.Each(t, func(t *testing.T, s *redistest.Server) {
		m := newManager(t, s)
		var methods []string // written by the handler, read after the requests
		var mu sync.Mutex
		h := count(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			methods = append(methods, r.Method)
			mu.Unlock()
			w.Header().Set("ETag", `"v1"`)
			w.Header().Set("Cache-Control", "max-age=60")
			io.WriteString(w, "full body")
		})
		mw := newCache(t, m, "page").Middleware(h)

		head := do(mw, "HEAD", "/doc")
		if head.state != httpcache.Miss || head.body != "" || head.header.Get("ETag") != `"v1"` || head.header.Get("Content-Length") != "9" {
			t.Errorf("HEAD /doc = %s %q, ETag %q, Content-Length %q; want MISS, no body, \"v1\", 9",
				head.state, head.body, head.header.Get("ETag"), head.header.Get("Content-Length"))
		}
		expect(t, "GET /doc after HEAD", do(mw, "GET", "/doc"), httpcache.Hit, "full body")
		head = do(mw, "HEAD", "/doc")
		if head.state != httpcache.Hit || head.body != "" || head.header.Get("Content-Length") != "9" {
			t.Errorf("HEAD /doc again = %s %q, Content-Length %q; want HIT, no body, 9", head.state, head.body, head.header.Get("Content-Length"))
		}
		if len(methods) != 1 || methods[0] != "GET" {
			t.Errorf("handler saw methods %q, want [GET]", methods)
		}
	})
}

// TestRedisDown: with nothing listening where Redis should be, every
// request is answered by the handler, as a miss.
func TestRedisDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	rdb := redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true, MaxRetries: -1, DialTimeout: 100 * time.Millisecond})
	defer rdb.Close()
	m, err := cachemgr.New(rdb, cachemgr.WithLogger(quiet), cachemgr.WithOpTimeout(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	h := count(text("still here"))
	mw := newCache(t, m, "page").Middleware(h)
	for i := range 10 {
		start := time.Now()
		r := do(mw, "GET", "/page")
		expect(t, fmt.Sprintf("GET /page #%d", i+1), r, httpcache.Miss, "still here")
		if d := time.Since(start); d > time.Second {
			t.Errorf("GET /page #%d took %v, want well under 1s", i+1, d)
		}
	}
	if n := h.calls.Load(); n != 10 {
		t.Errorf("handler calls = %d, want 10", n)
	}
}

func TestClosedManagerPassesThrough(t *testing.T) {
	m := newManager(t, redistest.StartMini(t))
	h := count(text("page"))
	mw := newCache(t, m, "page").Middleware(h)
	do(mw, "GET", "/p")
	m.Close()
	expect(t, "GET /p after Close", do(mw, "GET", "/p"), httpcache.Miss, "page")
	if n := h.calls.Load(); n != 2 {
		t.Errorf("handler calls = %d, want 2", n)
	}
}

// TestRequestCacheControl: Cache-Control: no-cache makes the cache ask the
// handler again (here a handler without validators, so it answers in full)
// and store the new response; no-store skips the cache altogether.
func TestRequestCacheControl(t *testing.T) {
	redistest.Each(t, func(t *testing.T, s *redistest.Server) {
		m := newManager(t, s)
		var version atomic.Int32
		mw := newCache(t, m, "page").Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Cache-Control", "max-age=60")
			fmt.Fprintf(w, "v%d", version.Add(1))
		}))
		expect(t, "GET /p", do(mw, "GET", "/p"), httpcache.Miss, "v1")
		expect(t, "GET /p no-store", do(mw, "GET", "/p", "Cache-Control", "no-store"), httpcache.Miss, "v2")
		expect(t, "GET /p after no-store", do(mw, "GET", "/p"), httpcache.Hit, "v1")
		expect(t, "GET /p no-cache", do(mw, "GET", "/p", "Cache-Control", "max-age=0, No-Cache"), httpcache.Miss, "v3")
		expect(t, "GET /p after no-cache", do(mw, "GET", "/p"), httpcache.Hit, "v3")
		expect(t, "GET /p Pragma: no-cache", do(mw, "GET", "/p", "Pragma", "no-cache"), httpcache.Miss, "v4")
		expect(t, "GET /p max-age=0", do(mw, "GET", "/p", "Cache-Control", "max-age=0"), httpcache.Miss, "v5")
		expect(t, "GET /p max-age=3600", do(mw, "GET", "/p", "Cache-Control", "max-age=3600"), httpcache.Hit, "v5")
	})
}

// TestRedisKeepsEntry: Redis drops an entry once it is neither fresh nor
// worth revalidating: a response without validators when its freshness
// (capped by WithTTL) ends.
func TestRedisKeepsEntry(t *testing.T) {
	s := redistest.StartMini(t) // FastForward
	m := newManager(t, s)
	h := count(withHeader("Cache-Control", "max-age=3600", "page"))
	mw := newCache(t, m, "page", httpcache.WithTTL(time.Minute)).Middleware(h)
	do(mw, "GET", "/p")
	s.FastForward(50 * time.Second)
	if n := len(s.Miniredis().Keys()); n != 1 {
		t.Errorf("Redis keys after 50s = %d, want 1", n)
	}
	s.FastForward(20 * time.Second)
	if n := len(s.Miniredis().Keys()); n != 0 {
		t.Errorf("Redis keys after 70s = %d, want 0 (TTL 1m)", n)
	}
}

// TestLoadOutlivesClient: the client that started a load leaves; the
// handler's context is not cancelled, the response is stored, and the next
// request does not run the handler again.
func TestLoadOutlivesClient(t *testing.T) {
	redistest.Each(t, func(t *testing.T, s *redistest.Server) {
		m := newManager(t, s)
		entered, release := make(chan struct{}), make(chan struct{})
		var handlerErr atomic.Value
		type ctxKey struct{}
		h := count(func(w http.ResponseWriter, r *http.Request) {
			close(entered)
			<-release
			handlerErr.Store(fmt.Sprint(r.Context().Err(), " ", r.Context().Value(ctxKey{})))
			w.Header().Set("Cache-Control", "max-age=60")
			io.WriteString(w, "done")
		})
		mw := newCache(t, m, "page").Middleware(h)

		ctx, cancel := context.WithCancel(context.WithValue(context.Background(), ctxKey{}, "request value"))
		left := make(chan result)
		go func() { left <- doCtx(ctx, mw, "GET", "/slow") }()
		<-entered
		cancel()
		if r := <-left; r.body != "" {
			t.Errorf("GET /slow after cancel = %q, want no body", r.body)
		}
		close(release)
		// This one joins the load (MISS) or finds its result (HIT).
		if r := do(mw, "GET", "/slow"); r.body != "done" {
			t.Errorf("GET /slow = %s %q, want \"done\"", r.state, r.body)
		}
		if got := handlerErr.Load(); got != "<nil> request value" {
			t.Errorf("handler's ctx.Err(), value = %v, want <nil> request value", got)
		}
		expect(t, "GET /slow again", do(mw, "GET", "/slow"), httpcache.Hit, "done")
		if n := h.calls.Load(); n != 1 {
			t.Errorf("handler calls = %d, want 1", n)
		}
	})
}

func TestHandlerPanic(t *testing.T) {
	m := newManager(t, redistest.StartMini(t))
	t.Run("value", func(t *testing.T) {
		h := count(func(http.ResponseWriter, *http.Request) { panic("boom") })
		mw := newCache(t, m, "value").Middleware(h)
		for i := range 2 {
			p := recovered(func() { do(mw, "GET", "/p") })
			if s := fmt.Sprint(p); !strings.HasPrefix(s, "boom") || !strings.Contains(s, "handler goroutine stack") {
				t.Errorf("GET /p #%d panicked with %q, want boom and the handler's stack", i+1, s)
			}
		}
		if n := h.calls.Load(); n != 2 {
			t.Errorf("handler calls = %d, want 2", n)
		}
	})
	t.Run("ErrAbortHandler", func(t *testing.T) {
		mw := newCache(t, m, "abort").Middleware(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
			panic(http.ErrAbortHandler)
		}))
		if p := recovered(func() { do(mw, "GET", "/p") }); p != http.ErrAbortHandler {
			t.Errorf("GET /p panicked with %v, want http.ErrAbortHandler", p)
		}
	})
	t.Run("error", func(t *testing.T) {
		errBoom := errors.New("boom")
		mw := newCache(t, m, "error").Middleware(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
			panic(errBoom)
		}))
		p := recovered(func() { do(mw, "GET", "/p") })
		if err, _ := p.(error); !errors.Is(err, errBoom) {
			t.Errorf("GET /p panicked with %v, want an error wrapping errBoom", p)
		}
	})
}

// recovered runs fn and returns what it panicked with.
func recovered(fn func()) (p any) {
	defer func() { p = recover() }()
	fn()
	return nil
}

func TestNewRejectsBadInput(t *testing.T) {
	m := newManager(t, redistest.StartMini(t))
	tests := []struct {
		name string
		m    *cachemgr.Manager
		opts []httpcache.Option
	}{
		{"nil manager", nil, nil},
		{"zero TTL", m, []httpcache.Option{httpcache.WithTTL(0)}},
		{"negative TTL", m, []httpcache.Option{httpcache.WithTTL(-time.Second)}},
		{"TTL over MaxTTL", m, []httpcache.Option{httpcache.WithTTL(cachemgr.MaxTTL + 1)}},
		{"nil condition", m, []httpcache.Option{httpcache.WithCondition(nil)}},
		{"nil vary", m, []httpcache.Option{httpcache.WithVary(nil)}},
		{"nil tags", m, []httpcache.Option{httpcache.WithTags(nil)}},
		{"zero max body", m, []httpcache.Option{httpcache.WithMaxBodySize(0)}},
		{"nil option", m, []httpcache.Option{nil}},
		{"allow and deny lists", m, []httpcache.Option{httpcache.WithQueryKeys("a"), httpcache.WithoutQueryKeys("b")}},
		{"deny and allow lists", m, []httpcache.Option{httpcache.WithoutQueryKeys("b"), httpcache.WithQueryKeys("a")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := httpcache.New(tt.m, "page", tt.opts...); !errors.Is(err, cachemgr.ErrInvalidOption) {
				t.Errorf("New() error = %v, want ErrInvalidOption", err)
			}
		})
	}
	if _, err := httpcache.New(m, "bad:name"); !errors.Is(err, cachemgr.ErrInvalidOption) {
		t.Errorf("New(m, %q) error = %v, want ErrInvalidOption", "bad:name", err)
	}
}
