package httpcache_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/textproto"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cachemgr/cachemgr/httpcache"
	"github.com/cachemgr/cachemgr/internal/redistest"
)

// clock is a settable time source for freshness.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Now()} }

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// clocked returns a Cache on a fresh miniredis whose freshness clock is clk.
func clocked(t *testing.T, clk *clock, opts ...httpcache.Option) *httpcache.Cache {
	t.Helper()
	c := newCache(t, newManager(t, redistest.StartMini(t)), "page", opts...)
	httpcache.SetClock(c, clk.now)
	return c
}

// versioned is a handler whose body is "v<n>", n counting its full
// responses, with the given Cache-Control and an ETag of the version. It
// answers a matching If-None-Match with a 304 (with Cache-Control and
// X-Updated) and counts those too.
type versioned struct {
	cc          string
	full, unmod atomic.Int32
	changed     atomic.Bool // the next request gets a new version
	fail        atomic.Int32
	sawINM      atomic.Value
}

func (v *versioned) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if code := v.fail.Load(); code != 0 {
		w.WriteHeader(int(code))
		return
	}
	n := v.full.Load()
	etag := fmt.Sprintf(`"v%d"`, n)
	v.sawINM.Store(r.Header.Get("If-None-Match"))
	w.Header().Set("Cache-Control", v.cc)
	if n > 0 && !v.changed.Load() && r.Header.Get("If-None-Match") == etag {
		v.unmod.Add(1)
		w.Header().Set("X-Updated", fmt.Sprint(v.unmod.Load()))
		w.WriteHeader(http.StatusNotModified)
		return
	}
	v.changed.Store(false)
	n = v.full.Add(1)
	w.Header().Set("ETag", fmt.Sprintf(`"v%d"`, n))
	fmt.Fprintf(w, "v%d", n)
}

func TestFreshnessAndAge(t *testing.T) {
	clk := newClock()
	v := &versioned{cc: "max-age=100"}
	mw := clocked(t, clk).Middleware(v)

	expect(t, "GET #1", do(mw, "GET", "/p"), httpcache.Miss, "v1")
	clk.advance(42 * time.Second)
	r := do(mw, "GET", "/p")
	expect(t, "GET after 42s", r, httpcache.Hit, "v1")
	if got := r.header.Get("Age"); got != "42" {
		t.Errorf("GET after 42s: Age = %q, want 42", got)
	}
	if got := r.header.Get("Content-Length"); got != "2" {
		t.Errorf("GET after 42s: Content-Length = %q, want 2", got)
	}
	clk.advance(60 * time.Second)
	r = do(mw, "GET", "/p")
	expect(t, "GET after 102s (stale, revalidated)", r, httpcache.Revalidated, "v1")
	if got := v.sawINM.Load(); got != `"v1"` {
		t.Errorf("handler saw If-None-Match %q, want \"v1\"", got)
	}
	if got := r.header.Get("X-Updated"); got != "1" {
		t.Errorf("revalidated response X-Updated = %q, want 1 (from the 304)", got)
	}
	r = do(mw, "GET", "/p")
	expect(t, "GET after revalidation", r, httpcache.Hit, "v1")
	if got := r.header.Get("Age"); got != "0" {
		t.Errorf("GET after revalidation: Age = %q, want 0", got)
	}
	if f, u := v.full.Load(), v.unmod.Load(); f != 1 || u != 1 {
		t.Errorf("handler full, 304 responses = %d, %d, want 1, 1", f, u)
	}

	// A changed resource: the revalidation gets a full response.
	clk.advance(101 * time.Second)
	v.changed.Store(true)
	expect(t, "GET after a change", do(mw, "GET", "/p"), httpcache.Miss, "v2")
	expect(t, "GET after that", do(mw, "GET", "/p"), httpcache.Hit, "v2")
}

