package httpcache

import (
	"fmt"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
)

// response is what the cache stores for one key: the handler's status,
// its header as of WriteHeader (keys as the handler wrote them), and its
// body. The field tags keep encoded entries short in msgpack and JSON.
type response struct {
	Status int         `json:"s"`
	Header http.Header `json:"h"`
	Body   []byte      `json:"b"`
}

// recorder is the http.ResponseWriter a handler writes to during a load.
// It behaves as net/http's does where the difference would show in the
// replayed response: the header is fixed at WriteHeader, and informational
// 1xx statuses are not final.
type recorder struct {
	header http.Header // the map the handler edits
	snap   http.Header // header as of WriteHeader
	status int
	body   []byte
}

func newRecorder() *recorder {
	return &recorder{header: make(http.Header)}
}

// Header returns the header map the handler edits.
func (rec *recorder) Header() http.Header { return rec.header }

// WriteHeader records the status and fixes the header, once.
func (rec *recorder) WriteHeader(code int) {
	if rec.status != 0 {
		return
	}
	if code < 100 || code > 999 {
		// As net/http does: the handler is broken.
		panic(fmt.Sprintf("invalid WriteHeader code %v", code))
	}
	if code < 200 && code != http.StatusSwitchingProtocols {
		return // informational: net/http would send it at once, we drop it
	}
	rec.status = code
	rec.snap = rec.header.Clone()
}

// Write appends p to the body, writing a 200 status first if none was.
func (rec *recorder) Write(p []byte) (int, error) {
	rec.WriteHeader(http.StatusOK)
	if !bodyAllowed(rec.status) {
		return 0, http.ErrBodyNotAllowed
	}
	rec.body = append(rec.body, p...)
	return len(p), nil
}

// WriteString is Write without the conversion.
func (rec *recorder) WriteString(s string) (int, error) {
	rec.WriteHeader(http.StatusOK)
	if !bodyAllowed(rec.status) {
		return 0, http.ErrBodyNotAllowed
	}
	rec.body = append(rec.body, s...)
	return len(s), nil
}

// Flush fixes the status and header, as a flush to a client would. The
// body stays buffered until the handler returns.
func (rec *recorder) Flush() { rec.WriteHeader(http.StatusOK) }

// finish returns the recorded response and its trailers: the values of
// the declared Trailer names and of http.TrailerPrefix keys, set after the
// header was fixed.
func (rec *recorder) finish() (response, http.Header) {
	rec.WriteHeader(http.StatusOK)
	h := rec.snap
	var trailers http.Header
	declared := headerValues(h, "Trailer")
	for k, v := range rec.header {
		if strings.HasPrefix(k, http.TrailerPrefix) || isDeclared(declared, k) {
			if trailers == nil {
				trailers = make(http.Header)
			}
			trailers[k] = v
		}
	}
	return response{Status: rec.status, Header: h, Body: rec.body}, trailers
}

// isDeclared reports whether key is among the comma-separated names of
// Trailer header values.
func isDeclared(trailer []string, key string) bool {
	for _, v := range trailer {
		for v != "" {
			var name string
			name, v, _ = strings.Cut(v, ",")
			if http.CanonicalHeaderKey(strings.TrimSpace(name)) == key {
				return true
			}
		}
	}
	return false
}

// bodyAllowed reports whether a response with status may have a body.
func bodyAllowed(status int) bool {
	return status >= 200 && status != http.StatusNoContent && status != http.StatusNotModified
}

// serve runs next, returning the value and stack of a panic, if any.
func serve(next http.Handler, w http.ResponseWriter, r *http.Request) (p any, stack []byte) {
	defer func() {
		if p = recover(); p != nil {
			stack = debug.Stack()
		}
	}()
	next.ServeHTTP(w, r)
	return nil, nil
}

// storable reports whether resp may be stored and served to every request
// of its key.
func (c *Cache) storable(resp *response, trailers http.Header) bool {
	h := resp.Header
	if len(resp.Body) > c.maxBody ||
		resp.Status == http.StatusPartialContent || resp.Status == http.StatusNotModified ||
		len(trailers) > 0 || len(headerValues(h, "Trailer")) > 0 ||
		len(headerValues(h, "Set-Cookie")) > 0 {
		return false
	}
	noStore, noCache, private := cacheControl(headerValues(h, "Cache-Control"))
	return !noStore && !noCache && !private && c.condition(resp.Status, h)
}

