package cachemgr

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/cachemgr/cachemgr/internal/envelope"
	"github.com/cachemgr/cachemgr/internal/transport"
	"github.com/redis/go-redis/v9"
)

// Loading and storing have one path, shared by Fetch, refreshes,
// FetchMany and Warm: a load by key is a batch of one. runLoader calls the
// loader; storeAll turns what it returned into what the callers get and
// writes back, in one round trip, what may be written.

// item is one key's result of a loader call, on its way to Redis.
type item[T any] struct {
	st    storeRequest
	val   T
	err   error  // the loader's, for this key: ErrNotFound caches a negative entry
	entry *Entry // the call's: shared by the keys of a batch loader's call
	took  time.Duration
}

// callLoader runs a loader by key (see runLoader).
func (c *Cache[T]) callLoader(ctx context.Context, entry *Entry, load func(context.Context) (T, error)) (T, time.Duration, error) {
	return runLoader(c, ctx, entry, false, load)
}

// store writes back the result of a load by key when st allows, releasing
// the lease. It returns what the flight's callers get. then, when set, runs
// once the write-back has settled; with the cache's write-behind on
// (WithWriteBehind) the write-back then leaves the caller's path: it runs
// on a goroutine the Manager tracks and the result's settled channel closes
// when it has landed or failed. Otherwise store returns once it has.
func (c *Cache[T]) store(ctx context.Context, st storeRequest, v T, took time.Duration, err error, entry *Entry, w writeConfig, then func([]*loaded[T])) *loaded[T] {
	return c.storeAll(ctx, []item[T]{{st: st, val: v, err: err, entry: entry, took: took}}, w, true, then)[0]
}

// write is an item on its way to Redis: its envelope, tags and commands.
type write struct {
	i   int // the item's index
	buf *[]byte
	h   envelope.Header
	ti  tagInfo
	tw  []redis.Cmder // its tag stamps' writes
	wb  *redis.Cmd
}

// storeAll encodes the results of one load (a batch loader's call, or a
// loader by key's calls for a chunk of keys) and writes back, in one round
// trip, those whose st allows it and that the loader did not keep out
// (Entry.DoNotCache). The items share their start and the server time of
// their claim, which stamps their tags. It returns one result per item;
// single is a load by key; then, when set, runs once the write-back has
// settled, which with write-behind is after storeAll returns (see store).
func (c *Cache[T]) storeAll(ctx context.Context, items []item[T], w writeConfig, single bool, then func([]*loaded[T])) []*loaded[T] {
	out := make([]*loaded[T], len(items))
	var writes []write
	for i := range items {
		r, wr := c.prepare(ctx, &items[i], w, single)
		out[i] = r
		if wr != nil {
			wr.i = i
			writes = append(writes, *wr)
		}
	}
	finish := func() {
		if len(writes) > 0 {
			c.writeBack(ctx, items, writes, out)
		}
		for _, wr := range writes {
			c.releaseBuf(wr.buf)
		}
	}
	if then == nil || len(writes) == 0 || !c.writeBehind {
		finish()
		if then != nil {
			then(out)
		}
		return out
	}
	settled := make(chan struct{})
	for _, wr := range writes {
		out[wr.i].settled = settled
	}
	async := func() {
		finish()
		close(settled)
		then(out)
	}
	if !c.m.goWrite(async) {
		async() // closed: writeBack meets ErrClosed at once
	}
	return out
}