func TestStoredAge(t *testing.T) {
	clk := newClock()
	mw := clocked(t, clk).Middleware(withHeaders(http.Header{"Cache-Control": {"max-age=100"}, "Age": {"90"}}, "old"))
	do(mw, "GET", "/p")
	clk.advance(5 * time.Second)
	r := do(mw, "GET", "/p")
	if r.state != httpcache.Hit || r.header.Get("Age") != "95" {
		t.Errorf("GET = %s, Age %q; want HIT, 95", r.state, r.header.Get("Age"))
	}
	clk.advance(6 * time.Second)
	if r := do(mw, "GET", "/p"); r.state != httpcache.Miss {
		t.Errorf("GET 11s later = %s, want MISS (Age 101 > max-age 100)", r.state)
	}
}

func TestTTLBoundsFreshness(t *testing.T) {
	clk := newClock()
	h := count(withHeader("Cache-Control", "max-age=86400", "day"))
	mw := clocked(t, clk, httpcache.WithTTL(time.Minute)).Middleware(h)
	do(mw, "GET", "/p")
	clk.advance(59 * time.Second)
	expect(t, "GET after 59s", do(mw, "GET", "/p"), httpcache.Hit, "day")
	clk.advance(2 * time.Second)
	expect(t, "GET after 61s", do(mw, "GET", "/p"), httpcache.Miss, "day")
	if n := h.calls.Load(); n != 2 {
		t.Errorf("handler calls = %d, want 2", n)
	}
}

func TestConditionalFromCache(t *testing.T) {
	lm := "Mon, 02 Jan 2006 15:04:05 GMT"
	h := count(withHeaders(http.Header{
		"Cache-Control": {"max-age=60"}, "Etag": {`"abc"`}, "Last-Modified": {lm},
		"Content-Type": {"text/plain"},
	}, "body"))
	mw := newCache(t, newManager(t, redistest.StartMini(t)), "page").Middleware(h)
	tests := []struct {
		name   string
		header []string
		status int
	}{
		{"fill with If-None-Match", []string{"If-None-Match", `"abc"`}, http.StatusNotModified},
		{"If-None-Match", []string{"If-None-Match", `"abc"`}, http.StatusNotModified},
		{"weak If-None-Match", []string{"If-None-Match", `"x", W/"abc"`}, http.StatusNotModified},
		{"If-None-Match *", []string{"If-None-Match", `*`}, http.StatusNotModified},
		{"other If-None-Match", []string{"If-None-Match", `"xyz"`}, http.StatusOK},
		{"If-Modified-Since", []string{"If-Modified-Since", lm}, http.StatusNotModified},
		{"older If-Modified-Since", []string{"If-Modified-Since", "Sun, 01 Jan 2006 15:04:05 GMT"}, http.StatusOK},
		{"If-None-Match wins", []string{"If-None-Match", `"xyz"`, "If-Modified-Since", lm}, http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := do(mw, "GET", "/p", tt.header...)
			if r.status != tt.status {
				t.Fatalf("GET with %q = %d, want %d", tt.header, r.status, tt.status)
			}
			if tt.status == http.StatusNotModified &&
				(r.body != "" || r.header.Get("Etag") != `"abc"` || r.header.Get("Content-Type") != "" || r.header.Get("Cache-Control") != "max-age=60") {
				t.Errorf("304 = body %q, header %v; want no body, the ETag and Cache-Control, no Content-Type", r.body, r.header)
			}
		})
	}
	if n := h.calls.Load(); n != 1 {
		t.Errorf("handler calls = %d, want 1", n)
	}
}

