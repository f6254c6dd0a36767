package session

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/cachemgr/cachemgr"
	"github.com/cachemgr/cachemgr/codec"
	"github.com/cachemgr/cachemgr/internal/keys"
	"github.com/redis/go-redis/v9"
)

// Store keeps sessions in Redis, one hash per session with a field per
// value. Create it with New; it is safe for concurrent use. A Store holds no
// goroutines and nothing to close: the Redis client belongs to the Manager's
// owner.
type Store struct {
	client   redis.UniversalClient
	codec    codec.Codec
	codecs   [256]codec.Codec
	base     string // "prefix:name:"
	idle     time.Duration
	lifetime time.Duration
	cookie   http.Cookie // template: name, path, domain and flags
	logger   *slog.Logger
	random   func([]byte) // fills with random bytes; crypto/rand
	now      func() time.Time
	refresh  *refresher
	// skew is what Redis's clock was last found ahead of this process's,
	// in ms, for the deadlines of new sessions.
	skew atomic.Int64
}

type config struct {
	name     string
	codec    codec.Codec
	idle     time.Duration
	lifetime time.Duration
	every    time.Duration // -1: not set, a tenth of idle
	cookie   http.Cookie
	logger   *slog.Logger
}

// Option configures New.
type Option func(*config) error

// WithName sets the name that the Redis keys of sessions start with, after
// the Manager's prefix: "prefix:name:{...}...". It may not be empty, nor
// contain braces or colons. Default: "session".
func WithName(name string) Option {
	return func(c *config) error {
		if err := keys.ValidateName(name); err != nil {
			return fmt.Errorf("%w: %w", cachemgr.ErrInvalidOption, err)
		}
		c.name = name
		return nil
	}
}

// WithIdleTimeout sets how long a session lives without being used: Redis
// deletes it when its TTL, which uses of the session restart, runs out.
// WithRefreshInterval says which uses restart it. Default: 30m.
func WithIdleTimeout(d time.Duration) Option {
	return func(c *config) error {
		if d < time.Millisecond {
			return fmt.Errorf("%w: idle timeout %v", cachemgr.ErrInvalidOption, d)
		}
		c.idle = d
		return nil
	}
}

// WithRefreshInterval sets how often a process restarts the idle timeout of
// a session it uses: a read or write of the session sends the refresh
// (PEXPIRE, in the same round trip as the read or write) only if this
// process has not sent one for that session in the current window of d of
// its monotonic clock. So a session ends, by Redis's TTL alone, between
// idle - d and idle after its last use; it never ends earlier than
// idle - d after any use, and a session used at least that often never
// idles out. The refresh is skipped only by this process's choice: Redis
// still deletes a session that no refresh reaches, whatever the clocks of
// the processes say.
//
// 0 sends the refresh with every read and write, so that a session ends
// exactly idle after its last use, at the cost of a second command in
// each round trip. d must be less than the idle timeout. Default: a tenth
// of the idle timeout (27 to 30 minutes for the default 30).
func WithRefreshInterval(d time.Duration) Option {
	return func(c *config) error {
		if d < 0 {
			return fmt.Errorf("%w: refresh interval %v", cachemgr.ErrInvalidOption, d)
		}
		c.every = d
		return nil
	}
}

// WithLifetime sets how long a session lives at most from its creation,
// however often it is used. Renew keeps the deadline. Default: 24h.
func WithLifetime(d time.Duration) Option {
	return func(c *config) error {
		if d < time.Millisecond {
			return fmt.Errorf("%w: lifetime %v", cachemgr.ErrInvalidOption, d)
		}
		c.lifetime = d
		return nil
	}
}

// WithCodec sets the codec that encodes field values. Each stored value
// records its codec, so fields written with any built-in codec, or with
// this one, still decode after the default changes. Default: the
// Manager's codec.
func WithCodec(cd codec.Codec) Option {
	return func(c *config) error {
		if cd == nil || cd.ID() == 0 {
			return fmt.Errorf("%w: nil codec or codec ID 0", cachemgr.ErrInvalidOption)
		}
		c.codec = cd
		return nil
	}
}

// WithCookieName sets the name of the cookie that carries the session ID.
// Default: "session".
func WithCookieName(name string) Option {
	return func(c *config) error {
		probe := http.Cookie{Name: name, Value: "x"}
		if err := probe.Valid(); err != nil {
			return fmt.Errorf("%w: cookie name %q: %w", cachemgr.ErrInvalidOption, name, err)
		}
		c.cookie.Name = name
		return nil
	}
}

// WithCookiePath sets the cookie's Path attribute. Default: "/".
func WithCookiePath(path string) Option {
	return func(c *config) error {
		probe := http.Cookie{Name: "x", Value: "x", Path: path}
		if err := probe.Valid(); err != nil {
			return fmt.Errorf("%w: cookie path %q: %w", cachemgr.ErrInvalidOption, path, err)
		}
		c.cookie.Path = path
		return nil
	}
}

// WithCookieDomain sets the cookie's Domain attribute; "" sends none, so
// the cookie goes back to the host that set it only. Default: "".
func WithCookieDomain(domain string) Option {
	return func(c *config) error {
		probe := http.Cookie{Name: "x", Value: "x", Domain: domain}
		if err := probe.Valid(); err != nil {
			return fmt.Errorf("%w: cookie domain %q: %w", cachemgr.ErrInvalidOption, domain, err)
		}
		c.cookie.Domain = domain
		return nil
	}
}

// WithSecure sets the cookie's Secure attribute, which keeps browsers from
// sending it over plain HTTP. Turn it off only for local development over
// http://. Default: true.
func WithSecure(on bool) Option {
	return func(c *config) error {
		c.cookie.Secure = on
		return nil
	}
}

