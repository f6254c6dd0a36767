package cachemgr

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cachemgr/cachemgr/codec"
	"github.com/cachemgr/cachemgr/compress"
	"github.com/cachemgr/cachemgr/internal/breaker"
	"github.com/cachemgr/cachemgr/internal/keys"
	"github.com/cachemgr/cachemgr/internal/transport"
	"github.com/redis/go-redis/v9"
)

// Manager owns what the caches of one process share: the Redis client and
// the transport over it, the codecs and compressors, the key prefix, the
// statistics, the invalidations still to retry, the events and the
// goroutines of loads in flight. Create one per process with New and Close
// it on shutdown. A Manager is safe for concurrent use.
type Manager struct {
	settings // fixed at New
	codecSet // how values are encoded and decoded

	client redis.UniversalClient
	// tr sends every command: admission, deadlines, coalescing, the
	// breaker, scripts, scans and buffers (internal/transport).
	tr      *transport.Transport
	replica *replicaReads // nil: every read goes to the master

	// pending holds the invalidations that did not reach Redis; longest is
	// the longest lifetime, in nanoseconds, of an entry written (see
	// horizon).
	pending pendingQueue
	longest atomic.Int64

	stats      counters
	cacheStats sync.Map // cache name -> *counters, the counts of its caches

	ev *events
	// l1Trusted is true while the event subscription and every tracking
	// connection are up: only then are L1 tiers read and filled.
	l1Trusted atomic.Bool

	rng   lockedRand
	names cacheNames

	lifecycle
}

// settings are the Manager's configuration: what the options set, fixed at
// New.
type settings struct {
	prefix       string
	opTimeout    time.Duration
	loadTimeout  time.Duration
	writeTimeout time.Duration // bounds writes and invalidations (WithWriteTimeout)
	maxKey       int
	logger       *slog.Logger
	now          func() time.Time
	skew         time.Duration
	l1Size       int
	l1Bytes      int64
	l1TTL        time.Duration
	liveness     time.Duration
	obs          Observer // nil: none
	// single is true for a *redis.Client (one node, or Sentinel failover),
	// where keys of different slots may share one command.
	single bool
}

// markerTTL is how long an invalidation marker lives: longer than any load
// plus its write-back, so a load that saw the old marker cannot outlive the
// new one.
func (s *settings) markerTTL() time.Duration {
	return s.loadTimeout + 2*s.opTimeout + time.Second
}

// logError reports an error that no caller receives.
func (s *settings) logError(msg string, err error, attrs ...any) {
	s.logger.Warn("cachemgr: "+msg, append([]any{"err", err}, attrs...)...)
}

// codecSet is how values are encoded: the default codec and compressor,
// and every codec and compressor an entry may name.
type codecSet struct {
	codec       codec.Codec
	codecs      [256]codec.Codec
	compressor  compress.Compressor // nil: compression off
	compressors [256]compress.Compressor
	threshold   int // encoded size from which payloads are compressed
	maxValue    int // largest encoded value written or read
}

// register makes the built-in codecs and compressors, and the defaults the
// options set, decode what they wrote; compress.None() as the default
// turns compression off.
func (cs *codecSet) register() {
	for _, cd := range []codec.Codec{codec.Msgpack(), codec.JSON(), codec.Raw(), cs.codec} {
		cs.codecs[cd.ID()] = cd
	}
	for _, cp := range []compress.Compressor{compress.LZ4(), cs.compressor} {
		cs.compressors[cp.ID()] = cp
	}
	if cs.compressor.ID() == compress.NoneID {
		cs.compressor = nil
	}
}

// lifecycle is the Manager's life: Close ends it and waits for the
// goroutines started through goTracked.
type lifecycle struct {
	mu     sync.RWMutex // guards closed against wg.Add
	closed bool
	done   atomic.Bool
	wg     sync.WaitGroup
	// writes counts the write-backs under way off their callers' path
	// (WithWriteBehind): Close lets them land before it closes anything.
	writes counter
	ctx    context.Context // cancelled by Close; parent of every load
	cancel context.CancelFunc
}

// goTracked runs fn on a goroutine that Close waits for. It reports false,
// and runs nothing, once the Manager is closed.
func (l *lifecycle) goTracked(fn func()) bool {
	return l.goWith(nil, fn)
}

