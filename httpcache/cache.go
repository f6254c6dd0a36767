package httpcache

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/cachemgr/cachemgr"
)

// StatusHeader is the response header that says where a response came from:
// Hit, Miss or Stale.
const StatusHeader = "X-Cache"

// Values of StatusHeader.
const (
	// Hit marks a response served from Redis.
	Hit = "HIT"
	// Miss marks a response the handler produced for this request or for
	// a concurrent request of the same key.
	Miss = "MISS"
	// Stale marks a stale response served while a fresh one is loaded.
	// It is reserved for stale-while-revalidate; nothing sets it yet.
	Stale = "STALE"
)

// Cache caches the responses of the handlers wrapped by its Middleware.
// Create it with New; it is safe for concurrent use, and one Cache may wrap
// several handlers as long as their URLs do not overlap. The functions
// given to its options are called concurrently.
type Cache struct {
	cache     *cachemgr.Cache[response]
	condition func(status int, header http.Header) bool
	vary      func(*http.Request) string
	tags      func(*http.Request) []string
	maxBody   int
}

type config struct {
	cacheOpts []cachemgr.CacheOption
	condition func(int, http.Header) bool
	vary      func(*http.Request) string
	tags      func(*http.Request) []string
	maxBody   int
}

// Option configures New.
type Option func(*config) error

// WithTTL sets how long a response stays cached. It must be positive and
// at most cachemgr.MaxTTL. A handler can override it for one response with
// cachemgr.EntryFrom(r.Context()).SetTTL. Default: 1m.
func WithTTL(d time.Duration) Option {
	return func(c *config) error {
		// NewCache validates d; the last WithTTL wins there too.
		c.cacheOpts = append(c.cacheOpts, cachemgr.WithTTL(d))
		return nil
	}
}

// WithCondition sets which responses are stored, by status and header (as
// the handler set it when it wrote the status). It can only narrow what is
// stored: responses that are private, no-store, no-cache, set a cookie,
// have trailers, are 206 or 304, or are over the size limit are never
// stored. A condition that accepts responses with a Vary header must come
// with a WithVary function covering the request headers it names.
// Default: status 200 without a Vary header.
func WithCondition(fn func(status int, header http.Header) bool) Option {
	return func(c *config) error {
		if fn == nil {
			return fmt.Errorf("%w: nil condition", cachemgr.ErrInvalidOption)
		}
		c.condition = fn
		return nil
	}
}

// WithVary adds fn(r) to the key, so that requests for one URL with
// different values get different responses: the user ID for pages that
// show the user, the language for translated pages. fn runs on every GET
// and HEAD, before the lookup, and must be fast. Without it, every client
// gets the response rendered for the first. Default: none.
func WithVary(fn func(r *http.Request) string) Option {
	return func(c *config) error {
		if fn == nil {
			return fmt.Errorf("%w: nil vary function", cachemgr.ErrInvalidOption)
		}
		c.vary = fn
		return nil
	}
}

// WithMaxBodySize sets the largest body that is stored, in bytes. Larger
// responses are sent but not stored (they are still held in memory while
// the handler runs). Entries are also bounded by the Manager's
// cachemgr.WithMaxValueSize. Default: 1 MiB.
func WithMaxBodySize(n int) Option {
	return func(c *config) error {
		if n <= 0 {
			return fmt.Errorf("%w: max body size %d", cachemgr.ErrInvalidOption, n)
		}
		c.maxBody = n
		return nil
	}
}

// WithTags tags each stored response with fn(r), so that
// Manager.InvalidateTags on the Manager given to New invalidates it, in
// every process sharing the Redis. fn runs only when a response is stored,
// with the request that ran the handler. Invalid tags (empty, over 1024
// bytes, more than 32) keep the response out of the cache; the Manager logs
// them. Default: none.
func WithTags(fn func(r *http.Request) []string) Option {
	return func(c *config) error {
		if fn == nil {
			return fmt.Errorf("%w: nil tags function", cachemgr.ErrInvalidOption)
		}
		c.tags = fn
		return nil
	}
}

// New returns a Cache that stores responses in the cache called name on m
// (see cachemgr.NewCache for what the name allows), encoded by m's codec,
// which must encode structs (codec.Raw cannot). The Cache needs no closing;
// it stops working when m is closed, and then passes every request to the
// handler.
func New(m *cachemgr.Manager, name string, opts ...Option) (*Cache, error) {
	cfg := config{
		condition: defaultCondition,
		maxBody:   1 << 20,
	}
	for _, opt := range opts {
		if opt == nil {
			return nil, fmt.Errorf("%w: nil option", cachemgr.ErrInvalidOption)
		}
		if err := opt(&cfg); err != nil {
			return nil, err
		}
	}
	cache, err := cachemgr.NewCache[response](m, name, cfg.cacheOpts...)
	if err != nil {
		return nil, err
	}
	return &Cache{
		cache:     cache,
		condition: cfg.condition,
		vary:      cfg.vary,
		tags:      cfg.tags,
		maxBody:   cfg.maxBody,
	}, nil
}