// WithHTTPOnly sets the cookie's HttpOnly attribute, which hides it from
// scripts in the page. Default: true.
func WithHTTPOnly(on bool) Option {
	return func(c *config) error {
		c.cookie.HttpOnly = on
		return nil
	}
}

// WithSameSite sets the cookie's SameSite attribute. SameSite=None needs
// Secure as well, which New checks. Default: http.SameSiteLaxMode.
func WithSameSite(mode http.SameSite) Option {
	return func(c *config) error {
		switch mode {
		case http.SameSiteDefaultMode, http.SameSiteLaxMode, http.SameSiteStrictMode, http.SameSiteNoneMode:
		default:
			return fmt.Errorf("%w: SameSite %d", cachemgr.ErrInvalidOption, mode)
		}
		c.cookie.SameSite = mode
		return nil
	}
}

// WithLogger sets where the middleware reports errors it cannot return to
// a handler: a Save that failed after the handler had returned or begun its
// response. Default: slog.Default().
func WithLogger(l *slog.Logger) Option {
	return func(c *config) error {
		if l == nil {
			return fmt.Errorf("%w: nil logger", cachemgr.ErrInvalidOption)
		}
		c.logger = l
		return nil
	}
}

// newConfig returns the defaults for m with opts applied.
func newConfig(m *cachemgr.Manager, opts []Option) (config, error) {
	cfg := config{
		name:     "session",
		codec:    m.Codec(),
		idle:     30 * time.Minute,
		lifetime: 24 * time.Hour,
		every:    -1,
		cookie: http.Cookie{
			Name:     "session",
			Path:     "/",
			Secure:   true,
			HttpOnly: true,
			SameSite: http.SameSiteLaxMode,
		},
		logger: slog.Default(),
	}
	for _, opt := range opts {
		if opt == nil {
			return config{}, fmt.Errorf("%w: nil option", cachemgr.ErrInvalidOption)
		}
		if err := opt(&cfg); err != nil {
			return config{}, err
		}
	}
	if err := cfg.settle(); err != nil {
		return config{}, err
	}
	return cfg, nil
}

// settle checks the options that depend on each other and gives the
// refresh interval its default, a tenth of the idle timeout.
func (c *config) settle() error {
	if c.cookie.SameSite == http.SameSiteNoneMode && !c.cookie.Secure {
		return fmt.Errorf("%w: SameSite=None needs Secure", cachemgr.ErrInvalidOption)
	}
	if c.every < 0 {
		c.every = c.idle / 10
	}
	if c.every >= c.idle {
		return fmt.Errorf("%w: refresh interval %v not less than the idle timeout %v", cachemgr.ErrInvalidOption, c.every, c.idle)
	}
	return nil
}

// New returns a Store that keeps sessions with m's Redis client, key
// prefix and, unless WithCodec says otherwise, codec. It makes no Redis
// call.
func New(m *cachemgr.Manager, opts ...Option) (*Store, error) {
	if m == nil {
		return nil, fmt.Errorf("%w: nil manager", cachemgr.ErrInvalidOption)
	}
	cfg, err := newConfig(m, opts)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	st := &Store{
		client:   m.Client(),
		codec:    cfg.codec,
		base:     keys.New(m.Prefix(), cfg.name, 0).Base(),
		idle:     cfg.idle,
		lifetime: cfg.lifetime,
		cookie:   cfg.cookie,
		logger:   cfg.logger,
		random:   func(b []byte) { rand.Read(b) }, // never fails (Go 1.24+)
		now:      time.Now,
		refresh:  newRefresher(cfg.every, func() time.Duration { return time.Since(start) }),
	}
	for _, cd := range []codec.Codec{codec.Msgpack(), codec.JSON(), codec.Raw(), cfg.codec} {
		st.codecs[cd.ID()] = cd
	}
	return st, nil
}

// Open returns the session whose ID is id, for one unit of work such as a
// request, without calling Redis. An id that is empty or malformed gives a
// new, empty session; so does an id that Redis turns out not to know, from
// the first call that reaches Redis on. Open is for code outside HTTP; in
// handlers, use Middleware and From.
func (st *Store) Open(id string) *Session {
	s := &Session{st: st}
	if p, ok := parseID(id); ok {
		s.setID(p)
	}
	return s
}

// encode returns the stored form of v: the codec's ID, then its encoding.
func (st *Store) encode(v any) ([]byte, error) {
	size := 63 // most values are small: one allocation
	switch v := v.(type) {
	case []byte:
		size = len(v)
	case string:
		size = len(v)
	}
	b, err := st.codec.Append(append(make([]byte, 0, 1+size), st.codec.ID()), v)
	if err != nil {
		return nil, err
	}
	return b, nil
}

// errUnknownCodec is wrapped in ErrDecode for a stored value whose codec
// byte names no codec of the Store.
var errUnknownCodec = errors.New("unknown codec")

// decode decodes a stored value into v, a non-nil pointer.
func (st *Store) decode(b []byte, v any) error {
	if len(b) == 0 {
		return fmt.Errorf("empty value: %w", codec.ErrMalformed)
	}
	cd := st.codecs[b[0]]
	if cd == nil {
		return fmt.Errorf("%w %d", errUnknownCodec, b[0])
	}
	return cd.Unmarshal(b[1:], v)
}

// redisErr turns a failed Redis call into the error the caller sees: the
// caller's own cancellation as it is, anything else wrapped in
// cachemgr.ErrUnavailable.
func redisErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	return fmt.Errorf("%w: %w", cachemgr.ErrUnavailable, err)
}