// goWrite is goTracked for a write-back that left its caller's path: Close
// waits for it before it closes the connection to Redis.
func (l *lifecycle) goWrite(fn func()) bool {
	return l.goWith(&l.writes, fn)
}

// counter counts goroutines that may start while another waits for the
// count to reach zero (which a sync.WaitGroup does not allow).
type counter struct {
	mu   sync.Mutex
	n    int
	zero sync.Cond
}

// Add adds d to the count.
func (c *counter) Add(d int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n += d
	if c.n == 0 && c.zero.L != nil {
		c.zero.Broadcast()
	}
}

// Done takes one from the count.
func (c *counter) Done() { c.Add(-1) }

// Wait returns once the count is zero.
func (c *counter) Wait() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.zero.L == nil {
		c.zero.L = &c.mu
	}
	for c.n > 0 {
		c.zero.Wait()
	}
}

// goWith is goTracked, counting the goroutine in also when not nil.
func (l *lifecycle) goWith(also *counter, fn func()) bool {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return false
	}
	l.wg.Add(1)
	if also != nil {
		also.Add(1)
	}
	go func() {
		defer l.wg.Done()
		if also != nil {
			defer also.Done()
		}
		fn()
	}()
	return true
}

// end refuses new goroutines and calls, and cancels the Manager's context.
func (l *lifecycle) end() {
	l.mu.Lock()
	l.closed = true
	l.done.Store(true)
	l.mu.Unlock()
	l.cancel()
}

// lockedRand is a random source safe for concurrent use.
type lockedRand struct {
	mu sync.Mutex
	r  *rand.Rand
}

// float64 returns a uniform float64 in [0, 1).
func (l *lockedRand) float64() float64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.r == nil {
		l.r = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	return l.r.Float64()
}

// cacheNames records the value type of each cache name.
type cacheNames struct {
	mu     sync.Mutex
	byName map[string]reflect.Type
}

// claim records that cache name holds values of type t, refusing a name
// already used for another type: entries of one would decode, half filled,
// as the other.
func (n *cacheNames) claim(name string, t reflect.Type) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if prev, ok := n.byName[name]; ok && prev != t {
		return fmt.Errorf("%w: cache %q already holds %v, not %v", ErrInvalidOption, name, prev, t)
	}
	if n.byName == nil {
		n.byName = map[string]reflect.Type{}
	}
	n.byName[name] = t
	return nil
}

// config is what the options set; New checks it and builds the Manager.
type config struct {
	settings
	codecSet
	failures int
	cooldown time.Duration
	events   bool
	coalesce bool
	replica  *replicaReads
}

// Option configures New.
type Option func(*config) error

// WithPrefix sets the prefix of every key the Manager writes, so several
// applications can share one Redis. It may not contain braces.
// Default: "" (keys start with the cache name).
func WithPrefix(p string) Option {
	return func(c *config) error {
		if err := keys.ValidatePrefix(p); err != nil {
			return invalidOption(err)
		}
		c.prefix = p
		return nil
	}
}

// WithCodec sets the codec that encodes values. Entries written by any
// built-in codec, or by this one, still decode after the default changes.
// Default: codec.Msgpack().
func WithCodec(cd codec.Codec) Option {
	return func(c *config) error {
		if cd == nil || cd.ID() == 0 {
			return fmt.Errorf("%w: nil codec or codec ID 0", ErrInvalidOption)
		}
		c.codec = cd
		return nil
	}
}

// WithCompressor sets the compressor applied to payloads of at least the
// compression threshold; compress.None() turns compression off. A payload is
// stored compressed only when that made it smaller. Default: compress.LZ4().
func WithCompressor(cp compress.Compressor) Option {
	return func(c *config) error {
		if cp == nil {
			return fmt.Errorf("%w: nil compressor", ErrInvalidOption)
		}
		c.compressor = cp
		return nil
	}
}

// WithCompressThreshold sets the encoded size from which payloads are
// compressed. Default: 1 KiB.
func WithCompressThreshold(n int) Option {
	return func(c *config) error {
		if n < 0 {
			return fmt.Errorf("%w: compress threshold %d", ErrInvalidOption, n)
		}
		c.threshold = n
		return nil
	}
}

