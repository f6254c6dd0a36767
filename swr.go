package cachemgr

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"math"
	"sync/atomic"
	"time"

	"github.com/cachemgr/cachemgr/internal/breaker"
	"github.com/redis/go-redis/v9"
)

// swrPolicy is a cache's stale-while-revalidate and lease configuration.
type swrPolicy struct {
	stale       time.Duration // how long a value is served after its fresh TTL
	softTimeout time.Duration // how long a stale hit waits for its refresh
	beta        float64       // XFetch early-refresh factor; 0 off
	lease       time.Duration // cross-process load lease; 0 off
}

// WithStale keeps each value for d after its fresh TTL ends. A Fetch that
// finds such a stale value returns it at once and starts one background
// refresh, across every process sharing the Redis (a lease decides which).
// If the refresh fails, the stale value keeps being served (fail-safe) until
// the stale window ends; then the next Fetch loads in the foreground. Get
// returns stale values as they are. 0 turns stale serving off.
// Default: 0.
func WithStale(d time.Duration) CacheOption {
	return func(c *cacheConfig) error {
		if d == 0 {
			c.swr.stale = 0
			return nil
		}
		if err := checkTTL(d); err != nil {
			return invalidOption(err)
		}
		c.swr.stale = d
		return nil
	}
}

// WithSoftTimeout lets a Fetch that found a stale value wait up to d for
// the refresh it started: a fast loader gives the caller the fresh value, a
// slower one is not waited for (the stale value is returned and the refresh
// goes on in the background). The load timeout (WithLoadTimeout) bounds the
// refresh itself. Default: 0 (return the stale value at once).
func WithSoftTimeout(d time.Duration) CacheOption {
	return func(c *cacheConfig) error {
		if d < 0 {
			return fmt.Errorf("%w: soft timeout %v", ErrInvalidOption, d)
		}
		c.swr.softTimeout = d
		return nil
	}
}

// WithEarlyRefresh refreshes hot values before they expire, with the
// probabilistic rule of Vattani, Chierichetti and Lowenstein (XFetch, VLDB
// 2015): a hit refreshes in the background when
// now - loadTime*beta*ln(rand) >= freshUntil, so values that took long to
// load, and keys read often, refresh earlier. beta 1 is the paper's
// choice; larger refreshes earlier. 0 turns it off. Default: 0.
func WithEarlyRefresh(beta float64) CacheOption {
	return func(c *cacheConfig) error {
		if !(beta >= 0 && beta <= 100) {
			return fmt.Errorf("%w: early refresh beta %v outside [0, 100]", ErrInvalidOption, beta)
		}
		c.swr.beta = beta
		return nil
	}
}

// WithLease sets how long the lease lives that makes one process, of all
// those sharing the Redis, load a missing key while the others wait for its
// value (polling with back-off, at most the lease time plus an op timeout,
// then they load themselves). A holder that dies frees the key after d. The
// lease also elects the one process that refreshes a stale value. 0 turns
// cross-process protection off (singleflight still works per process).
// Default: 5s.
func WithLease(d time.Duration) CacheOption {
	return func(c *cacheConfig) error {
		if d == 0 {
			c.swr.lease = 0
			return nil
		}
		if err := checkTTL(d); err != nil {
			return invalidOption(err)
		}
		c.swr.lease = d
		return nil
	}
}

// Back-off of processes that wait for another's load.
const (
	leasePollMin = 2 * time.Millisecond
	leasePollMax = 5 * time.Millisecond
)

// claimDeadline is the Unix ms after which a claim must not take a lease:
// its caller has given up on the reply (a paused server runs it late), and
// nobody would ever release it. The clock-skew allowance covers the
// distance between this process's clock and the server's.
func (c *Cache[T]) claimDeadline() int64 {
	return c.m.now().Add(c.m.opTimeout + c.m.skew).UnixMilli()
}

