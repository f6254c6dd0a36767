package httpcache

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/cachemgr/cachemgr"
)

// backgroundTimeout bounds a revalidation that runs after a stale
// response was sent (stale-while-revalidate).
const backgroundTimeout = 30 * time.Second

// Middleware returns a handler that answers GET and HEAD requests from the
// cache, running next on a miss or to revalidate a stale response and
// storing what it returns, invalidates the cached responses of a URL after
// a successful unsafe request (POST, PUT, DELETE...) to it, and passes
// every other request to next. See the package documentation for what is
// stored, how long it is fresh, and how concurrent misses share one run of
// next.
func (c *Cache) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodGet, http.MethodHead:
			c.serve(w, r, next)
		case http.MethodOptions, http.MethodTrace, http.MethodConnect:
			next.ServeHTTP(w, r)
		default:
			c.serveUnsafe(w, r, next)
		}
	})
}

// serve answers a GET or HEAD request.
func (c *Cache) serve(w http.ResponseWriter, r *http.Request, next http.Handler) {
	key, ok := c.key(r)
	rcc := c.requestDirectives(r)
	if !ok || rcc.has[ccNoStore] {
		passThrough(w, r, next)
		return
	}
	ctx := r.Context()
	e, err := c.cache.Get(ctx, key)
	if err != nil && ctx.Err() != nil {
		return // the client left
	}
	// Any other error is a miss: Fetch below answers from the handler
	// when Redis is down.
	i := e.match(r)
	switch {
	case i < 0:
		c.serveUnmatched(w, r, next, key, e, &rcc)
	case !c.mayAnswer(r, &e.R[i]):
		c.refill(w, r, next, key, e, nil)
	default:
		c.serveStored(w, r, next, key, e, &e.R[i], &rcc)
	}
}

// requestDirectives returns the Cache-Control directives of r as the
// cache heeds them: Pragma: no-cache counts as no-cache when r has no
// Cache-Control, and unless the Cache honours client revalidation, the
// directives by which a client asks for it (no-cache, max-age, min-fresh)
// are dropped.
func (c *Cache) requestDirectives(r *http.Request) directives {
	rcc := parseCacheControl(r.Header["Cache-Control"])
	if len(r.Header["Cache-Control"]) == 0 && pragmaNoCache(r.Header["Pragma"]) {
		rcc.has[ccNoCache] = true
	}
	if !c.clientRevalidation {
		rcc.has[ccNoCache], rcc.delta[ccMaxAge], rcc.delta[ccMinFresh] = false, -1, -1
	}
	return rcc
}

// credentialed reports whether r has credentials that a shared cache must
// heed: it answers such a request only from a response that allows it
// (flagAuthOK), and runs the handler for it apart from other requests.
func (c *Cache) credentialed(r *http.Request) bool {
	return !c.private && r.Header.Get("Authorization") != ""
}

// mayAnswer reports whether stored response s may answer r as far as
// credentials go.
func (c *Cache) mayAnswer(r *http.Request, s *stored) bool {
	return !c.credentialed(r) || s.Flags&flagAuthOK != 0
}

// serveUnmatched answers r when no response stored in e matches it.
func (c *Cache) serveUnmatched(w http.ResponseWriter, r *http.Request, next http.Handler, key string, e entry, rcc *directives) {
	switch {
	case rcc.has[ccOnlyIfCached]:
		gatewayTimeout(w)
	case len(e.R) == 0 && !c.credentialed(r):
		c.load(w, r, next, key)
	default:
		// A credentialed request refills rather than Fetch, which would
		// share the load with requests without these credentials.
		c.refill(w, r, next, key, e, nil)
	}
}

// serveStored answers r with stored response s of e when it is fresh, or
// stale where that is allowed, and revalidates it otherwise.
func (c *Cache) serveStored(w http.ResponseWriter, r *http.Request, next http.Handler, key string, e entry, s *stored, rcc *directives) {
	switch c.reuse(s, rcc) {
	case reuseFresh:
		c.send(w, r, s, Hit)
	case reuseStale:
		c.send(w, r, s, Stale)
	case reuseStaleWhileRevalidate:
		c.send(w, r, s, Stale)
		// The client has its response once it is flushed; the
		// revalidation then runs on this goroutine, not one of its own,
		// so nothing outlives the request.
		_ = http.NewResponseController(w).Flush()
		bctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), backgroundTimeout)
		defer cancel()
		c.refill(nil, r.WithContext(bctx), next, key, e, s)
	case reuseNot:
		if rcc.has[ccOnlyIfCached] {
			gatewayTimeout(w)
			return
		}
		c.refill(w, r, next, key, e, s)
	}
}

// reuse is how a stored response may answer a request.
type reuse uint8

