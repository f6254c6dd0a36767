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
	"github.com/redis/go-redis/v9"
)

// Manager owns what the caches of one process share: the Redis client, the
// codec and compressor, the key prefix, the statistics, the circuit breaker
// and the goroutines of loads in flight. Create one per process with New and
// Close it on shutdown. A Manager is safe for concurrent use.
type Manager struct {
	client      redis.UniversalClient
	prefix      string
	codec       codec.Codec
	codecs      [256]codec.Codec
	compressor  compress.Compressor
	compressors [256]compress.Compressor
	threshold   int
	opTimeout   time.Duration
	loadTimeout time.Duration
	maxValue    int
	maxKey      int
	logger      *slog.Logger
	now         func() time.Time
	// writeTimeout bounds writes and invalidations (WithWriteTimeout);
	// pending holds those that did not reach Redis; longest is the longest
	// lifetime, in nanoseconds, of an entry written (see horizon).
	writeTimeout time.Duration
	pending      pendingQueue
	longest      atomic.Int64
	writesHeld   atomic.Bool // a write failed while the breaker was open
	skew         time.Duration
	l1Size       int
	l1Bytes      int64
	l1TTL        time.Duration
	liveness     time.Duration
	obs          Observer // nil: none
	breaker      *breaker.Breaker
	co           *coalescer    // nil: commands go out one by one
	replica      *replicaReads // nil: every read goes to the master
	// single is true for a *redis.Client (one node, or Sentinel failover),
	// where keys of different slots may share one command.
	single bool
	// direct is true when the client bounds its socket I/O by the context
	// deadline, so a call can run on the caller's goroutine. Otherwise go-redis
	// would wait its own ReadTimeout, with retries, whatever our deadline says.
	direct bool
	// bounded bounds reads on a *redis.Client that is not direct by the op
	// timeout, on the caller's goroutine; nil otherwise.
	bounded *boundedReader

	stats     counters
	deadlines deadlines
	ev        *events
	// l1Trusted is true while the event subscription and every tracking
	// connection are up: only then are L1 tiers read and filled.
	l1Trusted atomic.Bool
	bufs      sync.Pool // *[]byte encode and decompression buffers

	randMu sync.Mutex
	rand   *rand.Rand

	namesMu sync.Mutex
	names   map[string]reflect.Type // cache name -> value type

	cacheStats sync.Map // cache name -> *counters, the counts of its caches

	mu     sync.RWMutex // guards closed against wg.Add
	closed bool
	done   atomic.Bool
	wg     sync.WaitGroup
	ctx    context.Context // cancelled by Close; parent of every load
	cancel context.CancelFunc
}

