package cachemgr

import (
	"context"
	"errors"
	"fmt"
	"unsafe"

	"github.com/cachemgr/cachemgr/internal/envelope"
	"github.com/redis/go-redis/v9"
)

// GetMany reads keys in one round trip (one MGET on a single node, one
// pipelined batch per node on Cluster and Ring) and returns their values in
// the caller's order, with one error per key: nil for a hit, ErrMiss or
// ErrNotFound. Tagged entries cost one more round trip for all their tags
// together. The last result is set only when the read as a whole failed
// (ErrUnavailable, ErrClosed, the caller's ctx).
func (c *Cache[T]) GetMany(ctx context.Context, keys []string) ([]T, []error, error) {
	vals := make([]T, len(keys))
	errs := make([]error, len(keys))
	fill := c.l1Token()
	raws, rkeys, ver, err := c.readMany(ctx, keys, vals, errs)
	if err != nil {
		return vals, errs, fmt.Errorf("get many: %w", err)
	}
	c.decodeMany(ctx, fill, keys, rkeys, ver, raws, vals, errs)
	return vals, errs, nil
}

// FetchMany is Fetch for many keys: it reads them in one round trip, calls
// loadMany once with exactly the keys that missed, and writes the loaded
// values back in one more. Keys that loadMany leaves out of its map are
// not found: they get ErrNotFound and a negative entry. A loadMany error
// fails every missing key (hits are still returned). Results keep the
// caller's order. As with Fetch, a Delete or InvalidateTags that runs during
// the load keeps its results out of Redis; unlike Fetch, concurrent
// FetchManys of the same keys do not share loads, and there is no
// cross-process lease. When Redis is unavailable every key is loaded.
func (c *Cache[T]) FetchMany(ctx context.Context, keys []string, loadMany func(ctx context.Context, missing []string) (map[string]T, error), opts ...WriteOption) ([]T, []error, error) {
	vals := make([]T, len(keys))
	errs := make([]error, len(keys))
	if loadMany == nil {
		return vals, errs, ErrNilLoader
	}
	w, err := writeOptions(opts)
	if err != nil {
		return vals, errs, fmt.Errorf("fetch many: %w", err)
	}
	start := c.m.now()
	fill := c.l1Token()
	raws, rkeys, ver, rerr := c.readMany(ctx, keys, vals, errs)
	switch {
	case errors.Is(rerr, ErrClosed), ctx.Err() != nil:
		return vals, errs, fmt.Errorf("fetch many: %w", rerr)
	case rerr == nil:
		c.decodeMany(ctx, fill, keys, rkeys, ver, raws, vals, errs)
	default:
		for i := range errs {
			errs[i] = ErrMiss
		}
	}
	var missing []string
	var at []int
	seen := map[string]bool{}
	for i, e := range errs {
		if errors.Is(e, ErrMiss) && !seen[keys[i]] {
			seen[keys[i]] = true
			missing = append(missing, keys[i])
		}
		if errors.Is(e, ErrMiss) {
			at = append(at, i)
		}
	}
	if len(missing) == 0 {
		return vals, errs, nil
	}
	var markers map[string]string
	var serverUS int64
	if rerr == nil {
		markers, serverUS = c.claimMany(ctx, missing, rkeys, keys, w.tags)
	}
	loaded, lerr := c.callLoadMany(ctx, missing, loadMany)
	c.m.stats.loads.Add(1)
	if lerr != nil {
		c.m.stats.loadErrors.Add(1)
		for _, i := range at {
			errs[i] = lerr
		}
		return vals, errs, nil
	}
	for _, i := range at {
		if v, ok := loaded[keys[i]]; ok {
			vals[i], errs[i] = v, nil
		} else {
			errs[i] = ErrNotFound
		}
	}
	if markers != nil {
		c.storeMany(ctx, missing, markers, loaded, c.loadStamp(serverUS, start), ver, w)
	}
	return vals, errs, nil
}

// claimMany reads (creating them if absent) the invalidation markers of
// the missing keys, in one round trip, before their load. It returns the
// marker of each key by its data key, or nil if Redis did not answer.
func (c *Cache[T]) claimMany(ctx context.Context, missing, rkeys, keyList []string, tags []string) (map[string]string, int64) {
	rkeyOf := map[string]string{}
	for i, k := range keyList {
		rkeyOf[k] = rkeys[i]
	}
	cmds := make([]redis.Cmder, len(missing))
	for j, k := range missing {
		rkey := rkeyOf[k]
		cmds[j] = claimArgs{key: rkey, newMarker: claimProposal(), markerTTLMS: millis(c.m.markerTTL())}.cmd(ctx)
	}
	prep, _ := c.m.tagPrepares(ctx, tags)
	if err := c.m.doAll(ctx, append(prep, cmds...)...); err != nil {
		return nil, 0
	}
	var serverUS int64 // the earliest claim's: the batch's tag stamp
	markers := map[string]string{}
	for j, cmd := range cmds {
		// A value that arrived since the read is left alone: the write-back
		// of this load does not replace it (SET NX).
		if vals, ok := cmd.(*redis.Cmd).Val().([]any); ok && len(vals) == 4 {
			if m, ok := vals[1].(string); ok {
				markers[rkeyOf[missing[j]]] = m
			}
			if at, _ := vals[3].(int64); at > 0 && (serverUS == 0 || at < serverUS) {
				serverUS = at
			}
		}
	}
	return markers, serverUS
}