// claimLoad prepares the load of a missing key: it re-reads the key (a
// caller that missed just before the previous load wrote back must not
// load again), reads the invalidation marker and takes the lease, in one
// round trip. While another process holds the lease it waits for that
// process's value. It returns a result when no load is needed, and fills
// st otherwise.
func (c *Cache[T]) claimLoad(ctx context.Context, st *storeRequest) *loaded[T] {
	token := st.lease
	if token == "" {
		token = rand.Text()
	}
	deadline := monotonic().Add(c.swr.lease + c.m.opTimeout)
	wait := leasePollMin
	retries := claimRetries
	if st.first {
		// The claim is the flight's lookup: a timeout costs what a lookup's
		// does, one op timeout (see claimFailed).
		retries = 0
	}
	// filled closes when the lease's holder frees it (see fillWaiter).
	var filled <-chan struct{}
	unwait := func() {}
	defer func() { unwait() }()
	for waited, retried := false, false; ; {
		r, next := c.claimOnce(ctx, st, token, retries > 0)
		switch {
		case next == claimRetry:
			retries--
			retried = true
			continue
		case next == claimDone:
			if retried {
				c.releaseRetried(st, token, r != nil)
			}
			return r
		case next == claimAgain:
			continue
		case monotonic().After(deadline):
			return nil // the holder is slow or gone: load ourselves
		}
		if !waited {
			c.stats.leaseWaits.Add(1)
			waited = true
		}
		if filled == nil || isClosed(filled) {
			unwait()
			filled, unwait = c.m.fillWaiter(st.rkey)
		}
		if !c.m.leaseWait(wait, filled) {
			return &loaded[T]{err: ErrClosed}
		}
		wait = min(2*wait, leasePollMax)
	}
}

// releaseRetried releases, once Redis answers, the lease that a claim whose
// reply was lost may have taken before the claim was sent again, unless the
// load holds it now (its write-back releases it) or the claim's release is
// already arranged. found reports that no load follows.
func (c *Cache[T]) releaseRetried(st *storeRequest, token string, found bool) {
	switch {
	case c.swr.lease == 0 || st.token != "" || st.uncertain != "":
	case found:
		c.releaseLater(st.rkey, token)
	default:
		st.uncertain = token
	}
}

// What claimLoad does after one claim.
const (
	claimDone  = iota // return the claim's result (nil: load)
	claimAgain        // claim again at once
	claimWait         // another process holds the lease: wait, then claim again
	claimRetry        // the claim timed out on a live Redis: send it again
)

// claimRetries is how often a claim that timed out while the breaker is
// closed (Redis not known to be down) is sent again before the load goes
// ahead without its reply.
// A claim's reply is the load's baseline: without one, the result can be
// written back only in the narrow case of noteClaimLost, and the callers
// that begin during the load cannot share it. On a Redis that is slow, not
// dead (the stampede's own queueing, a busy CPU), one more op timeout is
// cheaper than a second load. One retry keeps one load per process in
// TestStampedeOverloadedRedis as well as two did (160 of 160 processes),
// and bounds what a Redis that stops between the lookup and the claim
// costs Fetch: two op timeouts after the lookup, not three.
const claimRetries = 1

// claimOnce sends one claim of st's key (see claimLoad) and says what
// follows it; retry allows claimRetry.
func (c *Cache[T]) claimOnce(ctx context.Context, st *storeRequest, token string, retry bool) (*loaded[T], int) {
	checked := monotonic()
	fill := c.l1Token()
	proposal := rand.Text()
	cmd := claimArgs{key: st.rkey, token: token, leaseMS: millis0(c.swr.lease), newMarker: proposal,
		markerTTLMS: millis(c.m.markerTTL()), deadlineMS: c.claimDeadline()}.cmd(ctx)
	vc := c.versionCheck(ctx)
	prep, epoch := c.m.tagPrepares(ctx, st.tags)
	err := c.m.doAll(ctx, append(withCheck(prep, vc), cmd)...)
	if err == nil && cmd.Err() != nil && !errors.Is(cmd.Err(), redis.Nil) {
		err = cmd.Err()
	}
	if err != nil {
		return nil, c.claimFailed(err, st, token, proposal, retry)
	}
	vals, ok := cmd.Val().([]any)
	if !ok || len(vals) != 4 {
		return nil, claimDone
	}
	st.marker, _ = vals[1].(string)
	st.markerOK, st.markerAt = true, monotonic()
	st.serverUS, _ = vals[3].(int64)
	st.epoch, st.epochOK = epochOf(epoch)
	acquired, _ := vals[2].(int64)
	if versionMoved(vc, st.version) {
		if st.first {
			// The claim stood for the lookup: learn the version, as a
			// lookup would, so that the next claims are made in it.
			cur, err := vc.Result()
			_, _, _ = c.observed(ctx, st.version, cur, err)
		}
		// A Bump retired this namespace: what it holds is not to be
		// returned, and nothing is to be written there. Load, and
		// release a lease the claim took.
		if acquired == 1 && c.swr.lease > 0 {
			st.token = token
		}
		st.markerOK = false
		return nil, claimDone
	}
	if raw, ok := vals[0].(string); ok {
		r, err := c.usable(ctx, st, raw, checked, fill)
		switch {
		case err != nil:
			// Redis failed, or the key holds another shape's value:
			// load, and do not write back.
			st.markerOK = false
			return nil, claimDone
		case r != nil:
			return r, claimDone
		}
		return nil, claimAgain // it was unusable and is dropped
	}
	if acquired == 1 {
		if c.swr.lease > 0 {
			st.token = token
		}
		return nil, claimDone
	}
	return nil, claimWait
}