type config struct {
	prefix       string
	codec        codec.Codec
	compressor   compress.Compressor
	threshold    int
	opTimeout    time.Duration
	loadTimeout  time.Duration
	writeTimeout time.Duration
	maxValue     int
	maxKey       int
	failures     int
	cooldown     time.Duration
	logger       *slog.Logger
	now          func() time.Time
	skew         time.Duration
	l1Size       int
	l1Bytes      int64
	l1TTL        time.Duration
	liveness     time.Duration
	events       bool
	observer     Observer
	coalesce     bool
	replica      *replicaReads
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
	cfg := config{
		codec:        codec.Msgpack(),
		compressor:   compress.LZ4(),
		threshold:    1 << 10,
		opTimeout:    100 * time.Millisecond,
		loadTimeout:  30 * time.Second,
		writeTimeout: time.Second,
		maxValue:     8 << 20,
		maxKey:       200,
		failures:     5,
		cooldown:     time.Second,
		logger:       slog.Default(),
		now:          time.Now,
		skew:         250 * time.Millisecond,
		l1TTL:        5 * time.Second,
		liveness:     time.Second,
		coalesce:     true,
	}
	for _, opt := range opts {
		if opt == nil {
			return nil, fmt.Errorf("%w: nil option", ErrInvalidOption)
		}
		if err := opt(&cfg); err != nil {
			return nil, err
		}
	}
	if err := checkReplicaSetup(client, &cfg); err != nil {
		return nil, err
	}
	m := &Manager{
		client:       client,
		prefix:       cfg.prefix,
		codec:        cfg.codec,
		compressor:   cfg.compressor,
		threshold:    cfg.threshold,
		opTimeout:    cfg.opTimeout,
		loadTimeout:  cfg.loadTimeout,
		writeTimeout: cfg.writeTimeout,
		maxValue:     cfg.maxValue,
		maxKey:       cfg.maxKey,
		logger:       cfg.logger,
		now:          cfg.now,
		skew:         cfg.skew,
		l1Size:       cfg.l1Size,
		l1Bytes:      cfg.l1Bytes,
		l1TTL:        cfg.l1TTL,
		liveness:     cfg.liveness,
		obs:          cfg.observer,
		ev:           newEvents(cfg.prefix),
		breaker:      breaker.New(cfg.failures, cfg.cooldown, cfg.now),
		direct:       honoursContext(client),
		single:       isSingle(client),
		replica:      cfg.replica,
		rand:         rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())),
	}
	for _, cd := range []codec.Codec{codec.Msgpack(), codec.JSON(), codec.Raw(), cfg.codec} {
		m.codecs[cd.ID()] = cd
	}
	for _, cp := range []compress.Compressor{compress.LZ4(), cfg.compressor} {
		m.compressors[cp.ID()] = cp
	}
	if cfg.compressor.ID() == compress.NoneID {
		m.compressor = nil
	}
	if c, ok := client.(*redis.Client); ok && !m.direct {
		m.bounded = newBoundedReader(c, m.opTimeout)
	}
	m.ctx, m.cancel = context.WithCancel(context.Background())
	if cfg.coalesce {
		m.co = newCoalescer(m)
		m.replica.coalesce(m)
	}
	m.ev.enabled.Store(cfg.events || m.l1Size > 0 || m.l1Bytes > 0)
	if m.l1Size > 0 || m.l1Bytes > 0 {
		m.startEvents()
	}
	if !m.direct {
		m.logger.Info("cachemgr: client does not bound socket I/O by context deadlines; writes (and, on a Cluster or Ring client, reads) run on goroutines the Manager stops waiting for at the op timeout (set ContextTimeoutEnabled: true to avoid that cost)")
	}
	return m, nil
}

// honoursContext reports whether client bounds socket reads and writes by
// the context deadline.
func honoursContext(client redis.UniversalClient) bool {
	switch c := client.(type) {
	case *redis.Client:
		return c.Options().ContextTimeoutEnabled
	case *redis.ClusterClient:
		return c.Options().ContextTimeoutEnabled
	case *redis.Ring:
		return c.Options().ContextTimeoutEnabled
	}
	return false
}

func isSingle(client redis.UniversalClient) bool {
	_, ok := client.(*redis.Client)
	return ok
}

// claimName records that cache name holds values of type t, refusing a
// name already used for another type: entries of one would decode, half
// filled, as the other.
func (m *Manager) claimName(name string, t reflect.Type) error {
	m.namesMu.Lock()
	defer m.namesMu.Unlock()
	if prev, ok := m.names[name]; ok && prev != t {
		return fmt.Errorf("%w: cache %q already holds %v, not %v", ErrInvalidOption, name, prev, t)
	}
	if m.names == nil {
		m.names = map[string]reflect.Type{}
	}
	m.names[name] = t
	return nil
}

// Prefix returns the key prefix set with WithPrefix.
func (m *Manager) Prefix() string { return m.prefix }

// Client returns the Redis client the Manager was built on, for packages
// that keep their own data beside the caches (sessions, for one). The
// Manager does not own it: the caller closes it after the Manager.
func (m *Manager) Client() redis.UniversalClient { return m.client }

// Codec returns the Manager's default codec (WithCodec).
func (m *Manager) Codec() codec.Codec { return m.codec }