// readMany reads keys, filling vals and errs for L1 hits. It returns the
// raw replies by index and the data keys.
func (c *Cache[T]) readMany(ctx context.Context, keyList []string, vals []T, errs []error) ([]any, []string, string, error) {
	if c.m.done.Load() {
		return nil, nil, "", ErrClosed
	}
	if ctx.Err() != nil {
		return nil, nil, "", context.Cause(ctx)
	}
	raws := make([]any, len(keyList))
	rkeys := make([]string, len(keyList))
	var ver string
	if c.versioned {
		var err error
		if ver, err = c.localVersion(ctx); err != nil {
			return nil, nil, "", err
		}
	}
	for attempt := 0; ; attempt++ {
		var cmds []redis.Cmder
		var getVer *redis.StringCmd
		if c.versioned {
			getVer = redis.NewStringCmd(ctx, "get", c.keys.Version())
			cmds = append(cmds, getVer)
		}
		idx := make([]int, 0, len(keyList)) // cmds[len(cmds)-len(idx)+j] reads keyList[idx[j]]
		now := c.m.now().UnixNano()
		for i, k := range keyList {
			rkeys[i] = c.keys.Key(k)
			if c.versioned {
				rkeys[i] = c.keys.KeyAt(ver, k)
			}
			if c.l1 != nil && c.m.l1Trusted.Load() {
				if e, ok := c.l1.get(k, now); ok && e.version == ver && !c.m.covering(c.name, k, e.tags) {
					if v, ok := c.l1Value(e); ok {
						c.hitL1(ctx)
						vals[i], raws[i] = v, l1Marker{}
						if e.negative {
							errs[i] = ErrNotFound
						}
						continue
					}
				}
			}
			idx = append(idx, i)
		}
		var mget *redis.SliceCmd
		switch {
		case len(idx) == 0:
		case c.m.single && !c.versioned:
			args := make([]any, 0, len(idx)+1)
			args = append(args, "mget")
			for _, i := range idx {
				args = append(args, rkeys[i])
			}
			mget = redis.NewSliceCmd(ctx, args...)
			cmds = append(cmds, mget)
		default:
			for _, i := range idx {
				cmds = append(cmds, redis.NewStringCmd(ctx, "get", rkeys[i]))
			}
		}
		if len(cmds) > 0 {
			if err := c.m.doAll(ctx, cmds...); err != nil {
				return nil, nil, "", err
			}
		}
		if c.versioned {
			var again bool
			var err error
			ver, again, err = c.observed(ctx, ver, getVer.Val(), getVer.Err())
			switch {
			case err != nil:
				return nil, nil, "", err
			case again && attempt < maxVersionRetries:
				continue
			case again:
				// Still moving: nothing read under an older version may be
				// returned. Every key is a miss under the newest.
				var zero T
				for i, k := range keyList {
					rkeys[i], raws[i], vals[i], errs[i] = c.keys.KeyAt(ver, k), nil, zero, nil
				}
				return raws, rkeys, ver, nil
			}
			cmds = cmds[1:]
		}
		for j, i := range idx {
			switch {
			case mget != nil:
				raws[i] = mget.Val()[j]
			default:
				raws[i] = cmds[j]
			}
		}
		return raws, rkeys, ver, nil
	}
}

// l1Marker marks a raw reply slot already answered by the L1 tier.
type l1Marker struct{}

