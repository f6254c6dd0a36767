package httpcache_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/cachemgr/cachemgr"
	"github.com/cachemgr/cachemgr/httpcache"
	"github.com/redis/go-redis/v9"
)

// exampleManager returns a Manager on an embedded miniredis, so the
// examples run anywhere. The cleanup closes the Manager, client and server.
func exampleManager() (*cachemgr.Manager, func()) {
	mr := miniredis.NewMiniRedis()
	if err := mr.Start(); err != nil {
		panic(err)
	}
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr(), ContextTimeoutEnabled: true})
	// A generous op timeout, so that a busy machine cannot fail a write
	// and change the output.
	m, err := cachemgr.New(rdb, cachemgr.WithPrefix("web"), cachemgr.WithOpTimeout(5*time.Second))
	if err != nil {
		panic(err)
	}
	return m, func() { m.Close(); rdb.Close(); mr.Close() }
}

// get serves one GET request to h and prints what came back.
func get(h http.Handler, target, user string) {
	req := httptest.NewRequest(http.MethodGet, target, nil)
	req.Header.Set("X-User", user)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	fmt.Println(rec.Header().Get(httpcache.StatusHeader), rec.Body.String())
}

func ExampleCache_Middleware() {
	m, cleanup := exampleManager()
	defer cleanup()

	pages, err := httpcache.New(m, "page",
		httpcache.WithTTL(5*time.Minute),
		// The page greets the user, so each user needs their own entry.
		httpcache.WithVary(func(r *http.Request) string { return r.Header.Get("X-User") }),
	)
	if err != nil {
		fmt.Println(err)
		return
	}
	renders := 0 // the loads that run the handler synchronize with the requests
	hello := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		renders++
		// The response says how long it may be reused; without this (or
		// Expires, or Last-Modified) it would not be stored.
		w.Header().Set("Cache-Control", "max-age=60")
		fmt.Fprintf(w, "hello %s, page %s", r.Header.Get("X-User"), r.URL.Query().Get("page"))
	})
	h := pages.Middleware(hello)

	get(h, "/hello?page=1&sort=asc", "ada")
	get(h, "/hello?sort=asc&page=1", "ada") // same query, other order
	get(h, "/hello?page=1&sort=asc", "bob")
	fmt.Println("renders:", renders)
	// Output:
	// MISS hello ada, page 1
	// HIT hello ada, page 1
	// MISS hello bob, page 1
	// renders: 2
}

func ExampleCache_InvalidatePath() {
	m, cleanup := exampleManager()
	defer cleanup()
	ctx := context.Background()

	pages, _ := httpcache.New(m, "page",
		httpcache.WithTags(func(r *http.Request) []string { return []string{"path:" + r.URL.Path} }),
	)
	h := pages.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		io.WriteString(w, r.URL.Path)
	}))
	for _, p := range []string{"/products/1", "/products/2", "/about"} {
		get(h, p, "")
	}

	n, err := pages.InvalidatePath(ctx, "/products/")
	fmt.Println("invalidated:", n, err)
	get(h, "/products/1", "")
	get(h, "/about", "")

	// Tags from WithTags are invalidated through the Manager, for example
	// by the handler of a write.
	_ = m.InvalidateTags(ctx, "path:/about")
	get(h, "/about", "")
	// Output:
	// MISS /products/1
	// MISS /products/2
	// MISS /about
	// invalidated: 2 <nil>
	// MISS /products/1
	// HIT /about
	// MISS /about
}

// A handler that sets an ETag and answers If-None-Match with 304 lets the
// cache confirm a stale response without rendering it again. Clients
// that send the ETag back get a 304 from the cache.
func Example_revalidation() {
	m, cleanup := exampleManager()
	defer cleanup()

	pages, _ := httpcache.New(m, "page")
	renders := 0
	h := pages.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// no-cache: store it, but check with the handler before each use.
		w.Header().Set("Cache-Control", "no-cache")
		w.Header().Set("ETag", `"v1"`)
		if r.Header.Get("If-None-Match") == `"v1"` {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		renders++
		io.WriteString(w, "report v1")
	}))

	get(h, "/report", "")
	get(h, "/report", "")
	req := httptest.NewRequest(http.MethodGet, "/report", nil)
	req.Header.Set("If-None-Match", `"v1"`)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	fmt.Println(rec.Code, rec.Header().Get(httpcache.StatusHeader))
	fmt.Println("renders:", renders)
	// Output:
	// MISS report v1
	// REVALIDATED report v1
	// 304 REVALIDATED
	// renders: 1
}

