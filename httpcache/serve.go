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
	rcc := parseCacheControl(r.Header["Cache-Control"])
	if !ok || rcc.noStore {
		passThrough(w, r, next)
		return
	}
	if len(r.Header["Cache-Control"]) == 0 && pragmaNoCache(r.Header["Pragma"]) {
		rcc.noCache = true
	}
	if !c.clientRevalidation {
		rcc.noCache, rcc.maxAge, rcc.minFresh = false, -1, -1
	}
	ctx := r.Context()
	e, err := c.cache.Get(ctx, key)
	if err != nil && ctx.Err() != nil {
		return // the client left
	}
	// Any other error is a miss: Fetch below answers from the handler
	// when Redis is down.
	auth := r.Header.Get("Authorization") != ""
	i := e.match(r)
	if i < 0 {
		switch {
		case rcc.onlyIfCached:
			gatewayTimeout(w)
		case auth && !c.private:
			// Not Fetch, which would share the load with requests without
			// these credentials.
			c.refill(w, r, next, key, e, nil)
		case len(e.R) == 0:
			c.load(w, r, next, key)
		default:
			c.refill(w, r, next, key, e, nil)
		}
		return
	}
	s := &e.R[i]
	if auth && !c.private && s.Flags&flagAuthOK == 0 {
		c.refill(w, r, next, key, e, nil)
		return
	}
	now := c.now()
	age := s.age(now)
	life := time.Duration(s.Life)
	fresh := age < life && s.Flags&flagNoCache == 0
	clientValidates := rcc.noCache || rcc.maxAge >= 0 && age > rcc.maxAge ||
		rcc.minFresh >= 0 && age+rcc.minFresh >= life
	if fresh && !clientValidates {
		c.send(w, r, s, Hit)
		return
	}
	if !clientValidates && s.Flags&flagNoStale == 0 {
		over := age - life
		if rcc.anyMaxStale || rcc.maxStale >= 0 && over <= rcc.maxStale {
			c.send(w, r, s, Stale)
			return
		}
		if over < time.Duration(s.SWR) {
			c.send(w, r, s, Stale)
			// The client has its response once it is flushed; the
			// revalidation then runs on this goroutine, not one of its
			// own, so nothing outlives the request.
			_ = http.NewResponseController(w).Flush()
			bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), backgroundTimeout)
			defer cancel()
			c.refill(nil, r.WithContext(bctx), next, key, e, s)
			return
		}
	}
	if rcc.onlyIfCached {
		gatewayTimeout(w)
		return
	}
	c.refill(w, r, next, key, e, s)
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
	var u *uncached
	switch {
	case err == nil && e.match(r) >= 0:
		c.send(w, r, &e.R[e.match(r)], Miss)
	case errors.As(err, &u) && u.owner == r:
		u.repanic()
		replay(w, r, &u.resp, u.trailers, Miss, "")
	case r.Context().Err() != nil:
		// The client left, or an outer timeout answered for us.
	default:
		// The response of a load this request only joined is not for it
		// (see uncached), or the Manager is closed.
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
		if n := c.recheck(r, key, s); n != nil {
			return result{stored: n, served: true, state: Hit}, nil
		}
		res := c.run(r.Context(), r, next, s, send)
		res.owner = r
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
		return res, nil
	})
	if w == nil {
		return
	}
	res := v.(result)
	switch {
	case res.stored != nil && res.served:
		c.send(w, r, res.stored, res.state)
	case res.stored != nil:
		c.send(w, r, res.stored, res.state)
	case res.owner == r:
		res.uncached.repanic()
		replay(w, r, &res.uncached.resp, res.uncached.trailers, Miss, "")
	case r.Context().Err() != nil:
	default:
		passThrough(w, r, next)
	}
}

// recheck reads key again and returns a stored response that answers r
// after all: one stored after s (or, without s, a fresh one), which a run
// this request just missed joining has written. It returns nil otherwise.
func (c *Cache) recheck(r *http.Request, key string, s *stored) *stored {
	e, err := c.cache.Get(r.Context(), key)
	i := e.match(r)
	if err != nil || i < 0 {
		return nil
	}
	n := &e.R[i]
	if r.Header.Get("Authorization") != "" && !c.private && n.Flags&flagAuthOK == 0 {
		return nil
	}
	if s != nil {
		if n.Resp > s.Resp {
			return n
		}
		return nil
	}
	if n.age(c.now()) < time.Duration(n.Life) && n.Flags&flagNoCache == 0 {
		return n
	}
	return nil
}