const (
	// reuseNot: it must be revalidated first.
	reuseNot reuse = iota
	// reuseFresh: it is fresh.
	reuseFresh
	// reuseStale: it is stale, and the request accepts that (max-stale).
	reuseStale
	// reuseStaleWhileRevalidate: it is stale, within its
	// stale-while-revalidate window; it is revalidated once sent.
	reuseStaleWhileRevalidate
)

// reuse returns how stored response s may answer a request with
// directives rcc, now.
func (c *Cache) reuse(s *stored, rcc *directives) reuse {
	age := s.age(c.now())
	life := time.Duration(s.Life)
	switch {
	case rcc.asksRevalidation(age, life):
		return reuseNot
	case age < life && s.Flags&flagNoCache == 0:
		return reuseFresh
	case s.Flags&flagNoStale != 0:
		return reuseNot
	case rcc.acceptsStale(age - life):
		return reuseStale
	case age-life < time.Duration(s.SWR):
		return reuseStaleWhileRevalidate
	}
	return reuseNot
}

// asksRevalidation reports whether a request with directives d asks to
// revalidate a stored response of age with freshness lifetime life
// (no-cache, max-age, min-fresh).
func (d *directives) asksRevalidation(age, life time.Duration) bool {
	return d.has[ccNoCache] || d.delta[ccMaxAge] >= 0 && age > d.delta[ccMaxAge] || d.delta[ccMinFresh] >= 0 && age+d.delta[ccMinFresh] >= life
}

// acceptsStale reports whether a request with directives d accepts a
// response that has been stale for over (max-stale).
func (d *directives) acceptsStale(over time.Duration) bool {
	return d.anyMaxStale || d.delta[ccMaxStale] >= 0 && over <= d.delta[ccMaxStale]
}

// load runs next through Fetch, when nothing is stored for key, so that
// concurrent misses of key share one run (across processes too), and
// sends the outcome.
func (c *Cache) load(w http.ResponseWriter, r *http.Request, next http.Handler, key string) {
	sink := &interimSink{w: w}
	e, err := c.cache.Fetch(r.Context(), key, func(ctx context.Context) (entry, error) {
		res := c.run(ctx, r, next, nil, sink.send)
		if res.stored == nil {
			return entry{}, res.uncached
		}
		cachemgr.EntryFrom(ctx).SetTTL(res.keep)
		if c.tags != nil {
			cachemgr.EntryFrom(ctx).AddTags(c.tags(r)...)
		}
		return entry{R: []stored{*res.stored}}, nil
	})
	sink.close()
	var s *stored
	if i := e.match(r); err == nil && i >= 0 {
		s = &e.R[i]
	}
	var u *uncached
	errors.As(err, &u)
	c.answer(w, r, next, s, Miss, u)
}

// answer sends r the outcome of a run of next: stored response s, with
// state as X-Cache, when there is one; else the response the run gave r
// itself (u, which the cache does not keep); else nothing to a request
// whose client left, or when an outer timeout answered for it; else next's
// answer outside the cache, because the response of a run r only joined is
// not for it (see uncached) or the Manager is closed.
func (c *Cache) answer(w http.ResponseWriter, r *http.Request, next http.Handler, s *stored, state string, u *uncached) {
	switch {
	case s != nil:
		c.send(w, r, s, state)
	case u != nil && u.owner == r:
		u.repanic()
		replay(w, r, &u.resp, u.trailers, Miss, "")
	case r.Context().Err() != nil:
	default:
		passThrough(w, r, next)
	}
}

// refill runs next for r when something is stored for key but cannot
// answer r as it is: a variant r does not match, or a stale response s,
// which it revalidates with a conditional request. Concurrent refills of
// one variant in this process share one run. It stores the outcome with
// Set, keeping the other variants of e, and sends it to w unless w is nil.
func (c *Cache) refill(w http.ResponseWriter, r *http.Request, next http.Handler, key string, e entry, s *stored) {
	var send func(int, http.Header)
	if w != nil {
		send = (&interimSink{w: w}).send
	}
	// Requests share a run when their response would be the same: same
	// key, variant and credentials.
	flight := key + "\x00" + r.Method + "\x00" + varyKey(r, variantNames(e, s)) + "\x00" + r.Header.Get("Authorization")
	v, _, _ := c.flight.Do(flight, func() (any, error) {
		return c.refillRun(r, next, key, e, s, send), nil
	})
	if w != nil {
		res := v.(result)
		c.answer(w, r, next, res.stored, res.state, res.uncached)
	}
}