// Close stops the Manager: it makes a last attempt, bounded by the write
// timeout, at invalidations that have not reached Redis yet; loads in
// flight see their context cancelled, and Close returns once every
// goroutine the Manager started has exited. Calls
// made after Close return ErrClosed. Close does not close the Redis client.
// It is safe to call more than once.
func (m *Manager) Close() error {
	m.closePending()
	m.mu.Lock()
	m.closed = true
	m.done.Store(true)
	m.mu.Unlock()
	m.cancel()
	if m.co != nil {
		m.co.close()
	}
	if m.bounded != nil {
		m.bounded.close()
	}
	m.replica.close()
	m.ev.once.Do(func() {}) // no listener may start from now on
	m.closeSubscription()   // unblocks the listener's Receive
	m.wg.Wait()
	return nil
}

// goTracked runs fn on a goroutine that Close waits for. It reports false,
// and runs nothing, once the Manager is closed.
func (m *Manager) goTracked(fn func()) bool {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return false
	}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		fn()
	}()
	return true
}

// errBreakerOpen is wrapped in ErrUnavailable when a call is skipped.
var errBreakerOpen = errors.New("circuit breaker open")

// callPolicy is how one call goes to Redis.
type callPolicy struct {
	timeout time.Duration // bounds the call
	// write marks a write or invalidation: an open breaker does not stop
	// it (read failures opened it; an invalidation skipped for them would
	// be lost), and its caller retries it within the write timeout.
	write bool
}

// reads is the policy of reads and of the calls a load makes.
func (m *Manager) reads() callPolicy { return callPolicy{timeout: m.opTimeout} }

// admit decides whether a call may go to Redis at all: not after Close,
// not while the breaker is open (a write still goes, until one has failed
// while it was open: then Redis is down for writes too), not for a caller
// that already gave up.
func (m *Manager) admit(ctx context.Context, pol callPolicy) error {
	switch {
	case m.done.Load():
		return ErrClosed
	case (!pol.write || m.writesHeld.Load()) && !m.breaker.Allow():
		m.stats.skipped.Add(1)
		return fmt.Errorf("%w: %w", ErrUnavailable, errBreakerOpen)
	case ctx.Err() != nil:
		return context.Cause(ctx)
	}
	return nil
}

// do sends cmd to Redis within the op timeout, through the breaker, and
// records the outcome. The returned error is cmd.Err() (redis.Nil included),
// or ErrUnavailable wrapping the cause when Redis could not answer.
func (m *Manager) do(ctx context.Context, cmd redis.Cmder) error {
	return m.doWith(ctx, m.reads(), cmd)
}

// doWith is do under pol.
func (m *Manager) doWith(ctx context.Context, pol callPolicy, cmd redis.Cmder) error {
	if err := m.admit(ctx, pol); err != nil {
		return err
	}
	// inline: a read on the caller's goroutine, bounded by the client
	// (direct) or by m.bounded, which diverts opCtx calls.
	inline := !pol.write && (m.direct || m.bounded != nil)
	callCtx, cancel := ctx, context.CancelFunc(nil)
	if d, ok := ctx.Deadline(); !ok || time.Until(d) > pol.timeout {
		if inline {
			callCtx = &opCtx{Context: ctx, bound: m.deadlines.get(m.ctx, pol.timeout)}
		} else {
			callCtx, cancel = context.WithTimeout(ctx, pol.timeout)
		}
	} else if !m.direct {
		inline = false // m.bounded would outlast the caller's deadline
	}
	var err error
	switch {
	case pol.write && m.direct:
		err = m.client.Process(callCtx, cmd)
	case inline:
		err = m.process(callCtx, cmd)
	default:
		err = m.guarded(callCtx, cmd)
	}
	if cancel != nil {
		cancel()
	}
	return m.recordWith(ctx, pol, err)
}