// claimFailed says what follows a claim that got no reply (err): send it
// again (retry allowed, a timeout on a breaker still closed), or load
// without its baseline. The claim may have run all the same (a lost reply):
// its lease is released later, and the load writes back if the marker is
// still the claim's own proposal (see noteClaimLost). An error reply means
// the claim did not run.
func (c *Cache[T]) claimFailed(err error, st *storeRequest, token, proposal string, retry bool) int {
	if isReply(err) {
		return claimDone
	}
	if retry && breaker.IsTimeout(err) && c.m.tr.BreakerState() == breaker.Closed {
		return claimRetry
	}
	if c.swr.lease > 0 {
		st.uncertain = token
	}
	if st.first {
		// No lookup answered before it, so Redis is as unknown as when a
		// lookup fails: load without writing back, which would cost
		// another op timeout on a Redis that stopped.
		return claimDone
	}
	st.noteClaimLost(proposal)
	return claimDone
}

// usable decodes raw, found by a flight, and returns it as the flight's
// result; nil means it was unusable (undecodable, or invalidated by a tag)
// and has been dropped. The error reports that Redis failed while checking
// its tags, that raw belongs to another shape of T (left in place), or that
// an invalidation of one of its tags is pending in this process.
func (c *Cache[T]) usable(ctx context.Context, st *storeRequest, raw string, checked time.Time, fill uint64) (*loaded[T], error) {
	var v T
	h, ti, err := c.m.decode([]byte(raw), c.codec, c.shape, &v)
	if err == nil && len(ti.tags) > 0 && c.m.covering(c.name, st.key, ti.tags) {
		// An invalidation of one of its tags is pending here: as a lookup
		// would, load afresh and leave Redis alone.
		return nil, errPendingMiss
	}
	if err == nil && len(ti.tags) > 0 {
		err = c.m.checkTags(ctx, ti)
	}
	if err == nil && st.first {
		// The claim was the lookup: a hit, counted and kept in the L1
		// tier as a read's is, with the token taken before it was sent.
		c.hit(ctx, fill, st.key, st.version, raw, h, ti)
	}
	switch {
	case err == nil && h.Negative:
		return &loaded[T]{err: ErrNotFound, checked: checked}, nil
	case err == nil:
		return &loaded[T]{val: v, enc: []byte(raw), checked: checked}, nil
	case errors.Is(err, ErrUnavailable) || errors.Is(err, ErrClosed):
		return nil, err
	case errors.Is(err, errOtherShape):
		c.stats.otherShape.Add(1)
		return nil, err
	}
	c.drop(ctx, st.rkey, raw)
	return nil, nil
}

// releaseLater releases, once Redis answers, a lease whose claim reply was
// lost: whoever waits for it would otherwise wait the whole lease time. It
// retries with back-off until the lease would have expired anyway, on a
// goroutine Close waits for.
func (c *Cache[T]) releaseLater(rkey, token string) {
	deadline := monotonic().Add(c.swr.lease)
	c.m.goTracked(func() {
		wait := 20 * time.Millisecond
		for monotonic().Before(deadline) {
			_, err := c.m.runScript(c.m.ctx, releaseArgs{key: rkey, token: token, channel: c.m.ev.channel})
			if err == nil || isReply(err) || errors.Is(err, ErrClosed) {
				return
			}
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-c.m.ctx.Done():
				t.Stop()
				return
			}
			wait = min(2*wait, time.Second)
		}
	})
}

func (c *Cache[T]) release(ctx context.Context, st storeRequest) {
	if st.token == "" {
		return
	}
	if _, err := c.m.runScript(ctx, releaseArgs{key: st.rkey, token: st.token, channel: c.m.ev.channel}); err != nil && !errors.Is(err, ErrClosed) {
		c.m.logError("release lease", err, "key", st.rkey)
	}
}

