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
		items[j].st = b.request(sts, k)
	}
	results := c.storeAll(wctx, items, w, false, nil)
	out := make(map[string]*loaded[T], len(items))
	for j, k := range b.missing {
		out[k] = results[j]
	}
	return out
}

// request returns the store request of missing key k: its claim's in
// sts, else one that writes nothing, as the key was not claimed.
func (b *batch) request(sts map[string]storeRequest, k string) storeRequest {
	if st, ok := sts[k]; ok {
		return st
	}
	return storeRequest{key: k, start: b.start}
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
	sts := map[string]storeRequest{}
	ep, epOK := epochOf(epoch)
	for j, cmd := range cmds {
		k := b.missing[j]
		// A value that arrived since the read is left alone: the write-back
		// of this load does not replace it (SET NX).
		m, us, ok := claimReply(cmd)
		if !ok {
			continue
		}
		sts[k] = storeRequest{key: k, version: b.ver, rkey: rkeyOf[k], start: b.start, marker: m, markerOK: true,
			markerAt: at, tags: tags, epoch: ep, epochOK: epOK, serverUS: us}
	}
	shareEarliestStamp(sts)
	return sts, nil
}

// shareEarliestStamp gives every request the server's time of the
// earliest claim (0: none known), the batch's tag stamp.
func shareEarliestStamp(sts map[string]storeRequest) {
	var first int64
	for _, st := range sts {
		if us := st.serverUS; us > 0 && (first == 0 || us < first) {
			first = us
		}
	}
	for k, st := range sts {
		st.serverUS = first
		sts[k] = st
	}
}

// claimReply returns the marker and the server's time (Unix
// microseconds) of a claim script's reply, or false when the reply is not
// a claim's.
func claimReply(cmd redis.Cmder) (marker string, serverUS int64, ok bool) {
	vals, ok := cmd.(*redis.Cmd).Val().([]any)
	if !ok || len(vals) != 4 {
		return "", 0, false
	}
	marker, ok = vals[1].(string)
	serverUS, _ = vals[3].(int64)
	return marker, serverUS, ok
}

// readMany reads keys, filling vals and errs for L1 hits. It returns the
// raw replies by index and the data keys.
func (c *Cache[T]) readMany(ctx context.Context, keyList []string, vals []T, errs []error, warm bool) ([]any, []string, string, error) {
	for _, k := range keyList {
		c.awaitWriteBack(ctx, k)
	}
	ver, err := c.readVersion(ctx)
	if err != nil {
		return nil, nil, "", err
	}
	raws := make([]any, len(keyList))
	rkeys := make([]string, len(keyList))
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
			ver, again, err = c.observed(ctx, ver, getVer.Val(), getVer.Err())
			switch {
			case err != nil:
				return nil, nil, "", err
			case again && attempt < maxVersionRetries:
				continue
			case again:
				// Still moving: nothing read under an older version may be
				// returned. Every key is a miss under the newest.
				c.missAllAt(ver, keyList, rkeys, raws, vals, errs)
				return raws, rkeys, ver, nil
			}
			cmds = cmds[1:]
		}
		placeReplies(raws, idx, cmds, mget)
		return raws, rkeys, ver, nil
	}
}

// readVersion checks that a read may start, and returns the namespace
// version it reads under ("" for a cache that is not versioned).
func (c *Cache[T]) readVersion(ctx context.Context) (string, error) {
	switch {
	case c.m.done.Load():
		return "", ErrClosed
	case ctx.Err() != nil:
		return "", context.Cause(ctx)
	case !c.versioned:
		return "", nil
	}
	return c.localVersion(ctx)
}

// missAllAt makes every key of keyList a miss under version ver.
func (c *Cache[T]) missAllAt(ver string, keyList, rkeys []string, raws []any, vals []T, errs []error) {
	var zero T
	for i, k := range keyList {
		rkeys[i], raws[i], vals[i], errs[i] = c.keys.KeyAt(ver, k), nil, zero, nil
	}
}

// placeReplies puts the replies of the reads of the keys at idx (see
// readCmds) in raws, by index.
func placeReplies(raws []any, idx []int, cmds []redis.Cmder, mget *redis.SliceCmd) {
	for j, i := range idx {
		if mget != nil {
			raws[i] = mget.Val()[j]
		} else {
			raws[i] = cmds[j]
		}
	}
}

// fromL1 sets the data keys of keyList under version ver and answers
// from the L1 tier what it can (a warm read counts no hit). It returns the
// indexes of the keys left to read from Redis.
func (c *Cache[T]) fromL1(ctx context.Context, keyList []string, ver string, rkeys []string, raws []any, vals []T, errs []error, warm bool) []int {
	idx := make([]int, 0, len(keyList))
	trusted := c.l1 != nil && c.m.l1Trusted.Load()
	var now int64
	if trusted {
		now = c.l1.now()
	}
	for i, k := range keyList {
		rkeys[i] = c.keys.Key(k)
		if c.versioned {
			rkeys[i] = c.keys.KeyAt(ver, k)
		}
		if trusted && c.fromL1One(ctx, k, ver, now, &vals[i], &errs[i], warm) {
			raws[i] = l1Marker{}
			continue
		}
		idx = append(idx, i)
	}
	return idx
}