// decodeMany turns the replies of readMany into values and per-key errors,
// checking all tags of tagged entries in one round trip.
func (c *Cache[T]) decodeMany(ctx context.Context, fill uint64, keyList, rkeys []string, ver string, raws []any, vals []T, errs []error) {
	type tagged struct {
		i  int
		ti tagInfo
		s  string
		h  envelope.Header
	}
	var pending []tagged
	for i, r := range raws {
		s, ok := rawString(r)
		if _, l1 := r.(l1Marker); l1 {
			continue
		}
		if !ok {
			c.missed(ctx)
			errs[i] = ErrMiss
			continue
		}
		h, ti, err := c.m.decode(unsafe.Slice(unsafe.StringData(s), len(s)), c.codec, c.shape, &vals[i])
		if err == nil && c.m.covering(c.name, keyList[i], ti.tags) {
			// An invalidation of it has not reached Redis yet: what Redis
			// holds may be what it retires.
			var zero T
			c.missed(ctx)
			vals[i], errs[i] = zero, errPendingMiss
			continue
		}
		if err != nil {
			var zero T
			vals[i], errs[i] = zero, c.unusable(ctx, rkeys[i], s, err)
			continue
		}
		if len(ti.tags) > 0 {
			pending = append(pending, tagged{i, ti, s, h})
			continue
		}
		c.hitMany(ctx, fill, keyList[i], ver, s, h, ti, errs, i)
	}
	if len(pending) == 0 {
		return
	}
	stamps := map[string]*redis.StringCmd{}
	var cmds []redis.Cmder
	for _, p := range pending {
		for _, t := range p.ti.tags {
			if stamps[t] == nil {
				stamps[t] = redis.NewStringCmd(ctx, "get", c.m.tagKey(t))
				cmds = append(cmds, stamps[t])
			}
		}
	}
	err := c.m.doAll(ctx, cmds...)
	for _, p := range pending {
		valid := err == nil
		for _, t := range p.ti.tags {
			if !valid {
				break
			}
			valid = stampOlder(stamps[t], p.ti.stamp)
		}
		if valid {
			c.hitMany(ctx, fill, keyList[p.i], ver, p.s, p.h, p.ti, errs, p.i)
			continue
		}
		var zero T
		vals[p.i] = zero
		if err != nil {
			c.missed(ctx)
			errs[p.i] = fmt.Errorf("%w: %w", ErrMiss, err)
			continue
		}
		errs[p.i] = c.unusable(ctx, rkeys[p.i], p.s, errInvalidated)
	}
}

// hitMany records a usable value read by a batch.
func (c *Cache[T]) hitMany(ctx context.Context, fill uint64, key, version, s string, h envelope.Header, ti tagInfo, errs []error, i int) {
	c.hit(ctx, fill, key, version, s, h, ti)
	if h.Negative {
		errs[i] = ErrNotFound
	}
}

// rawString extracts a stored value from a batch reply: an MGET element or
// a GET command.
func rawString(r any) (string, bool) {
	switch r := r.(type) {
	case string:
		return r, true
	case *redis.StringCmd:
		s, err := r.Result()
		return s, err == nil
	}
	return "", false
}

// callLoadMany runs loadMany like callLoader runs a loader.
func (c *Cache[T]) callLoadMany(ctx context.Context, missing []string, loadMany func(context.Context, []string) (map[string]T, error)) (out map[string]T, err error) {
	ctx = context.WithoutCancel(ctx)
	if c.m.obs != nil {
		var end func(error)
		ctx, end = c.m.obs.Load(ctx, c.name)
		defer func() { end(err) }()
	}
	ctx, cancel := context.WithTimeout(ctx, c.m.loadTimeout)
	defer cancel()
	stop := context.AfterFunc(c.m.ctx, cancel)
	defer stop()
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %v", ErrLoaderPanic, r)
		}
	}()
	return loadMany(ctx, missing)
}

// storeMany writes the results of a batch load back in one pipeline, each
// only if its key's marker is unchanged since the claim.
func (c *Cache[T]) storeMany(ctx context.Context, missing []string, markers map[string]string, loaded map[string]T, stamp int64, ver string, w writeConfig) {
	ti := tagInfo{stamp: stamp}
	ti.tags, _ = checkTags(w.tags)
	var cmds []redis.Cmder
	var bufs []*[]byte
	for _, k := range missing {
		rkey := c.keys.Key(k)
		if c.versioned {
			rkey = c.keys.KeyAt(ver, k)
		}
		marker, ok := markers[rkey]
		if !ok {
			continue
		}
		v, found := loaded[k]
		fresh, stale := firstSet(w.ttl, c.ttl.ttl), c.swr.stale
		if !found {
			if c.ttl.negativeTTL == 0 {
				continue
			}
			fresh, stale = c.ttl.negativeTTL, 0
		}
		exp := c.ttl.expiry(fresh, c.m.random())
		c.m.noteLifetime(exp + stale)
		h := envelope.Header{FreshUntil: c.m.now().Add(exp).UnixMilli(), Shape: c.shape}
		var buf *[]byte
		if found {
			var err error
			if buf, err = c.m.encode(c.codec, &v, h, ti); err != nil {
				c.m.stats.writeErrors.Add(1)
				continue
			}
		} else {
			buf = c.m.encodeNegative(c.codec, h, ti)
		}
		bufs = append(bufs, buf)
		cmds = append(cmds, c.m.tagWrites(ctx, ti, exp, true)...)
		cmds = append(cmds, writeBackArgs{key: rkey, marker: marker, value: *buf, ttlMS: millis(exp + stale)}.cmd(ctx))
	}
	if len(cmds) > 0 {
		if err := c.m.doAll(ctx, cmds...); err != nil && !errors.Is(err, ErrClosed) {
			c.m.stats.writeErrors.Add(1)
			c.m.logError("write back batch", err)
		}
	}
	for _, b := range bufs {
		c.releaseBuf(b)
	}
}