// WithOpTimeout bounds every Redis round trip, whatever the client's own
// timeouts and retries. When it passes, Fetch answers from the loader.
//
// How depends on the client (see New). One that honours context deadlines
// (ContextTimeoutEnabled) gets them: no extra cost. On a *redis.Client with
// go-redis's defaults, reads go to a clone whose socket timeouts are this
// op timeout and which does not retry; they run on the caller's goroutine
// and cost what they cost on the first kind, but a connection that fails
// is not retried within the call, and a read whose caller's deadline is
// sooner than this timeout runs on a goroutine of its own.
// Writes on it, and every call on a Cluster or Ring client with defaults,
// run on a goroutine of their own, abandoned at the timeout, which costs
// a goroutine, a channel and a timer per call. docs/performance.md has the
// measured costs. Default: 100ms.
func WithOpTimeout(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return fmt.Errorf("%w: op timeout %v", ErrInvalidOption, d)
		}
		c.opTimeout = d
		return nil
	}
}

// WithLoadTimeout bounds every load: the loader's context ends after d, and
// a result that arrives later is returned but not written to Redis.
// Default: 30s.
func WithLoadTimeout(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return fmt.Errorf("%w: load timeout %v", ErrInvalidOption, d)
		}
		c.loadTimeout = d
		return nil
	}
}

// WithBreaker sets the circuit breaker: after failures consecutive Redis
// failures the Manager stops calling Redis for cooldown, then lets one probe
// through. failures 0 turns the breaker off. Default: 5 failures, 1s.
//
// Timeouts count as evidence of a dead Redis, not of a busy one: a timeout
// while Redis still answers other calls (one succeeded within the last op
// timeout) does not count, and concurrent timeouts count once per op
// timeout. So a burst of callers queueing behind each other, or a busy CPU,
// does not open the breaker; a Redis that stops answering opens it after
// about failures op timeouts. Refused connections and other errors count
// one by one.
func WithBreaker(failures int, cooldown time.Duration) Option {
	return func(c *config) error {
		if failures < 0 || cooldown <= 0 {
			return fmt.Errorf("%w: breaker %d failures, cooldown %v", ErrInvalidOption, failures, cooldown)
		}
		c.failures, c.cooldown = failures, cooldown
		return nil
	}
}

// WithMaxValueSize bounds the encoded size of a value: Set and Fetch refuse
// to write larger values (ErrTooLarge), and stored values claiming to be
// larger are treated as corrupt. Default: 8 MiB.
func WithMaxValueSize(n int) Option {
	return func(c *config) error {
		if n <= 0 || n > 512<<20 {
			return fmt.Errorf("%w: max value size %d", ErrInvalidOption, n)
		}
		c.maxValue = n
		return nil
	}
}

// WithMaxKeyLen sets the length above which a user key is replaced by its
// SHA-256 in the Redis key. Default: 200.
func WithMaxKeyLen(n int) Option {
	return func(c *config) error {
		if n < 1 {
			return fmt.Errorf("%w: max key length %d", ErrInvalidOption, n)
		}
		c.maxKey = n
		return nil
	}
}

// WithLogger sets where errors that are not returned to a caller go: Redis
// failures that Fetch answered around, failed write-backs. Default:
// slog.Default().
func WithLogger(l *slog.Logger) Option {
	return func(c *config) error {
		if l == nil {
			return fmt.Errorf("%w: nil logger", ErrInvalidOption)
		}
		c.logger = l
		return nil
	}
}

// WithClock sets the clock that tells wall time, for tests: freshness, L1
// expiry, the breaker's cooldown, and the stamps and deadlines compared
// with Redis' clock. Timeouts and waits keep the real clock. Default:
// time.Now.
func WithClock(now func() time.Time) Option {
	return func(c *config) error {
		if now == nil {
			return fmt.Errorf("%w: nil clock", ErrInvalidOption)
		}
		c.now = now
		return nil
	}
}