// refillRun is the run that the requests sharing a refill share: it reads
// key again in case a run this request just missed has stored what it
// needs, else runs next and stores its outcome.
func (c *Cache) refillRun(r *http.Request, next http.Handler, key string, e entry, s *stored, send func(int, http.Header)) result {
	if n := c.recheck(r, key, s); n != nil {
		return result{stored: n, served: true, state: Hit}
	}
	res := c.run(r.Context(), r, next, s, send)
	if res.stored != nil && !res.served {
		var tags []string
		if c.tags != nil {
			tags = c.tags(r)
		}
		merged := e.with(*res.stored)
		// A failed write leaves the old entry; the next request
		// revalidates again. The write is done for the others sharing
		// the entry, so it goes on if this client leaves.
		_ = c.cache.Set(context.WithoutCancel(r.Context()), key, merged, cachemgr.TTL(res.keep), cachemgr.Tags(tags...))
	}
	return res
}

// recheck reads key again and returns a stored response that answers r
// after all: one stored after s (or, without s, a fresh one), which a run
// this request just missed joining has written. It returns nil otherwise.
func (c *Cache) recheck(r *http.Request, key string, s *stored) *stored {
	e, err := c.cache.Get(r.Context(), key)
	i := e.match(r)
	if err != nil || i < 0 || !c.mayAnswer(r, &e.R[i]) {
		return nil
	}
	n := &e.R[i]
	if s != nil {
		return newer(n, s)
	}
	if n.age(c.now()) < time.Duration(n.Life) && n.Flags&flagNoCache == 0 {
		return n
	}
	return nil
}

// newer returns n when it was stored after s, else nil.
func newer(n, s *stored) *stored {
	if n.Resp > s.Resp {
		return n
	}
	return nil
}

// result is the outcome of running the handler for a request.
type result struct {
	stored   *stored // what to store and send, when it may be stored
	keep     time.Duration
	served   bool      // stored is the old response, confirmed (304) or served stale on error
	state    string    // X-Cache for stored
	uncached *uncached // when stored is nil: the response, for the request that ran it
}

// run runs next for r under ctx, as a conditional request when s is
// stored, and decides what to store. interim, when set, receives the
// handler's informational (1xx) responses.
func (c *Cache) run(ctx context.Context, r *http.Request, next http.Handler, s *stored, interim func(int, http.Header)) result {
	req := handlerRequest(ctx, r, s)
	reqTime := c.now()
	rec := newRecorder()
	rec.interim = interim
	if p, stack := serve(next, rec, req); p != nil {
		return c.afterPanic(r, s, p, stack)
	}
	resp, trailers := rec.finish()
	respTime := c.now()
	switch {
	case ctx.Err() != nil:
		// A handler whose context ended may have cut its output short.
		return result{uncached: &uncached{owner: r, resp: resp, trailers: trailers}}
	case s != nil && resp.Status == http.StatusNotModified && isConditional(req):
		return c.revalidated(r, s, resp.Header, reqTime, respTime)
	case resp.Status >= 500 && c.staleIfError(s):
		return result{stored: s, served: true, state: Stale}
	case !c.storable(&resp, trailers):
		return result{uncached: &uncached{owner: r, resp: resp, trailers: trailers}}
	}
	return c.outcome(r, resp, trailers, reqTime, respTime, hasValidators(resp.Header), Miss)
}

// afterPanic is the outcome of a handler that panicked with p while it
// ran for r: stored s served stale when stale-if-error allows, else the
// panic with its stack for r.
func (c *Cache) afterPanic(r *http.Request, s *stored, p any, stack []byte) result {
	if c.staleIfError(s) {
		return result{stored: s, served: true, state: Stale}
	}
	return result{uncached: &uncached{owner: r, panicked: p, stack: stack}}
}

// handlerRequest returns the request next runs for r under ctx: a deep
// copy, because r belongs to a request that may end before the handler
// does. HEAD runs as GET, so the entry has a body for later GETs; the
// client's validators and Range go, so the handler sends the whole
// response, which the cache then compares with them; with s stored, it
// is a conditional request with the validators of s.
func handlerRequest(ctx context.Context, r *http.Request, s *stored) *http.Request {
	req := r.Clone(ctx)
	req.Method = http.MethodGet
	for _, h := range [...]string{"If-None-Match", "If-Modified-Since", "If-Match", "If-Unmodified-Since", "If-Range", "Range"} {
		req.Header.Del(h)
	}
	if s == nil {
		return req
	}
	if etag := headerValues(s.Header, "Etag"); len(etag) > 0 {
		req.Header["If-None-Match"] = etag
	}
	if lm := headerValues(s.Header, "Last-Modified"); len(lm) > 0 {
		req.Header["If-Modified-Since"] = lm[:1]
	}
	return req
}