// TestRequestNoCacheRevalidates: a client's no-cache makes the cache
// revalidate; the stored response stays and is confirmed, not deleted.
func TestRequestNoCacheRevalidates(t *testing.T) {
	v := &versioned{cc: "max-age=60"}
	mw := newCache(t, newManager(t, redistest.StartMini(t)), "page").Middleware(v)
	do(mw, "GET", "/p")
	expect(t, "GET no-cache", do(mw, "GET", "/p", "Cache-Control", "no-cache"), httpcache.Revalidated, "v1")
	expect(t, "GET", do(mw, "GET", "/p"), httpcache.Hit, "v1")
	if f, u := v.full.Load(), v.unmod.Load(); f != 1 || u != 1 {
		t.Errorf("handler full, 304 responses = %d, %d, want 1, 1", f, u)
	}

	off := newCache(t, newManager(t, redistest.StartMini(t)), "page", httpcache.WithClientRevalidation(false)).Middleware(v)
	expect(t, "GET, client revalidation off", do(off, "GET", "/p"), httpcache.Miss, "v2")
	expect(t, "GET no-cache, client revalidation off", do(off, "GET", "/p", "Cache-Control", "no-cache"), httpcache.Hit, "v2")
	expect(t, "GET max-age=0, client revalidation off", do(off, "GET", "/p", "Cache-Control", "max-age=0"), httpcache.Hit, "v2")
}

func TestNoCacheResponseAlwaysRevalidates(t *testing.T) {
	v := &versioned{cc: "no-cache"}
	mw := newCache(t, newManager(t, redistest.StartMini(t)), "page").Middleware(v)
	expect(t, "GET #1", do(mw, "GET", "/p"), httpcache.Miss, "v1")
	expect(t, "GET #2", do(mw, "GET", "/p"), httpcache.Revalidated, "v1")
	expect(t, "GET #3", do(mw, "GET", "/p"), httpcache.Revalidated, "v1")
	if f, u := v.full.Load(), v.unmod.Load(); f != 1 || u != 2 {
		t.Errorf("handler full, 304 responses = %d, %d, want 1, 2", f, u)
	}
}

func TestStaleWhileRevalidate(t *testing.T) {
	clk := newClock()
	v := &versioned{cc: "max-age=10, stale-while-revalidate=60"}
	mw := clocked(t, clk).Middleware(v)
	do(mw, "GET", "/p")
	clk.advance(20 * time.Second)
	v.changed.Store(true)
	r := do(mw, "GET", "/p")
	expect(t, "GET in the stale-while-revalidate window", r, httpcache.Stale, "v1")
	if got := r.header.Get("Age"); got != "20" {
		t.Errorf("stale response Age = %q, want 20", got)
	}
	// The revalidation ran after the stale response, before ServeHTTP
	// returned.
	expect(t, "GET after it", do(mw, "GET", "/p"), httpcache.Hit, "v2")
	clk.advance(100 * time.Second)
	v.changed.Store(true)
	expect(t, "GET past the window", do(mw, "GET", "/p"), httpcache.Miss, "v3")
}

func TestStaleIfError(t *testing.T) {
	clk := newClock()
	v := &versioned{cc: "max-age=10, stale-if-error=60"}
	mw := clocked(t, clk).Middleware(v)
	do(mw, "GET", "/p")
	clk.advance(20 * time.Second)
	v.fail.Store(http.StatusServiceUnavailable)
	expect(t, "GET while the handler fails", do(mw, "GET", "/p"), httpcache.Stale, "v1")
	clk.advance(60 * time.Second)
	if r := do(mw, "GET", "/p"); r.status != http.StatusServiceUnavailable || r.state != httpcache.Miss {
		t.Errorf("GET past the window = %s %d, want MISS 503", r.state, r.status)
	}
}

func TestNoStaleWhenForbidden(t *testing.T) {
	for _, cc := range []string{
		"max-age=10, stale-if-error=60, must-revalidate",
		"max-age=10, stale-if-error=60, proxy-revalidate",
		"s-maxage=10, stale-if-error=60",
	} {
		t.Run(cc, func(t *testing.T) {
			clk := newClock()
			v := &versioned{cc: cc}
			mw := clocked(t, clk).Middleware(v)
			do(mw, "GET", "/p")
			clk.advance(20 * time.Second)
			v.fail.Store(http.StatusServiceUnavailable)
			if r := do(mw, "GET", "/p"); r.status != http.StatusServiceUnavailable {
				t.Errorf("GET stale while failing = %s %d %q, want the 503", r.state, r.status, r.body)
			}
			if r := do(mw, "GET", "/p", "Cache-Control", "max-stale"); r.status != http.StatusServiceUnavailable {
				t.Errorf("GET max-stale = %s %d %q, want the 503", r.state, r.status, r.body)
			}
		})
	}
}