// result is the outcome of running the handler for a request.
type result struct {
	stored   *stored // what to store and send, when it may be stored
	keep     time.Duration
	served   bool   // stored is the old response, confirmed (304) or served stale on error
	state    string // X-Cache for stored
	uncached *uncached
	owner    *http.Request
}

// run runs next for r under ctx, as a conditional request when s is
// stored, and decides what to store. interim, when set, receives the
// handler's informational (1xx) responses.
func (c *Cache) run(ctx context.Context, r *http.Request, next http.Handler, s *stored, interim func(int, http.Header)) result {
	// A deep copy, because r belongs to a request that may end before the
	// handler does. HEAD runs as GET, so the entry has a body for later
	// GETs; the client's validators and Range go, so the handler sends
	// the whole response, which the cache then compares with them.
	req := r.Clone(ctx)
	req.Method = http.MethodGet
	for _, h := range [...]string{"If-None-Match", "If-Modified-Since", "If-Match", "If-Unmodified-Since", "If-Range", "Range"} {
		req.Header.Del(h)
	}
	if s != nil {
		if etag := headerValues(s.Header, "Etag"); len(etag) > 0 {
			req.Header["If-None-Match"] = etag
		}
		if lm := headerValues(s.Header, "Last-Modified"); len(lm) > 0 {
			req.Header["If-Modified-Since"] = lm[:1]
		}
	}
	reqTime := c.now()
	rec := newRecorder()
	rec.interim = interim
	if p, stack := serve(next, rec, req); p != nil {
		if s != nil && c.staleIfError(s) {
			return result{stored: s, served: true, state: Stale}
		}
		return result{uncached: &uncached{owner: r, panicked: p, stack: stack}}
	}
	resp, trailers := rec.finish()
	respTime := c.now()
	if ctx.Err() != nil {
		// A handler whose context ended may have cut its output short.
		return result{uncached: &uncached{owner: r, resp: resp, trailers: trailers}}
	}
	if s != nil && resp.Status == http.StatusNotModified && (req.Header["If-None-Match"] != nil || req.Header["If-Modified-Since"] != nil) {
		if len(headerValues(resp.Header, "Date")) == 0 {
			// net/http adds one on the wire, where the recorder is not.
			resp.Header["Date"] = []string{respTime.UTC().Format(http.TimeFormat)}
		}
		merged := s.response
		merged.Header = mergeHeader(s.Header, resp.Header)
		p := c.decide(r, merged.Status, merged.Header, reqTime, respTime)
		ns := c.newStored(r, merged, p, reqTime, respTime)
		if !p.store || ns == nil {
			// Still send the confirmed response to this request.
			return result{uncached: &uncached{owner: r, resp: merged}}
		}
		return result{stored: ns, keep: c.keep(p, true), state: Revalidated}
	}
	if s != nil && resp.Status >= 500 && c.staleIfError(s) {
		return result{stored: s, served: true, state: Stale}
	}
	if !c.storable(&resp, trailers) {
		return result{uncached: &uncached{owner: r, resp: resp, trailers: trailers}}
	}
	p := c.decide(r, resp.Status, resp.Header, reqTime, respTime)
	ns := c.newStored(r, resp, p, reqTime, respTime)
	if !p.store || ns == nil {
		return result{uncached: &uncached{owner: r, resp: resp, trailers: trailers}}
	}
	return result{stored: ns, keep: c.keep(p, hasValidators(resp.Header)), state: Miss}
}

// staleIfError reports whether s may be sent stale because its
// revalidation failed.
func (c *Cache) staleIfError(s *stored) bool {
	return s.Flags&flagNoStale == 0 && s.age(c.now()) < time.Duration(s.Life+s.SIE)
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
		if parseCacheControl([]string{v}).noCache {
			return true
		}
	}
	return false
}