// isConditional reports whether req has the validators that make a 304
// answer to it a confirmation of a stored response.
func isConditional(req *http.Request) bool {
	return req.Header["If-None-Match"] != nil || req.Header["If-Modified-Since"] != nil
}

// revalidated returns the outcome of a 304 with header h that confirms
// stored response s: s with the 304's fields merged in (RFC 9111, section
// 4.3.4).
func (c *Cache) revalidated(r *http.Request, s *stored, h http.Header, reqTime, respTime time.Time) result {
	if len(headerValues(h, "Date")) == 0 {
		// net/http adds one on the wire, where the recorder is not.
		h["Date"] = []string{respTime.UTC().Format(http.TimeFormat)}
	}
	merged := s.response
	merged.Header = mergeHeader(s.Header, h)
	// Still sent to this request when it is not stored.
	return c.outcome(r, merged, nil, reqTime, respTime, true, Revalidated)
}

// outcome returns the outcome of a response to r that the cache may
// store, by RFC 9111: what to store, for how long (validators: whether it
// can be revalidated), with state as its X-Cache; or, when it is not
// stored, the response for r alone.
func (c *Cache) outcome(r *http.Request, resp response, trailers http.Header, reqTime, respTime time.Time, validators bool, state string) result {
	p := c.decide(r, resp.Status, resp.Header, reqTime, respTime)
	ns := c.newStored(r, resp, p, reqTime, respTime)
	if !p.store || ns == nil {
		return result{uncached: &uncached{owner: r, resp: resp, trailers: trailers}}
	}
	return result{stored: ns, keep: c.keep(p, validators), state: state}
}

// staleIfError reports whether s, when there is one, may be sent stale
// because its revalidation failed.
func (c *Cache) staleIfError(s *stored) bool {
	return s != nil && s.Flags&flagNoStale == 0 && s.age(c.now()) < time.Duration(s.Life+s.SIE)
}

// newStored builds what is stored of resp, a response to r, or returns
// nil when its Vary forbids reuse.
func (c *Cache) newStored(r *http.Request, resp response, p policy, reqTime, respTime time.Time) *stored {
	names, ok := varyNames(headerValues(resp.Header, "Vary"))
	if !ok {
		return nil
	}
	resp.Header = storedHeader(resp.Header, respTime)
	return &stored{
		response: resp,
		Req:      reqTime.UnixNano(),
		Resp:     respTime.UnixNano(),
		InitAge:  int64(p.initAge),
		Life:     int64(p.lifetime),
		SWR:      int64(p.swr),
		SIE:      int64(p.sie),
		Flags:    p.flags,
		Vary:     names,
		VaryKey:  varyKey(r, names),
	}
}

// with returns e with s added: s replaces the response of its variant,
// and the responses whose Vary names other headers are dropped.
func (e entry) with(s stored) entry {
	out := entry{R: make([]stored, 1, min(len(e.R)+1, maxVariants))}
	out.R[0] = s
	for _, o := range e.R {
		if len(out.R) == maxVariants {
			break
		}
		if len(s.Vary) > 0 && equalNames(o.Vary, s.Vary) && o.VaryKey != s.VaryKey {
			out.R = append(out.R, o)
		}
	}
	return out
}

// interimSink passes a handler's informational responses to the client
// of the request it runs for, until that request is done.
type interimSink struct {
	mu   sync.Mutex
	w    http.ResponseWriter
	done bool
}

// send writes an informational response with header h.
func (s *interimSink) send(code int, h http.Header) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done {
		return
	}
	dst := s.w.Header()
	var added []string
	for k, v := range h {
		if _, ok := dst[k]; !ok {
			dst[k] = v
			added = append(added, k)
		}
	}
	s.w.WriteHeader(code)
	// The final response has headers of its own.
	for _, k := range added {
		delete(dst, k)
	}
}

// close stops send, before the request's final response is written.
func (s *interimSink) close() {
	s.mu.Lock()
	s.done = true
	s.mu.Unlock()
}

// passThrough serves r with next, outside the cache.
func passThrough(w http.ResponseWriter, r *http.Request, next http.Handler) {
	w.Header().Set(StatusHeader, Miss)
	next.ServeHTTP(w, r)
}

// gatewayTimeout answers a request with only-if-cached that the cache
// cannot answer (RFC 9111, section 5.2.1.7).
func gatewayTimeout(w http.ResponseWriter) {
	w.Header().Set(StatusHeader, Miss)
	http.Error(w, "not cached", http.StatusGatewayTimeout)
}

// pragmaNoCache reports whether Pragma values hold no-cache.
func pragmaNoCache(values []string) bool {
	for _, v := range values {
		if parseCacheControl([]string{v}).has[ccNoCache] {
			return true
		}
	}
	return false
}