func TestMaxStaleAndOnlyIfCached(t *testing.T) {
	clk := newClock()
	v := &versioned{cc: "max-age=10"}
	mw := clocked(t, clk).Middleware(v)
	if r := do(mw, "GET", "/p", "Cache-Control", "only-if-cached"); r.status != http.StatusGatewayTimeout {
		t.Errorf("GET only-if-cached, nothing stored = %d, want 504", r.status)
	}
	do(mw, "GET", "/p")
	clk.advance(20 * time.Second)
	expect(t, "GET max-stale=30", do(mw, "GET", "/p", "Cache-Control", "max-stale=30"), httpcache.Stale, "v1")
	if r := do(mw, "GET", "/p", "Cache-Control", "only-if-cached"); r.status != http.StatusGatewayTimeout {
		t.Errorf("GET only-if-cached, stale = %d, want 504", r.status)
	}
	if n := v.full.Load() + v.unmod.Load(); n != 1 {
		t.Errorf("handler calls = %d, want 1", n)
	}
}

func TestInvalidationAfterUnsafeMethods(t *testing.T) {
	h := count(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodGet:
			w.Header().Set("Cache-Control", "max-age=60")
			io.WriteString(w, r.URL.Path)
		case "FAIL":
			w.WriteHeader(http.StatusBadRequest)
		default:
			if loc := r.Header.Get("X-Location"); loc != "" {
				w.Header().Set("Location", loc)
			}
			if loc := r.Header.Get("X-Content-Location"); loc != "" {
				w.Header().Set("Content-Location", loc)
			}
			w.WriteHeader(http.StatusCreated)
		}
	})
	mw := newCache(t, newManager(t, redistest.StartMini(t)), "page").Middleware(h)
	tests := []struct {
		name    string
		method  string
		header  []string
		dropped []string
	}{
		{"POST", "POST", nil, []string{"/a"}},
		{"PUT", "PUT", nil, []string{"/a"}},
		{"DELETE", "DELETE", nil, []string{"/a"}},
		{"unknown method", "M-SEARCH", nil, []string{"/a"}},
		{"error status", "FAIL", nil, nil},
		{"Location", "POST", []string{"X-Location", "/b"}, []string{"/a", "/b"}},
		{"relative Content-Location", "POST", []string{"X-Content-Location", "c"}, []string{"/a", "/c"}},
		{"absolute Location, same host", "POST", []string{"X-Location", "http://example.com/b"}, []string{"/a", "/b"}},
		{"Location on another host", "POST", []string{"X-Location", "http://other.example/b"}, []string{"/a"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, p := range []string{"/a", "/b", "/c"} {
				do(mw, "GET", p)
			}
			do(mw, tt.method, "/a", tt.header...)
			for _, p := range []string{"/a", "/b", "/c"} {
				want := httpcache.Hit
				if strings.Contains(strings.Join(tt.dropped, " "), p) {
					want = httpcache.Miss
				}
				expect(t, "GET "+p, do(mw, "GET", p), want, p)
			}
		})
	}
}