// defaultCondition stores 200 responses that do not vary by request
// headers the key does not know about.
func defaultCondition(status int, h http.Header) bool {
	return status == http.StatusOK && len(headerValues(h, "Vary")) == 0
}

// Middleware returns a handler that answers GET and HEAD requests from the
// cache, running next on a miss and storing what it returns, and passes
// every other request to next. See the package documentation for what is
// stored and how concurrent misses share one run of next.
func (c *Cache) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			next.ServeHTTP(w, r)
			return
		}
		key, ok := c.key(r)
		noStore, noCache, _ := cacheControl(r.Header["Cache-Control"])
		if !ok || noStore {
			passThrough(w, r, next)
			return
		}
		ctx := r.Context()
		if noCache {
			// Deleting the entry rotates its invalidation marker, so a load
			// that began earlier cannot write back an older page; the Fetch
			// below then runs the handler. If Redis is down, Fetch fails
			// open as usual.
			_ = c.cache.Delete(ctx, key)
		} else {
			resp, err := c.cache.Get(ctx, key)
			if err == nil {
				replay(w, r, &resp, nil, Hit)
				return
			}
			if ctx.Err() != nil {
				return // the client left
			}
		}
		c.load(w, r, next, key)
	})
}

// load runs next through Fetch, so concurrent misses of key share one run,
// and sends the outcome.
func (c *Cache) load(w http.ResponseWriter, r *http.Request, next http.Handler, key string) {
	resp, err := c.cache.Fetch(r.Context(), key, func(ctx context.Context) (response, error) {
		return c.run(ctx, r, next)
	})
	var u *uncached
	switch {
	case err == nil:
		replay(w, r, &resp, nil, Miss)
	case errors.As(err, &u) && u.owner == r:
		u.repanic()
		replay(w, r, &u.resp, u.trailers, Miss)
	case r.Context().Err() != nil:
		// The client left, or an outer timeout answered for us.
	default:
		// The response of a load this request only joined is not for it
		// (see uncached), or the Manager is closed.
		passThrough(w, r, next)
	}
}

// run is the loader: it runs next on a copy of r under the load's context
// and returns the response, or an *uncached error when it must not be
// stored.
func (c *Cache) run(ctx context.Context, r *http.Request, next http.Handler) (response, error) {
	// A deep copy, because r belongs to a request that may end before the
	// handler does. HEAD runs as GET, so the entry has a body for later GETs.
	req := r.Clone(ctx)
	req.Method = http.MethodGet
	rec := newRecorder()
	if p, stack := serve(next, rec, req); p != nil {
		return response{}, &uncached{owner: r, panicked: p, stack: stack}
	}
	resp, trailers := rec.finish()
	if ctx.Err() != nil || !c.storable(&resp, trailers) {
		// A handler whose context ended may have cut its output short.
		return response{}, &uncached{owner: r, resp: resp, trailers: trailers}
	}
	if c.tags != nil {
		cachemgr.EntryFrom(ctx).AddTags(c.tags(req)...)
	}
	return resp, nil
}

// passThrough serves r with next, outside the cache.
func passThrough(w http.ResponseWriter, r *http.Request, next http.Handler) {
	w.Header().Set(StatusHeader, Miss)
	next.ServeHTTP(w, r)
}

// key returns the cache key of r: "GET <escaped path>?<sorted query>
// <host> <vary>". No part before the vary value can contain a space, so
// distinct requests never share a key, and the path comes first so that
// InvalidatePath can match a prefix. It reports false for a query that does
// not parse, which is then not cached: the handler might read the raw query
// differently from any canonical form.
func (c *Cache) key(r *http.Request) (string, bool) {
	q := r.URL.RawQuery
	if q != "" {
		vals, err := url.ParseQuery(q)
		if err != nil {
			return "", false
		}
		// Encode sorts by name and keeps the order of one name's values,
		// which a handler may rely on.
		q = vals.Encode()
	}
	path := r.URL.EscapedPath()
	if path == "" {
		path = "/"
	}
	var vary string
	if c.vary != nil {
		vary = c.vary(r)
	}
	return "GET " + path + "?" + q + " " + strings.ToLower(r.Host) + " " + vary, true
}

// InvalidatePath deletes every cached response whose escaped URL path starts
// with pathPrefix, for all queries, hosts and vary values, and returns how
// many it deleted. The match is on the plain string: "/products" also
// matches "/products-old", "/products/" does not match "/products", and
// "/products?" matches that one path with any query. It scans the whole
// keyspace (see cachemgr.Cache.InvalidatePrefix), so prefer WithTags for
// frequent invalidation. Responses whose key (path, query, host and vary
// value) is longer than the Manager's cachemgr.WithMaxKeyLen are stored
// hashed and found only when pathPrefix is at most 28 bytes.
func (c *Cache) InvalidatePath(ctx context.Context, pathPrefix string) (int, error) {
	return c.cache.InvalidatePrefix(ctx, "GET "+pathPrefix)
}
