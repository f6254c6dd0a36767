package httpcache

import (
	"fmt"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
)

// response is a response as the handler wrote it: its status, its header
// as of WriteHeader (keys as the handler wrote them), and its body.
type response struct {
	Status int         `json:"s"`
	Header http.Header `json:"h"`
	Body   []byte      `json:"b"`
}

// stored is one stored response, with what RFC 9111 needs to know about it
// later. Times are Unix nanoseconds, durations nanoseconds. The field tags
// keep encoded entries short in msgpack and JSON.
type stored struct {
	response
	Req     int64    `json:"q"` // when the request that got it was sent
	Resp    int64    `json:"t"` // when the response arrived
	InitAge int64    `json:"a"` // its corrected initial age
	Life    int64    `json:"l"` // its freshness lifetime
	SWR     int64    `json:"w"` // its stale-while-revalidate window
	SIE     int64    `json:"e"` // its stale-if-error window
	Flags   uint8    `json:"f"`
	Vary    []string `json:"v"` // the request header names in its Vary, canonical
	VaryKey string   `json:"k"` // their normalised values in the request that got it
}

// entry is what the cache stores under one key: the responses of one URL,
// one per variant when they carry Vary, newest first.
type entry struct {
	R []stored `json:"r"`
}

// maxVariants bounds the responses kept for one URL.
const maxVariants = 8

// recorder is the http.ResponseWriter a handler writes to during a load.
// It behaves as net/http's does where the difference would show in the
// replayed response: the header is fixed at WriteHeader, and informational
// 1xx statuses are not final.
type recorder struct {
	interim func(code int, h http.Header) // receives informational responses, if set
	header  http.Header                   // the map the handler edits
	snap    http.Header                   // header as of WriteHeader
	status  int
	body    []byte
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
		// Informational: net/http would send it at once, and so do we,
		// to the client of the request the handler runs for. It is
		// never stored.
		if rec.interim != nil {
			rec.interim(code, rec.header.Clone())
		}
		return
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

// storable reports whether resp may be stored at all, before the rules
// of RFC 9111 are applied: not too large, not a partial or 304 response,
// without trailers or cookies, and accepted by the condition.
func (c *Cache) storable(resp *response, trailers http.Header) bool {
	h := resp.Header
	if len(resp.Body) > c.maxBody || !storableStatus(resp.Status) ||
		len(trailers) > 0 || len(headerValues(h, "Trailer")) > 0 ||
		len(headerValues(h, "Set-Cookie")) > 0 {
		return false
	}
	return c.condition(resp.Status, h)
}

// storableStatus reports whether a response with status can be an entry:
// a final response, and neither partial (206) nor a 304, which completes
// another response.
func storableStatus(status int) bool {
	return status >= 200 && status != http.StatusPartialContent && status != http.StatusNotModified
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
// state in StatusHeader, and age, unless empty, in Age. A GET gets the
// header as the handler set it, plus a Content-Length when it has no
// trailers, and net/http sniffs a missing Content-Type from the body just
// as it did for the handler. A HEAD gets no body to derive them from, so
// replay sets them as net/http would have.
func replay(w http.ResponseWriter, r *http.Request, resp *response, trailers http.Header, state, age string) {
	h := w.Header()
	replayHeader(h, r.Method == http.MethodHead, resp, len(trailers) > 0, state, age)
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

// replayHeader sets in h the header replay sends for resp (see replay), to
// a HEAD request when head.
func replayHeader(h http.Header, head bool, resp *response, trailers bool, state, age string) {
	for k, v := range resp.Header {
		h[k] = v
	}
	h[StatusHeader] = []string{state}
	if age != "" {
		h["Age"] = []string{age}
	}
	if head {
		headHeader(h, resp, trailers)
	} else if !trailers && bodyAllowed(resp.Status) && len(headerValues(h, "Transfer-Encoding")) == 0 {
		// The body is all here: say how long it is, rather than leave
		// net/http to send a large one chunked.
		h["Content-Length"] = []string{strconv.Itoa(len(resp.Body))}
	}
}

// headHeader adds to h the Content-Length and sniffed Content-Type that
// net/http adds for a handler that writes resp's body, in the cases where
// it does.
func headHeader(h http.Header, resp *response, trailers bool) {
	if !derivesFromBody(h, resp) {
		return
	}
	if _, ok := h["Content-Length"]; !ok && !trailers {
		h["Content-Length"] = []string{strconv.Itoa(len(resp.Body))}
	}
	if _, ok := h["Content-Type"]; !ok && h.Get("Content-Encoding") == "" {
		h["Content-Type"] = []string{http.DetectContentType(resp.Body)}
	}
}

// derivesFromBody reports whether net/http would derive headers from the
// body of resp, sent with header h: a body that is not empty, that the
// status allows, and that is not chunked by the handler.
func derivesFromBody(h http.Header, resp *response) bool {
	return len(resp.Body) > 0 && bodyAllowed(resp.Status) && h.Get("Transfer-Encoding") == ""
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
