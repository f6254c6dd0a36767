package cachemgr

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"time"
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
	raws, rkeys, ver, err := c.readMany(ctx, keys, vals, errs, false)
	if err != nil {
		return vals, errs, fmt.Errorf("get many: %w", err)
	}
	c.decodeMany(ctx, fill, keys, rkeys, ver, raws, vals, errs, false)
	return vals, errs, nil
}

// FetchMany is Fetch for many keys: it reads them in one round trip, calls
// loadMany once with exactly the keys that missed, and writes the loaded
// values back in one more. Keys that loadMany leaves out of its map are
// not found: they get ErrNotFound and a negative entry. A loadMany error
// fails every missing key (hits are still returned). Results keep the
// caller's order. loadMany gets an Entry (EntryFrom): its TTL and tags
// apply to every key it loads, and DoNotCache keeps some or all of them out
// of the cache. As with Fetch, a Delete or InvalidateTags that runs during
// the load keeps its results out of Redis; unlike Fetch, concurrent
// FetchManys of the same keys do not share loads, and there is no
// cross-process lease. When Redis is unavailable every key is loaded.
func (c *Cache[T]) FetchMany(ctx context.Context, keys []string, loadMany func(ctx context.Context, missing []string) (map[string]T, error), opts ...WriteOption) ([]T, []error, error) {
	if loadMany == nil {
		return make([]T, len(keys)), make([]error, len(keys)), ErrNilLoader
	}
	return c.fetchMany(ctx, keys, batchOf(loadMany), opts)
}

// fetchMany is FetchMany with any batch loader.
func (c *Cache[T]) fetchMany(ctx context.Context, keys []string, load manyLoad[T], opts []WriteOption) ([]T, []error, error) {
	vals := make([]T, len(keys))
	errs := make([]error, len(keys))
	w, err := writeOptions(opts)
	if err != nil {
		return vals, errs, fmt.Errorf("fetch many: %w", err)
	}
	b, err := c.readBatch(ctx, keys, vals, errs, false)
	if err != nil && (errors.Is(err, ErrClosed) || ctx.Err() != nil) {
		return vals, errs, fmt.Errorf("fetch many: %w", err)
	}
	if len(b.missing) == 0 {
		return vals, errs, nil
	}
	results := c.loadBatch(context.WithoutCancel(ctx), b, load, w, false)
	for _, i := range b.at {
		r := results[keys[i]]
		vals[i], errs[i] = r.val, r.err
	}
	return vals, errs, nil
}

// batch is what a batch read found: the keys to load.
type batch struct {
	keys    []string
	rkeys   []string // the data keys, by index of keys
	ver     string   // the namespace version read
	missing []string // the distinct keys that missed, in order
	at      []int    // every index of keys that missed
	redisOK bool     // the read reached Redis: claims and writes may too
	start   time.Time
}

// readBatch reads keys in one round trip, filling vals and errs for those
// that hit, and returns those to load. When Redis could not be read every
// key is to load, and the error says why; a warm read counts no hit or
// miss.
func (c *Cache[T]) readBatch(ctx context.Context, keys []string, vals []T, errs []error, warm bool) (batch, error) {
	b := batch{keys: keys, start: c.m.now()}
	fill := c.l1Token()
	raws, rkeys, ver, err := c.readMany(ctx, keys, vals, errs, warm)
	switch {
	case errors.Is(err, ErrClosed), ctx.Err() != nil:
		return b, err
	case err == nil:
		b.rkeys, b.ver, b.redisOK = rkeys, ver, true
		c.decodeMany(ctx, fill, keys, rkeys, ver, raws, vals, errs, warm)
	default:
		for i := range errs {
			errs[i] = ErrMiss
		}
	}
	seen := map[string]bool{}
	for i, e := range errs {
		if !errors.Is(e, ErrMiss) {
			continue
		}
		b.at = append(b.at, i)
		if !seen[keys[i]] {
			seen[keys[i]] = true
			b.missing = append(b.missing, keys[i])
		}
	}
	return b, err
}