// New returns a Manager over client, which may be any go-redis client:
// single node, Sentinel (failover), Ring or Cluster. The caller keeps
// ownership of client and closes it after the Manager.
//
// Every Redis call is bounded by the op timeout. A *redis.Client,
// *redis.ClusterClient or *redis.Ring with ContextTimeoutEnabled runs calls
// on the caller's goroutine. A *redis.Client without it (go-redis's
// defaults) runs reads on the caller's goroutine too, through a clone of
// the client (Client.WithTimeout: same connection pool) whose socket
// timeouts are the op timeout and which makes one attempt, no retries; its
// writes, and every call on any other client, run on a goroutine the
// Manager waits for only until the timeout, since go-redis otherwise
// ignores context deadlines on sockets. The clone carries the client's
// hooks, also those added after New (New adds a hook that wraps nothing
// and only notices additions); a read on it is not cut short by its
// caller's cancellation, and one whose caller's deadline is sooner than
// the op timeout runs on a goroutine. ContextTimeoutEnabled: true avoids
// all of this; docs/performance.md has the costs. Reads that run on the
// caller's goroutine and arrive while another is in flight are coalesced
// into pipelines (see WithCoalescing).
func New(client redis.UniversalClient, opts ...Option) (*Manager, error) {
	if client == nil {
		return nil, fmt.Errorf("%w: nil redis client", ErrInvalidOption)
	}
	cfg, err := configure(opts)
	if err != nil {
		return nil, err
	}
	if err := checkReplicaSetup(client, cfg); err != nil {
		return nil, err
	}
	m := &Manager{
		settings: cfg.settings,
		codecSet: cfg.codecSet,
		client:   client,
		ev:       newEvents(cfg.prefix),
		replica:  cfg.replica,
	}
	m.codecSet.register()
	m.single = isSingle(client)
	m.ctx, m.cancel = context.WithCancel(context.Background())
	m.tr = transport.New(m.transportConfig(cfg))
	m.replica.connect(m.tr)
	m.ev.enabled.Store(cfg.events || m.l1Size > 0 || m.l1Bytes > 0)
	if m.l1Size > 0 || m.l1Bytes > 0 {
		m.startEvents()
	}
	if !m.tr.Direct() {
		m.logger.Info("cachemgr: client does not bound socket I/O by context deadlines; writes (and, on a Cluster or Ring client, reads) run on goroutines the Manager stops waiting for at the op timeout (set ContextTimeoutEnabled: true to avoid that cost)")
	}
	return m, nil
}

// configure applies opts to the defaults.
func configure(opts []Option) (*config, error) {
	cfg := &config{
		settings: settings{
			opTimeout:    100 * time.Millisecond,
			loadTimeout:  30 * time.Second,
			writeTimeout: time.Second,
			maxKey:       200,
			logger:       slog.Default(),
			now:          time.Now,
			skew:         250 * time.Millisecond,
			l1TTL:        5 * time.Second,
			liveness:     time.Second,
		},
		codecSet: codecSet{
			codec:      codec.Msgpack(),
			compressor: compress.LZ4(),
			threshold:  1 << 10,
			maxValue:   8 << 20,
		},
		failures: 5,
		cooldown: time.Second,
		coalesce: true,
	}
	for _, opt := range opts {
		if opt == nil {
			return nil, fmt.Errorf("%w: nil option", ErrInvalidOption)
		}
		if err := opt(cfg); err != nil {
			return nil, err
		}
	}
	return cfg, nil
}

// transportConfig is the configuration of the Manager's transport: its
// client, op timeout and breaker, its life, and where it reports.
func (m *Manager) transportConfig(cfg *config) transport.Config {
	tc := transport.Config{
		Client:    m.client,
		OpTimeout: m.opTimeout,
		Breaker:   breaker.New(cfg.failures, cfg.cooldown, cfg.now),
		Coalesce:  cfg.coalesce,
		Sources:   scriptSources,
		Lifetime:  m.ctx,
		Closed:    &m.done,
		Go:        m.goTracked,
		Skipped:   &m.stats.skipped,
		Errors:    &m.stats.redisErrors,
		OnBreaker: m.breakerMoved,
	}
	if m.obs != nil {
		tc.OnFailure = m.obs.Error
	}
	return tc
}

// breakerMoved logs and reports the breaker's opening (open, with the
// failure that opened it) or closing.
func (m *Manager) breakerMoved(ctx context.Context, open bool, err error) {
	if open {
		m.logger.Warn("cachemgr: circuit breaker open: Redis calls are skipped until a probe succeeds", "err", err)
	} else {
		m.logger.Info("cachemgr: circuit breaker closed: Redis answers again")
	}
	if bo, ok := m.obs.(BreakerObserver); ok {
		bo.Breaker(ctx, open, err)
	}
}

func isSingle(client redis.UniversalClient) bool {
	_, ok := client.(*redis.Client)
	return ok
}

// claimName records that cache name holds values of type t (see
// cacheNames.claim).
func (m *Manager) claimName(name string, t reflect.Type) error { return m.names.claim(name, t) }

// Prefix returns the key prefix set with WithPrefix.
func (m *Manager) Prefix() string { return m.prefix }