// cacheControl reports which of the directives no-store, no-cache and
// private appear in Cache-Control values. A directive with a value
// (private="Set-Cookie") counts as the bare directive: that errs on the
// side of not storing.
func cacheControl(values []string) (noStore, noCache, private bool) {
	for _, v := range values {
		for v != "" {
			var d string
			d, v, _ = strings.Cut(v, ",")
			name, _, _ := strings.Cut(d, "=")
			switch name = strings.TrimSpace(name); {
			case strings.EqualFold(name, "no-store"):
				noStore = true
			case strings.EqualFold(name, "no-cache"):
				noCache = true
			case strings.EqualFold(name, "private"):
				private = true
			}
		}
	}
	return noStore, noCache, private
}

// headerValues returns the values of name in h, also under keys that are
// not in canonical form: a handler can assign h["set-cookie"] directly,
// and net/http sends it as written.
func headerValues(h http.Header, name string) []string {
	vs := h[name]
	for k, v := range h {
		if k != name && strings.EqualFold(k, name) {
			vs = append(vs[:len(vs):len(vs)], v...)
		}
	}
	return vs
}

// replay sends resp to w, with the body unless r is a HEAD, then trailers,
// and state in StatusHeader. A GET gets the header as the handler set it,
// and net/http derives Content-Length and Content-Type from the body just
// as it did for the handler. A HEAD gets no body to derive them from, so
// replay sets them as net/http would have.
func replay(w http.ResponseWriter, r *http.Request, resp *response, trailers http.Header, state string) {
	h := w.Header()
	for k, v := range resp.Header {
		h[k] = v
	}
	h.Set(StatusHeader, state)
	if r.Method == http.MethodHead {
		headHeader(h, resp, len(trailers) > 0)
	}
	body := r.Method != http.MethodHead && len(resp.Body) > 0
	if !body || resp.Status != http.StatusOK {
		// A 200 with a body is left to Write, as most handlers do: some
		// ResponseWriters (httptest's) sniff the type only then.
		w.WriteHeader(resp.Status)
	}
	if body {
		// An error means the client left; there is no one to tell.
		_, _ = w.Write(resp.Body)
	}
	for k, v := range trailers {
		h[k] = v
	}
}

// headHeader adds to h the Content-Length and sniffed Content-Type that
// net/http adds for a handler that writes resp's body, in the cases where
// it does.
func headHeader(h http.Header, resp *response, trailers bool) {
	if len(resp.Body) == 0 || !bodyAllowed(resp.Status) || h.Get("Transfer-Encoding") != "" {
		return
	}
	if _, ok := h["Content-Length"]; !ok && !trailers {
		h["Content-Length"] = []string{strconv.Itoa(len(resp.Body))}
	}
	if _, ok := h["Content-Type"]; !ok && h.Get("Content-Encoding") == "" {
		h["Content-Type"] = []string{http.DetectContentType(resp.Body)}
	}
}

// uncached is the loader's error for a response that must not be stored,
// or a handler that panicked. Everyone who shared the load receives it,
// but only owner, the request the handler ran for, may send the response:
// a response that is not stored may be personal (private, Set-Cookie, a
// 304 to the owner's If-None-Match). The others run the handler themselves.
type uncached struct {
	owner    *http.Request
	resp     response
	trailers http.Header
	panicked any
	stack    []byte
}

func (u *uncached) Error() string {
	if u.panicked != nil {
		return fmt.Sprintf("httpcache: handler panicked: %v", u.panicked)
	}
	return "httpcache: response not stored"
}

// repanic raises the handler's panic, if any, in the owner's goroutine, so
// that net/http (or an outer recovery middleware) handles it as if no cache
// were in between. The value is kept for http.ErrAbortHandler, and wrapped
// with the handler's stack otherwise, since the stack of the re-raise says
// nothing.
func (u *uncached) repanic() {
	switch p := u.panicked.(type) {
	case nil:
	case error:
		if p == http.ErrAbortHandler {
			panic(p)
		}
		panic(fmt.Errorf("%w\n\nhandler goroutine stack:\n%s", p, u.stack))
	default:
		panic(fmt.Sprintf("%v\n\nhandler goroutine stack:\n%s", p, u.stack))
	}
}