// loadBatch claims the missing keys of b (when Redis answered the read),
// calls load once for them all and stores the results through storeAll. It
// returns each missing key's result. The loader's context ends with ctx;
// the claims and writes run to their end.
func (c *Cache[T]) loadBatch(ctx context.Context, b batch, load manyLoad[T], w writeConfig, warm bool) map[string]*loaded[T] {
	wctx := context.WithoutCancel(ctx)
	var sts map[string]storeRequest
	if b.redisOK {
		var err error
		if sts, err = c.claimMany(wctx, b, w.tags); err != nil && warm {
			// Warm loads only what it can store.
			out := make(map[string]*loaded[T], len(b.missing))
			for _, k := range b.missing {
				out[k] = &loaded[T]{err: err}
			}
			return out
		}
	}
	items := load(ctx, c, b.missing, warm)
	for j, k := range b.missing {
		st, ok := sts[k]
		if !ok {
			st = storeRequest{key: k, start: b.start} // not claimed: not written
		}
		items[j].st = st
	}
	results := c.storeAll(wctx, items, w, false)
	out := make(map[string]*loaded[T], len(items))
	for j, k := range b.missing {
		out[k] = results[j]
	}
	return out
}

// claimMany reads (creating them if absent) the invalidation markers of
// b's missing keys and the tag epoch, and prepares the stamps of tags, in
// one round trip, before their load. It returns the store request of each
// key whose marker it read, or the error of a round trip that failed. The requests
// share the batch's tag stamp: the server's time at the earliest claim.
func (c *Cache[T]) claimMany(ctx context.Context, b batch, tags []string) (map[string]storeRequest, error) {
	rkeyOf := map[string]string{}
	for i, k := range b.keys {
		rkeyOf[k] = b.rkeys[i]
	}
	cmds := make([]redis.Cmder, len(b.missing))
	for j, k := range b.missing {
		rkey := rkeyOf[k]
		cmds[j] = claimArgs{key: rkey, newMarker: rand.Text(), markerTTLMS: millis(c.m.markerTTL()), deadlineMS: c.claimDeadline()}.cmd(ctx)
	}
	prep, epoch := c.m.tagPrepares(ctx, tags)
	if err := c.m.doAll(ctx, append(prep, cmds...)...); err != nil {
		return nil, err
	}
	at := monotonic()
	var serverUS int64 // the earliest claim's: the batch's tag stamp
	sts := map[string]storeRequest{}
	ep, epOK := epochOf(epoch)
	for j, cmd := range cmds {
		k := b.missing[j]
		// A value that arrived since the read is left alone: the write-back
		// of this load does not replace it (SET NX).
		vals, ok := cmd.(*redis.Cmd).Val().([]any)
		if !ok || len(vals) != 4 {
			continue
		}
		m, ok := vals[1].(string)
		if !ok {
			continue
		}
		sts[k] = storeRequest{key: k, version: b.ver, rkey: rkeyOf[k], start: b.start, marker: m, markerOK: true,
			markerAt: at, tags: tags, epoch: ep, epochOK: epOK}
		if us, _ := vals[3].(int64); us > 0 && (serverUS == 0 || us < serverUS) {
			serverUS = us
		}
	}
	for k, st := range sts {
		st.serverUS = serverUS
		sts[k] = st
	}
	return sts, nil
}