// serve returns a hit's value, starting a background refresh when the value
// is stale or XFetch says so.
func (c *Cache[T]) serve(ctx context.Context, v T, f found, load func(context.Context) (T, error), w writeConfig) T {
	if c.swr.stale == 0 && c.swr.beta == 0 || f.h.Negative || f.l1 {
		return v
	}
	now := c.m.now().UnixMilli()
	switch {
	case now >= f.h.FreshUntil:
		c.stats.staleHits.Add(1)
		ch := c.refresh(ctx, f, load, w)
		if ch == nil || c.swr.softTimeout <= 0 {
			return v
		}
		t := time.NewTimer(c.swr.softTimeout)
		defer t.Stop()
		select {
		case r := <-ch:
			if r != nil && r.err == nil && !r.stale {
				return r.val
			}
		case <-t.C:
		case <-ctx.Done():
		}
	case c.swr.beta > 0 && xfetch(now, f.h.FreshUntil, f.h.Load, c.swr.beta, c.m.random()):
		c.refresh(ctx, f, load, w)
	}
	return v
}

// xfetch reports whether a value fresh until freshUntil (Unix ms), which
// took load to produce, should be refreshed now. u is uniform in [0, 1).
func xfetch(now, freshUntil int64, load time.Duration, beta, u float64) bool {
	gap := -float64(load.Milliseconds()) * beta * math.Log(1-u) // 1-u is in (0, 1]
	return float64(now)+gap >= float64(freshUntil)
}

// refresh starts a background refresh of a stale (or nearly stale) value,
// unless this process already runs one for the key. The channel receives
// the result (nil if another process refreshed instead, or nothing could
// be done); it is nil when no refresh was started.
func (c *Cache[T]) refresh(ctx context.Context, f found, load func(context.Context) (T, error), w writeConfig) <-chan *loaded[T] {
	if _, busy := c.refreshing.LoadOrStore(f.rkey, struct{}{}); busy {
		return nil
	}
	ch := make(chan *loaded[T], 1)
	detached := context.WithoutCancel(ctx)
	if !c.m.goTracked(func() {
		r, outcome := c.refreshOnce(detached, f, load, w)
		// The key is free for the next refresh before the outcome is
		// counted: whoever sees the count may start one.
		c.refreshing.Delete(f.rkey)
		outcome.Add(1)
		ch <- r
	}) {
		c.refreshing.Delete(f.rkey)
		return nil
	}
	return ch
}

// refreshOnce runs one refresh of f and returns its result and the counter
// of its outcome, for the caller to count once the key is free again.
func (c *Cache[T]) refreshOnce(ctx context.Context, f found, load func(context.Context) (T, error), w writeConfig) (*loaded[T], *atomic.Uint64) {
	var none atomic.Uint64 // outcomes not counted
	st := storeRequest{key: f.key, version: c.localVersionOrEmpty(), rkey: f.rkey, start: c.m.now(), replace: sha1hex(f.raw), refresh: true}
	token := rand.Text()
	cmd, err := c.m.runScript(ctx, refreshClaimArgs{key: f.rkey, token: token, leaseMS: millis0(c.swr.lease),
		staleSHA1: st.replace, newMarker: rand.Text(), markerTTLMS: millis(c.m.markerTTL()), deadlineMS: c.claimDeadline()})
	if err != nil {
		return nil, &none
	}
	vals, _ := cmd.Val().([]any)
	if len(vals) < 2 {
		return nil, &none
	}
	if code, _ := vals[0].(int64); code != 1 || len(vals) != 3 {
		return nil, &c.stats.refreshesElsewhere
	}
	st.marker, _ = vals[1].(string)
	st.serverUS, _ = vals[2].(int64)
	st.markerOK, st.markerAt = true, monotonic()
	if c.swr.lease > 0 {
		st.token = token
	}
	c.stats.refreshes.Add(1)
	entry := &Entry{}
	v, took, err := c.callLoader(ctx, entry, load)
	r := c.store(ctx, st, v, took, err, entry, w, nil)
	if r.err != nil && !errors.Is(r.err, ErrNotFound) {
		c.m.logError("refresh failed; serving the stale value", r.err, "key", f.rkey)
		return r, &c.stats.refreshErrors
	}
	return r, &none
}

// millis0 is millis for durations where 0 means "off" and stays 0.
func millis0(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return millis(d)
}