// fromL1One answers key from the L1 tier, under version ver at now (Unix
// nanoseconds), into *val and *err, and reports whether it could.
func (c *Cache[T]) fromL1One(ctx context.Context, key, ver string, now int64, val *T, err *error, warm bool) bool {
	e, ok := c.l1.get(key, now)
	if !ok || e.version != ver || c.m.covering(c.name, key, e.tags) {
		return false
	}
	v, ok := c.l1Value(e)
	if !ok {
		return false
	}
	if !warm {
		c.hitL1(ctx)
	}
	*val = v
	if e.negative {
		*err = ErrNotFound
	}
	return true
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
	d := manyDecode[T]{c: c, ctx: ctx, fill: fill, keys: keyList, rkeys: rkeys, ver: ver, vals: vals, errs: errs, warm: warm}
	var pending []taggedReply
	for i, r := range raws {
		if t, ok := d.reply(i, r); ok {
			pending = append(pending, t)
		}
	}
	if len(pending) > 0 {
		d.checkTags(pending)
	}
}

// manyDecode is one decodeMany: the keys read, their data keys, the
// version read, and the values and errors it fills, by index.
type manyDecode[T any] struct {
	c           *Cache[T]
	ctx         context.Context
	fill        uint64
	keys, rkeys []string
	ver         string
	vals        []T
	errs        []error
	warm        bool
}

// taggedReply is a decoded reply whose tags are still to check.
type taggedReply struct {
	i  int
	ti tagInfo
	s  string
	h  envelope.Header
}

// reply decodes reply r of key i. It returns the reply when its tags are
// to be checked before it counts as a hit.
func (d *manyDecode[T]) reply(i int, r any) (taggedReply, bool) {
	c := d.c
	s, ok := rawString(r)
	if _, l1 := r.(l1Marker); l1 {
		return taggedReply{}, false
	}
	if !ok {
		c.missedIf(d.ctx, !d.warm)
		d.errs[i] = ErrMiss
		return taggedReply{}, false
	}
	h, ti, err := c.m.decode(unsafe.Slice(unsafe.StringData(s), len(s)), c.codec, c.shape, &d.vals[i])
	switch {
	case err == nil && c.m.covering(c.name, d.keys[i], ti.tags):
		// An invalidation of it has not reached Redis yet: what Redis
		// holds may be what it retires.
		c.missedIf(d.ctx, !d.warm)
		d.miss(i, errPendingMiss)
	case err != nil:
		d.miss(i, c.unusable(d.ctx, d.rkeys[i], s, err, !d.warm))
	case len(ti.tags) > 0:
		return taggedReply{i, ti, s, h}, true
	default:
		c.hitMany(d.ctx, d.fill, d.keys[i], d.ver, s, h, ti, d.errs, i, d.warm)
	}
	return taggedReply{}, false
}

// miss clears the value of key i and sets its error.
func (d *manyDecode[T]) miss(i int, err error) {
	var zero T
	d.vals[i], d.errs[i] = zero, err
}

// checkTags reads the stamps of the tags of pending in one round trip, and
// counts each reply a hit when none of its tags was invalidated since it
// was stored.
func (d *manyDecode[T]) checkTags(pending []taggedReply) {
	c := d.c
	stamps, cmds := d.stampReads(pending)
	err := c.m.doAll(d.ctx, cmds...)
	for _, p := range pending {
		switch {
		case err == nil && tagsValid(stamps, p.ti):
			c.hitMany(d.ctx, d.fill, d.keys[p.i], d.ver, p.s, p.h, p.ti, d.errs, p.i, d.warm)
		case err != nil:
			c.missedIf(d.ctx, !d.warm)
			d.miss(p.i, fmt.Errorf("%w: %w", ErrMiss, err))
		default:
			d.miss(p.i, c.unusable(d.ctx, d.rkeys[p.i], p.s, errInvalidated, !d.warm))
		}
	}
}

// stampReads returns a GET of the stamp of each distinct tag of pending,
// by tag and in the order to send them.
func (d *manyDecode[T]) stampReads(pending []taggedReply) (map[string]*redis.StringCmd, []redis.Cmder) {
	stamps := map[string]*redis.StringCmd{}
	var cmds []redis.Cmder
	for _, p := range pending {
		for _, t := range p.ti.tags {
			if stamps[t] == nil {
				stamps[t] = redis.NewStringCmd(d.ctx, "get", d.c.m.tagKey(t))
				cmds = append(cmds, stamps[t])
			}
		}
	}
	return stamps, cmds
}

// tagsValid reports whether every tag of ti was last invalidated before
// the entry's stamp, by stamps read.
func tagsValid(stamps map[string]*redis.StringCmd, ti tagInfo) bool {
	for _, t := range ti.tags {
		if !stampOlder(stamps[t], ti.stamp) {
			return false
		}
	}
	return true
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