// stale-while-revalidate lets the cache answer at once with the stale
// response and revalidate after it is sent.
func Example_staleWhileRevalidate() {
	m, cleanup := exampleManager()
	defer cleanup()

	pages, _ := httpcache.New(m, "page")
	version := 0
	h := pages.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		version++
		// Stale at once, but usable for a minute while a new one loads.
		w.Header().Set("Cache-Control", "max-age=0, stale-while-revalidate=60")
		fmt.Fprintf(w, "prices v%d", version)
	}))
	get(h, "/prices", "")
	get(h, "/prices", "") // v1 is sent, then v2 is loaded and stored
	get(h, "/prices", "")
	// Output:
	// MISS prices v1
	// STALE prices v1
	// STALE prices v2
}

// A successful POST, PUT or DELETE to a URL deletes its stored responses.
func Example_invalidation() {
	m, cleanup := exampleManager()
	defer cleanup()

	pages, _ := httpcache.New(m, "page")
	stock := 5
	h := pages.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			stock--
			w.WriteHeader(http.StatusNoContent)
			return
		}
		w.Header().Set("Cache-Control", "max-age=3600")
		fmt.Fprintf(w, "in stock: %d", stock)
	}))
	get(h, "/items/7", "")
	get(h, "/items/7", "")
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodPost, "/items/7", nil))
	get(h, "/items/7", "")
	// Output:
	// MISS in stock: 5
	// HIT in stock: 5
	// MISS in stock: 4
}

// WithQueryKeys keeps parameters the page does not depend on out of the
// key, so that clients cannot make new entries with them.
func ExampleWithQueryKeys() {
	m, cleanup := exampleManager()
	defer cleanup()

	pages, _ := httpcache.New(m, "page", httpcache.WithQueryKeys("q"))
	h := pages.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		fmt.Fprintf(w, "results for %s", r.URL.Query().Get("q"))
	}))
	get(h, "/search?q=go", "")
	get(h, "/search?q=go&utm_source=mail", "")
	get(h, "/search?q=redis", "")
	// Output:
	// MISS results for go
	// HIT results for go
	// MISS results for redis
}

// A response's Vary header makes the cache keep one response per value of
// the request headers it names.
func Example_vary() {
	m, cleanup := exampleManager()
	defer cleanup()

	pages, _ := httpcache.New(m, "page")
	h := pages.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("Vary", "Accept-Language")
		if r.Header.Get("Accept-Language") == "fr" {
			io.WriteString(w, "bonjour")
			return
		}
		io.WriteString(w, "hello")
	}))
	for _, lang := range []string{"fr", "en", "fr", "en"} {
		req := httptest.NewRequest(http.MethodGet, "/greeting", nil)
		req.Header.Set("Accept-Language", lang)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		fmt.Println(rec.Header().Get(httpcache.StatusHeader), rec.Body.String())
	}
	// Output:
	// MISS bonjour
	// MISS hello
	// HIT bonjour
	// HIT hello
}

// A private cache keyed by user stores the responses marked private, and
// those to requests with Authorization.
func ExampleWithPrivate() {
	m, cleanup := exampleManager()
	defer cleanup()

	inbox, _ := httpcache.New(m, "inbox",
		httpcache.WithPrivate(true),
		// Each user's responses under keys of their own.
		httpcache.WithVary(func(r *http.Request) string { return r.Header.Get("X-User") }),
	)
	h := inbox.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "private, max-age=30")
		fmt.Fprintf(w, "inbox of %s", r.Header.Get("X-User"))
	}))
	get(h, "/inbox", "ada")
	get(h, "/inbox", "ada")
	get(h, "/inbox", "bob")
	// Output:
	// MISS inbox of ada
	// HIT inbox of ada
	// MISS inbox of bob
}