func TestVaryVariants(t *testing.T) {
	h := count(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("Vary", "Accept-Encoding, Accept-Language")
		io.WriteString(w, "enc="+r.Header.Get("Accept-Encoding")+" lang="+r.Header.Get("Accept-Language"))
	})
	mw := newCache(t, newManager(t, redistest.StartMini(t)), "page").Middleware(h)
	steps := []struct {
		header      []string
		state, body string
	}{
		{[]string{"Accept-Encoding", "gzip, br"}, httpcache.Miss, "enc=gzip, br lang="},
		{[]string{"Accept-Encoding", "gzip,br"}, httpcache.Hit, "enc=gzip, br lang="},
		{[]string{"Accept-Encoding", "gzip", "Accept-Encoding", "br"}, httpcache.Hit, "enc=gzip, br lang="},
		{[]string{"Accept-Encoding", "identity"}, httpcache.Miss, "enc=identity lang="},
		{[]string{"Accept-Encoding", "gzip, br", "Accept-Language", "fr"}, httpcache.Miss, "enc=gzip, br lang=fr"},
		{nil, httpcache.Miss, "enc= lang="},
		{[]string{"Accept-Encoding", ""}, httpcache.Miss, "enc= lang="},
		{[]string{"Accept-Encoding", "identity"}, httpcache.Hit, "enc=identity lang="},
		{[]string{"Accept-Encoding", "gzip, br"}, httpcache.Hit, "enc=gzip, br lang="},
		{nil, httpcache.Hit, "enc= lang="},
	}
	for i, st := range steps {
		expect(t, fmt.Sprintf("GET #%d with %q", i+1, st.header), do(mw, "GET", "/p", st.header...), st.state, st.body)
	}
	if n := h.calls.Load(); n != 5 {
		t.Errorf("handler calls = %d, want 5", n)
	}
}

func TestAuthorization(t *testing.T) {
	tests := []struct {
		cc     string
		shared bool
	}{
		{"max-age=60", false},
		{"max-age=60, public", true},
		{"s-maxage=60", true},
		{"max-age=60, must-revalidate", true},
	}
	for _, tt := range tests {
		t.Run(tt.cc, func(t *testing.T) {
			h := count(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Cache-Control", tt.cc)
				io.WriteString(w, "for "+r.Header.Get("Authorization"))
			})
			mw := newCache(t, newManager(t, redistest.StartMini(t)), "page").Middleware(h)
			do(mw, "GET", "/p", "Authorization", "alice")
			r := do(mw, "GET", "/p")
			if got := r.body == "for alice"; got != tt.shared {
				t.Errorf("GET without Authorization after one with = %s %q, shared %v, want %v", r.state, r.body, got, tt.shared)
			}
		})
	}
	t.Run("stored response not given to Authorization requests", func(t *testing.T) {
		h := count(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Cache-Control", "max-age=60")
			io.WriteString(w, "for "+r.Header.Get("Authorization"))
		})
		mw := newCache(t, newManager(t, redistest.StartMini(t)), "page").Middleware(h)
		do(mw, "GET", "/p")
		expect(t, "GET with Authorization", do(mw, "GET", "/p", "Authorization", "bob"), httpcache.Miss, "for bob")
	})
	t.Run("private cache", func(t *testing.T) {
		h := count(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Cache-Control", "private, max-age=60")
			io.WriteString(w, "for "+r.Header.Get("Authorization"))
		})
		byUser := httpcache.WithVary(func(r *http.Request) string { return r.Header.Get("Authorization") })
		mw := newCache(t, newManager(t, redistest.StartMini(t)), "page", httpcache.WithPrivate(true), byUser).Middleware(h)
		do(mw, "GET", "/p", "Authorization", "alice")
		expect(t, "GET as alice again", do(mw, "GET", "/p", "Authorization", "alice"), httpcache.Hit, "for alice")
		expect(t, "GET as bob", do(mw, "GET", "/p", "Authorization", "bob"), httpcache.Miss, "for bob")
	})
}