// recordWith is record for a call made under pol: a write that fails while
// the breaker is open holds writes back until a call succeeds again.
func (m *Manager) recordWith(ctx context.Context, pol callPolicy, err error) error {
	err = m.record(ctx, err)
	switch {
	case err == nil || errors.Is(err, redis.Nil) || isReply(err):
		if m.writesHeld.Load() {
			m.writesHeld.Store(false)
		}
	case pol.write && errors.Is(err, ErrUnavailable) && m.breaker.State() != breaker.Closed:
		m.writesHeld.Store(true)
	}
	return err
}

// guarded runs cmd on a tracked goroutine and stops waiting at the
// deadline. go-redis closes a connection whose reply timed out, so a late
// reply is never read as the answer to another command.
// The caller must not touch cmd after an abandoned call: the goroutine may
// still be writing its reply.
func (m *Manager) guarded(ctx context.Context, cmd redis.Cmder) error {
	err, _ := m.guardedFn(ctx, func() error { return m.client.Process(ctx, cmd) })
	return err
}

// guardedFn runs fn on a tracked goroutine until ctx ends; abandoned
// reports that it stopped waiting while fn still runs.
func (m *Manager) guardedFn(ctx context.Context, fn func() error) (err error, abandoned bool) {
	done := make(chan error, 1)
	if !m.goTracked(func() { done <- fn() }) {
		return ErrClosed, false
	}
	select {
	case err := <-done:
		return err, false
	case <-ctx.Done():
		return ctx.Err(), true
	}
}

// doAll sends cmds in one pipeline (one round trip per node) within the op
// timeout, through the breaker, and answers NOSCRIPT replies by sending the
// script source. The returned error is non-nil only when Redis could not
// answer (ErrUnavailable), the caller's ctx ended, or the Manager is closed;
// replies, redis.Nil included, are in each cmd.
func (m *Manager) doAll(ctx context.Context, cmds ...redis.Cmder) error {
	return m.doAllWith(ctx, m.reads(), cmds...)
}

// doAllWith is doAll under pol.
func (m *Manager) doAllWith(ctx context.Context, pol callPolicy, cmds ...redis.Cmder) error {
	if err := m.doPipeline(ctx, pol, cmds); err != nil {
		return err
	}
	var retry []redis.Cmder
	var orig []*redis.Cmd
	for _, c := range cmds {
		if cmd, ok := c.(*redis.Cmd); ok && redis.HasErrorPrefix(cmd.Err(), "NOSCRIPT") {
			args := append([]any(nil), cmd.Args()...)
			args[0], args[1] = "eval", scriptSources[args[1].(string)]
			retry = append(retry, redis.NewCmd(ctx, args...))
			orig = append(orig, cmd)
		}
	}
	if len(retry) == 0 {
		return nil
	}
	if w := waitOf(cmds); w != nil {
		retry = append(retry, w)
	}
	if err := m.doPipeline(ctx, pol, retry); err != nil {
		return err
	}
	for i, o := range orig {
		o.SetVal(retry[i].(*redis.Cmd).Val())
		o.SetErr(retry[i].Err())
	}
	return nil
}

