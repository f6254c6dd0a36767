package httpcache

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/cachemgr/cachemgr"
	"golang.org/x/sync/singleflight"
)

// StatusHeader is the response header that says where a response came from:
// Hit, Miss, Stale or Revalidated.
const StatusHeader = "X-Cache"

// Values of StatusHeader.
const (
	// Hit marks a response served from Redis.
	Hit = "HIT"
	// Miss marks a response the handler produced for this request or for
	// a concurrent request of the same key.
	Miss = "MISS"
	// Stale marks a stored response served past its freshness: within
	// its stale-while-revalidate window (a revalidation follows), within
	// its stale-if-error window when the handler failed, or to a request
	// that accepts stale responses (max-stale).
	Stale = "STALE"
	// Revalidated marks a stored response that the handler confirmed with
	// a 304 Not Modified to a conditional request the cache made.
	Revalidated = "REVALIDATED"
)

// Cache caches the responses of the handlers wrapped by its Middleware.
// Create it with New; it is safe for concurrent use, and one Cache may wrap
// several handlers as long as their URLs do not overlap. The functions
// given to its options are called concurrently.
type Cache struct {
	cache     *cachemgr.Cache[entry]
	condition func(status int, header http.Header) bool
	vary      func(*http.Request) string
	tags      func(*http.Request) []string
	maxBody   int
	ttl       time.Duration
	private   bool
	query     queryFilter
	now       func() time.Time

	clientRevalidation bool
	flight             singleflight.Group
}

type config struct {
	ttl       time.Duration
	condition func(int, http.Header) bool
	vary      func(*http.Request) string
	tags      func(*http.Request) []string
	maxBody   int
	private   bool
	query     queryFilter
	l1Entries int
	l1Bytes   int64

	clientRevalidation bool
}

// Option configures New.
type Option func(*config) error

// WithL1 keeps up to entries responses, and about maxBytes bytes of them
// as stored, in the Manager's in-process L1 tier, in front of Redis (see
// cachemgr.WithCacheL1); a response larger than 1/16 of maxBytes is not
// kept there. Each hit decodes a private copy of the stored response. The
// Manager's own WithL1 does not apply to responses: without this option
// they are not kept in L1. Default: WithL1(0, 0), off.
func WithL1(entries int, maxBytes int64) Option {
	return func(c *config) error {
		if entries < 0 || maxBytes < 0 {
			return fmt.Errorf("%w: L1 bounds %d entries, %d bytes", cachemgr.ErrInvalidOption, entries, maxBytes)
		}
		c.l1Entries, c.l1Bytes = entries, maxBytes
		return nil
	}
}

// WithTTL sets the longest a response stays fresh, whatever its
// Cache-Control or Expires say, and the freshness of responses marked
// Cache-Control: public that give no lifetime of their own. Responses with
// validators (ETag, Last-Modified) are kept for up to d more once stale, to
// be revalidated rather than fetched again. It must be positive and at most
// cachemgr.MaxTTL. Default: 1m.
func WithTTL(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 || d > cachemgr.MaxTTL {
			return fmt.Errorf("%w: %w: %v", cachemgr.ErrInvalidOption, cachemgr.ErrInvalidTTL, d)
		}
		c.ttl = d
		return nil
	}
}

// WithPrivate makes the Cache a private cache, one whose entries are
// never shared between users because the vary function (WithVary)
// separates them: it stores responses marked Cache-Control: private and
// responses to requests with Authorization, and ignores s-maxage and
// proxy-revalidate, which speak to shared caches only. Default: false (a
// shared cache).
func WithPrivate(on bool) Option {
	return func(c *config) error {
		c.private = on
		return nil
	}
}

// WithClientRevalidation sets whether a request's Cache-Control: no-cache,
// max-age and min-fresh (and Pragma: no-cache) make the cache revalidate a
// fresh stored response with the handler, as RFC 9111 asks. Revalidation
// never deletes the stored response, and a handler that answers
// conditional requests (ETag, Last-Modified) confirms it with a cheap 304;
// still, any client can make the handler run. Turn it off in front of an
// endpoint that clients must not be able to load that way: those
// directives are then ignored, and fresh responses are served as they are.
// no-store, only-if-cached and max-stale are always honoured.
// Default: true.
func WithClientRevalidation(on bool) Option {
	return func(c *config) error {
		c.clientRevalidation = on
		return nil
	}
}

// WithCondition sets which responses are stored, by status and header (as
// the handler set it when it wrote the status). It can only narrow what is
// stored: the rules of RFC 9111 (see the package documentation) still
// apply, and responses that set a cookie, have trailers, are 206 or 304,
// or are over the size limit are never stored. Default: every response
// those rules allow.
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
		ttl:       time.Minute,
		condition: func(int, http.Header) bool { return true },
		maxBody:   1 << 20,

		clientRevalidation: true,
	}
	for _, opt := range opts {
		if opt == nil {
			return nil, fmt.Errorf("%w: nil option", cachemgr.ErrInvalidOption)
		}
		if err := opt(&cfg); err != nil {
			return nil, err
		}
	}
	// Freshness is decided here, per response; cachemgr's TTL is only how
	// long Redis keeps an entry, set for each write.
	cache, err := cachemgr.NewCache[entry](m, name, cachemgr.WithTTL(cfg.ttl), cachemgr.WithJitter(0),
		cachemgr.WithCacheL1(cfg.l1Entries, cfg.l1Bytes), cachemgr.WithL1Isolation(cachemgr.L1Copy))
	if err != nil {
		return nil, err
	}
	return &Cache{
		cache:     cache,
		condition: cfg.condition,
		vary:      cfg.vary,
		tags:      cfg.tags,
		maxBody:   cfg.maxBody,
		ttl:       cfg.ttl,
		private:   cfg.private,
		query:     cfg.query,
		now:       time.Now,

		clientRevalidation: cfg.clientRevalidation,
	}, nil
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
		c.query.apply(vals)
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