// readMany reads keys, filling vals and errs for L1 hits. It returns the
// raw replies by index and the data keys.
func (c *Cache[T]) readMany(ctx context.Context, keyList []string, vals []T, errs []error, warm bool) ([]any, []string, string, error) {
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
		idx := c.fromL1(ctx, keyList, ver, rkeys, raws, vals, errs, warm)
		cmds, getVer, mget := c.readCmds(ctx, rkeys, idx)
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

// fromL1 sets the data keys of keyList under version ver and answers
// from the L1 tier what it can (a warm read counts no hit). It returns the
// indexes of the keys left to read from Redis.
func (c *Cache[T]) fromL1(ctx context.Context, keyList []string, ver string, rkeys []string, raws []any, vals []T, errs []error, warm bool) []int {
	idx := make([]int, 0, len(keyList))
	now := c.m.now().UnixNano()
	trusted := c.l1 != nil && c.m.l1Trusted.Load()
	for i, k := range keyList {
		rkeys[i] = c.keys.Key(k)
		if c.versioned {
			rkeys[i] = c.keys.KeyAt(ver, k)
		}
		if trusted {
			if e, ok := c.l1.get(k, now); ok && e.version == ver && !c.m.covering(c.name, k, e.tags) {
				if v, ok := c.l1Value(e); ok {
					if !warm {
						c.hitL1(ctx)
					}
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
	return idx
}

// readCmds returns the commands that read the keys of rkeys at idx (one
// MGET on a single node, one GET each otherwise), after the read of the
// namespace version on a versioned cache. Reply j of the keys is
// mget.Val()[j], or else cmds[len(cmds)-len(idx)+j].
func (c *Cache[T]) readCmds(ctx context.Context, rkeys []string, idx []int) ([]redis.Cmder, *redis.StringCmd, *redis.SliceCmd) {
	var cmds []redis.Cmder
	var getVer *redis.StringCmd
	if c.versioned {
		getVer = redis.NewStringCmd(ctx, "get", c.keys.Version())
		cmds = append(cmds, getVer)
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
	return cmds, getVer, mget
}

// l1Marker marks a raw reply slot already answered by the L1 tier.
type l1Marker struct{}

// decodeMany turns the replies of readMany into values and per-key errors,
// checking all tags of tagged entries in one round trip.
func (c *Cache[T]) decodeMany(ctx context.Context, fill uint64, keyList, rkeys []string, ver string, raws []any, vals []T, errs []error, warm bool) {
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
			c.missedIf(ctx, !warm)
			errs[i] = ErrMiss
			continue
		}
		h, ti, err := c.m.decode(unsafe.Slice(unsafe.StringData(s), len(s)), c.codec, c.shape, &vals[i])
		if err == nil && c.m.covering(c.name, keyList[i], ti.tags) {
			// An invalidation of it has not reached Redis yet: what Redis
			// holds may be what it retires.
			var zero T
			c.missedIf(ctx, !warm)
			vals[i], errs[i] = zero, errPendingMiss
			continue
		}
		if err != nil {
			var zero T
			vals[i], errs[i] = zero, c.unusable(ctx, rkeys[i], s, err, !warm)
			continue
		}
		if len(ti.tags) > 0 {
			pending = append(pending, tagged{i, ti, s, h})
			continue
		}
		c.hitMany(ctx, fill, keyList[i], ver, s, h, ti, errs, i, warm)
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
			c.hitMany(ctx, fill, keyList[p.i], ver, p.s, p.h, p.ti, errs, p.i, warm)
			continue
		}
		var zero T
		vals[p.i] = zero
		if err != nil {
			c.missedIf(ctx, !warm)
			errs[p.i] = fmt.Errorf("%w: %w", ErrMiss, err)
			continue
		}
		errs[p.i] = c.unusable(ctx, rkeys[p.i], p.s, errInvalidated, !warm)
	}
}

// hitMany records a usable value read by a batch; a warm read counts no
// hit.
func (c *Cache[T]) hitMany(ctx context.Context, fill uint64, key, version, s string, h envelope.Header, ti tagInfo, errs []error, i int, warm bool) {
	if warm {
		c.fillL1(fill, key, version, s, h, ti)
	} else {
		c.hit(ctx, fill, key, version, s, h, ti)
	}
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