// Client returns the Redis client the Manager was built on, for packages
// that keep their own data beside the caches (sessions, for one). The
// Manager does not own it: the caller closes it after the Manager.
func (m *Manager) Client() redis.UniversalClient { return m.client }

// Codec returns the Manager's default codec (WithCodec).
func (m *Manager) Codec() codec.Codec { return m.codec }

// Close stops the Manager: it makes a last attempt, bounded by the write
// timeout, at invalidations that have not reached Redis yet, and lets the
// write-backs still on their way (WithWriteBehind) land; loads in
// flight see their context cancelled, and Close returns once every
// goroutine the Manager started has exited. Calls
// made after Close return ErrClosed. Close does not close the Redis client.
// It is safe to call more than once.
func (m *Manager) Close() error {
	m.closePending()
	// Write-backs that left their callers' path land first (each is
	// bounded by the op timeout); one that starts from now on may not.
	m.lifecycle.writes.Wait()
	m.lifecycle.end()
	m.tr.Close()
	m.replica.close()
	m.ev.once.Do(func() {}) // no listener may start from now on
	m.closeSubscription()   // unblocks the listener's Receive
	m.wg.Wait()
	return nil
}

// The Manager's calls to Redis, through its transport (see
// internal/transport for the rules they follow).

// do sends cmd as a read: transport.Transport.Do.
func (m *Manager) do(ctx context.Context, cmd redis.Cmder) error { return m.tr.Do(ctx, cmd) }

// doAll sends cmds in one pipeline as reads: transport.Transport.DoAll.
func (m *Manager) doAll(ctx context.Context, cmds ...redis.Cmder) error {
	return m.tr.DoAll(ctx, cmds...)
}

// doAllWith is doAll under pol: transport.Transport.DoAllWith.
func (m *Manager) doAllWith(ctx context.Context, pol transport.Policy, cmds ...redis.Cmder) error {
	return m.tr.DoAllWith(ctx, pol, cmds...)
}

// scan calls fn with each batch of keys matching pattern, on every master:
// transport.Transport.Scan.
func (m *Manager) scan(ctx context.Context, pattern string, fn func([]string) error) error {
	return m.tr.Scan(ctx, pattern, scanBatch, fn)
}

// isReply reports whether err is an error reply from Redis (WRONGTYPE,
// OOM, NOSCRIPT…) rather than a failure to reach it.
func isReply(err error) bool { return transport.IsReply(err) }

// Ping checks that Redis answers, within the op timeout, and returns nil
// or an error wrapping ErrUnavailable. When the client cannot connect, the
// error also wraps the dial's own cause (errors.Is(err,
// syscall.ECONNREFUSED) works) even where go-redis reports only that its
// retries ran out of time. Call it after New to find a wrong address at
// start-up rather than as a silently uncached service.
func (m *Manager) Ping(ctx context.Context) error {
	if m.done.Load() {
		return ErrClosed
	}
	cmd := redis.NewStatusCmd(ctx, "ping")
	err := m.tr.DoWith(ctx, transport.Policy{Timeout: m.opTimeout, Write: true}, cmd)
	if err == nil {
		err = cmd.Err()
	}
	if err == nil || !errors.Is(err, ErrUnavailable) {
		return err
	}
	if cause := m.dialCause(ctx); cause != nil {
		return fmt.Errorf("ping: %w (dial: %w)", err, cause)
	}
	return fmt.Errorf("ping: %w", err)
}

// dialCause dials the address of a single-node client once, within the op
// timeout, and returns why that failed; nil when it worked or the client
// has no single address.
func (m *Manager) dialCause(ctx context.Context) error {
	c, ok := m.client.(*redis.Client)
	if !ok {
		return nil
	}
	opt := c.Options()
	ctx, cancel := context.WithTimeout(ctx, m.opTimeout)
	defer cancel()
	dial := opt.Dialer
	if dial == nil {
		var d net.Dialer
		dial = d.DialContext
	}
	conn, err := dial(ctx, opt.Network, opt.Addr)
	if err != nil {
		return err
	}
	conn.Close()
	return nil
}

// random returns a uniform float64 in [0, 1) from the Manager's source.
func (m *Manager) random() float64 { return m.rng.float64() }

func sha1hex(s string) string {
	sum := sha1.Sum([]byte(s))
	return hex.EncodeToString(sum[:])
}