// prepare turns one item into its callers' result and, when it is to be
// written back, its write; the lease is released here when nothing will be
// written.
func (c *Cache[T]) prepare(ctx context.Context, it *item[T], w writeConfig, single bool) (*loaded[T], *write) {
	st := it.st
	notFound := errors.Is(it.err, ErrNotFound)
	if it.err != nil && !notFound || notFound && c.ttl.negativeTTL == 0 {
		if st.token != "" && !st.refresh {
			// Waiting processes may try themselves now. A failed refresh
			// keeps its lease until it expires: a back-off for a sick source.
			c.release(ctx, st)
		}
		return &loaded[T]{err: it.err, began: st.began}, nil
	}
	ttl, tags, err := it.entry.get()
	fresh, stale := firstSet(ttl, w.ttl, c.ttl.ttl), c.swr.stale
	if notFound {
		fresh, stale = c.ttl.negativeTTL, 0
	}
	ti := tagInfo{stamp: c.loadStamp(st.serverUS, st.start)}
	if err == nil {
		ti.tags, err = checkTags(append(slices.Clip(tags), w.tags...))
	}
	exp := c.ttl.expiry(fresh, c.m.random())
	h := envelope.Header{FreshUntil: c.m.now().Add(exp).UnixMilli(), Load: it.took, Shape: c.shape}
	var buf *[]byte
	switch {
	case err != nil:
	case notFound:
		buf = c.m.encodeNegative(c.codec, h, ti)
	default:
		buf, err = c.m.encode(c.codec, &it.val, h, ti)
	}
	if err != nil {
		c.stats.writeErrors.Add(1)
		c.m.logError("loaded value not cached", err, "key", st.rkey)
		c.release(ctx, st)
		return &loaded[T]{val: it.val, err: it.err, began: st.began}, nil
	}
	res := &loaded[T]{val: it.val, enc: append([]byte(nil), *buf...), err: it.err, began: st.began}
	// A write that would land after the marker could have expired is
	// skipped: it could undo a Delete that happened during the load.
	if !it.entry.cacheable(st.key, single) || !st.markerOK || time.Since(st.markerAt) >= c.m.loadTimeout+c.m.opTimeout {
		c.release(ctx, st)
		c.releaseBuf(buf)
		return res, nil
	}
	c.m.noteLifetime(exp + stale)
	h.Negative = notFound
	wb := writeBackArgs{key: st.rkey, marker: st.marker, value: *buf, ttlMS: millis(exp + stale),
		token: st.token, staleSHA1: st.replace, channel: c.m.ev.channel}.cmd(ctx)
	return res, &write{buf: buf, h: h, ti: ti, tw: c.m.tagWrites(ctx, ti, exp, true), wb: wb}
}

// writeBack sends writes, with the tag stamps they need, the namespace
// version check and the tag epoch, in one round trip, and settles each
// item's result: readable (and kept in the L1 tier) or overtaken by an
// invalidation.
func (c *Cache[T]) writeBack(ctx context.Context, items []item[T], writes []write, out []*loaded[T]) {
	checked := monotonic()
	fill := c.l1Token()
	var cmds []redis.Cmder
	tagged := false
	for _, wr := range writes {
		cmds = append(append(cmds, wr.tw...), wr.wb)
		tagged = tagged || len(wr.tw) > 0
	}
	vc := c.versionCheck(ctx)
	cmds = withCheck(cmds, vc)
	epoch := c.m.tagEpoch(ctx)
	if tagged {
		cmds = append(cmds, epoch)
	}
	// The write-back is a write: a breaker that read timeouts opened does
	// not stop it (the marker guards it), and it is bounded by the op
	// timeout, as its waiting callers are.
	err := c.m.doAllWith(ctx, transport.Policy{Timeout: c.m.opTimeout, Write: true}, cmds...)
	// A Bump retired the namespace written to: callers that joined late
	// take the next flight, which reads what is current.
	moved := err == nil && versionMoved(vc, items[writes[0].i].st.version)
	for _, wr := range writes {
		st, res := items[wr.i].st, out[wr.i]
		werr := err
		if werr == nil {
			werr = wr.wb.Err()
		}
		switch {
		case werr == nil:
			res.checked = checked
			// -1: an invalidation ran during the load; 0: a newer value (a
			// Set, another process's load) arrived. Either way callers
			// that joined late take the next flight.
			res.stale = wr.wb.Val() != int64(1) || moved ||
				len(wr.tw) > 0 && !c.m.settleTags(ctx, wr.ti, wr.tw, st.epoch, st.epochOK, epoch)
			if cur, ok := wr.wb.Val().([]any); ok && len(cur) == 2 && !moved {
				// The key holds a value it did not write (a Set, another
				// process's load): what a read at checked would have found,
				// for late joiners (see current).
				res.current, _ = cur[1].(string)
			}
			if !res.stale {
				c.fillL1(fill, st.key, st.version, string(res.enc), wr.h, wr.ti)
			}
		case !errors.Is(werr, ErrClosed):
			c.stats.writeErrors.Add(1)
			c.m.logError("write back loaded value", werr, "key", st.rkey)
			if st.token != "" && !isReply(werr) {
				// The write-back, which releases the lease, may not have
				// run: release it once Redis answers, or others wait it out.
				c.releaseLater(st.rkey, st.token)
			}
		}
	}
}