func TestQueryKeys(t *testing.T) {
	tests := []struct {
		name          string
		opt           httpcache.Option
		first, second string
		same          bool
	}{
		{"allowed differ", httpcache.WithQueryKeys("id"), "/p?id=1", "/p?id=2", false},
		{"others ignored", httpcache.WithQueryKeys("id"), "/p?id=1&utm=a", "/p?utm=b&id=1", true},
		{"new parameter ignored", httpcache.WithQueryKeys("id"), "/p?id=1", "/p?id=1&bust=123", true},
		{"denied ignored", httpcache.WithoutQueryKeys("utm"), "/p?id=1&utm=a", "/p?id=1&utm=b", true},
		{"others differ", httpcache.WithoutQueryKeys("utm"), "/p?id=1", "/p?id=2", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := count(text("page"))
			mw := newCache(t, newManager(t, redistest.StartMini(t)), "page", tt.opt).Middleware(h)
			do(mw, "GET", tt.first)
			do(mw, "GET", tt.second)
			if same := h.calls.Load() == 1; same != tt.same {
				t.Errorf("GET %s then %s shared an entry: %v, want %v", tt.first, tt.second, same, tt.same)
			}
		})
	}
}

// TestInterimPassedThrough: a 103 from the handler reaches the client of
// the miss, and is neither stored nor sent with hits.
func TestInterimPassedThrough(t *testing.T) {
	mw := newCache(t, newManager(t, redistest.StartMini(t)), "page").Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</style.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Del("Link")
		w.Header().Set("Cache-Control", "max-age=60")
		io.WriteString(w, "page")
	}))
	srv := httptest.NewServer(mw)
	defer srv.Close()
	for i, want := range []int{1, 0} {
		var hints int
		req, _ := http.NewRequest(http.MethodGet, srv.URL+"/", nil)
		req = req.WithContext(httptraceContext(req, func(code int, h http.Header) {
			if code == http.StatusEarlyHints && h.Get("Link") != "" {
				hints++
			}
		}))
		res, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if hints != want || string(body) != "page" || res.Header.Get("Link") != "" {
			t.Errorf("GET #%d: %d early hints, body %q, Link %q; want %d, \"page\", none", i+1, hints, body, res.Header.Get("Link"), want)
		}
	}
}

// httptraceContext returns req's context with got1xx called for every
// informational response.
func httptraceContext(req *http.Request, got1xx func(int, http.Header)) context.Context {
	return httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
		Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
			got1xx(code, http.Header(h))
			return nil
		},
	})
}

// TestConcurrentRevalidationRunsHandlerOnce: many requests for one stale
// response share one conditional run of the handler.
func TestConcurrentRevalidationRunsHandlerOnce(t *testing.T) {
	clk := newClock()
	m := newManager(t, redistest.StartMini(t))
	c := newCache(t, m, "page")
	httpcache.SetClock(c, clk.now)
	entered, release := make(chan struct{}), make(chan struct{})
	var conditional atomic.Int32
	mw := c.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("ETag", `"v1"`)
		if r.Header.Get("If-None-Match") == `"v1"` {
			if conditional.Add(1) == 1 {
				close(entered)
			}
			<-release
			w.WriteHeader(http.StatusNotModified)
			return
		}
		io.WriteString(w, "v1")
	}))
	do(mw, "GET", "/p")
	clk.advance(2 * time.Minute)
	const n = 50
	hits := m.Stats().Hits
	results := make(chan result, n)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() { results <- do(mw, "GET", "/p") })
	}
	<-entered
	// Every request has read the stale entry (a Redis hit) before it
	// joins the revalidation; missing the deadline only weakens the test.
	deadline := time.Now().Add(5 * time.Second)
	for m.Stats().Hits < hits+n && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	close(release)
	wg.Wait()
	close(results)
	for r := range results {
		if r.body != "v1" || r.state != httpcache.Revalidated && r.state != httpcache.Hit {
			t.Errorf("GET /p = %s %q, want REVALIDATED or HIT \"v1\"", r.state, r.body)
		}
	}
	if got := conditional.Load(); got != 1 {
		t.Errorf("conditional handler runs = %d, want 1", got)
	}
}