func (m *Manager) doPipeline(ctx context.Context, pol callPolicy, cmds []redis.Cmder) error {
	if len(cmds) == 1 {
		err := m.doWith(ctx, pol, cmds[0])
		if err == nil || errors.Is(err, redis.Nil) || isReply(err) {
			return nil
		}
		return err
	}
	if err := m.admit(ctx, pol); err != nil {
		return err
	}
	callCtx, cancel := context.WithTimeout(ctx, pol.timeout)
	defer cancel()
	inline := m.direct
	if d, ok := ctx.Deadline(); !inline && !pol.write && m.bounded != nil && (!ok || time.Until(d) >= pol.timeout) {
		m.bounded.ensure()
		callCtx, inline = &opCtx{Context: ctx, bound: callCtx}, true // diverted
	}
	exec := func() error {
		pipe := m.client.Pipeline()
		for _, c := range cmds {
			_ = pipe.Process(callCtx, c)
		}
		_, err := pipe.Exec(callCtx)
		return err
	}
	var err error
	abandoned := false
	if inline {
		err = exec()
	} else {
		err, abandoned = m.guardedFn(callCtx, exec)
	}
	if !abandoned {
		// Exec reports the first failed command; only a failure to reach
		// Redis concerns the breaker. An Exec error that no command carries
		// (a hook failing the whole pipeline) is a failure too: the
		// commands hold no replies.
		execErr, marked := err, false
		err = nil
		for _, c := range cmds {
			e := c.Err()
			marked = marked || e != nil
			if isReply(e) && !errors.Is(e, redis.Nil) && !redis.HasErrorPrefix(e, "NOSCRIPT") {
				m.stats.redisErrors.Add(1) // WRONGTYPE, OOM…: Redis is up
			}
			if e != nil && !errors.Is(e, redis.Nil) && !isReply(e) {
				err = e
				break
			}
		}
		if err == nil && !marked && execErr != nil {
			err = execErr
		}
	}
	if rerr := m.recordWith(ctx, pol, err); rerr != nil {
		return rerr
	}
	return nil
}

// record feeds the breaker and the counters. A caller that gave up is
// neither a success nor a failure of Redis.
func (m *Manager) record(ctx context.Context, err error) error {
	switch {
	case err == nil || errors.Is(err, redis.Nil):
		m.success(ctx)
		return err
	case errors.Is(err, ErrClosed) || m.done.Load():
		// Calls cut short by Close say nothing about Redis.
		return ErrClosed
	case isReply(err):
		// Redis answered (WRONGTYPE, OOM, NOSCRIPT…): it is up. NOSCRIPT
		// is routine: doAll answers it by sending the source.
		m.success(ctx)
		if !redis.HasErrorPrefix(err, "NOSCRIPT") {
			m.stats.redisErrors.Add(1)
		}
		return err
	case ctx.Err() != nil:
		// The caller gave up: its error, not Redis'.
		return context.Cause(ctx)
	default:
		if m.breaker.State() != breaker.Open && m.breaker.Failure() {
			m.logger.Warn("cachemgr: circuit breaker open: Redis calls are skipped until a probe succeeds", "err", err)
			if bo, ok := m.obs.(BreakerObserver); ok {
				bo.Breaker(ctx, true, err)
			}
		}
		m.stats.redisErrors.Add(1)
		if m.obs != nil {
			m.obs.Error(ctx, err)
		}
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
}

// success records a call that reached Redis, and logs and reports the
// breaker's closing.
func (m *Manager) success(ctx context.Context) {
	if !m.breaker.Success() {
		return
	}
	m.logger.Info("cachemgr: circuit breaker closed: Redis answers again")
	if bo, ok := m.obs.(BreakerObserver); ok {
		bo.Breaker(ctx, false, nil)
	}
}

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
	err := m.doWith(ctx, callPolicy{timeout: m.opTimeout, write: true}, cmd)
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

// isReply reports whether err is an error reply from Redis (WRONGTYPE,
// OOM, NOSCRIPT…) rather than a failure to reach it.
func isReply(err error) bool {
	var rerr redis.Error
	return errors.As(err, &rerr)
}

// random returns a uniform float64 in [0, 1) from the Manager's source.
func (m *Manager) random() float64 {
	m.randMu.Lock()
	defer m.randMu.Unlock()
	return m.rand.Float64()
}

// logError reports an error that no caller receives.
func (m *Manager) logError(msg string, err error, attrs ...any) {
	m.logger.Warn("cachemgr: "+msg, append([]any{"err", err}, attrs...)...)
}

// markerTTL is how long an invalidation marker lives: longer than any load
// plus its write-back, so a load that saw the old marker cannot outlive the
// new one.
func (m *Manager) markerTTL() time.Duration {
	return m.loadTimeout + 2*m.opTimeout + time.Second
}

func sha1hex(s string) string {
	sum := sha1.Sum([]byte(s))
	return hex.EncodeToString(sum[:])
}
