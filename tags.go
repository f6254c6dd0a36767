package cachemgr

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/cachemgr/cachemgr/internal/envelope"
	"github.com/cachemgr/cachemgr/internal/keys"
	"github.com/redis/go-redis/v9"
)

// Tags work by invalidation stamps, not member sets. InvalidateTags writes
// the time of the invalidation under each tag's stamp key, in O(1) per tag
// whatever the number of entries. A tagged entry records its tags and its
// own stamp (when its load began, less the clock-skew allowance, or when it
// was Set), and a read accepts it only while every tag's stamp is older.
// An absent stamp key (expired, evicted) makes its entries unreadable, so
// losing a stamp never brings stale data back. The price is a second round
// trip when reading a tagged entry, to fetch its tags' stamps.

// Tags attaches tags to the value of a Set or Fetch, so that
// Manager.InvalidateTags can invalidate it. Inside a loader,
// EntryFrom(ctx).AddTags adds tags known only after loading. At most 32
// tags of at most 1024 bytes each; empty tags are an error
// (ErrInvalidOption).
func Tags(tags ...string) WriteOption {
	return func(w *writeConfig) {
		w.tags = append(w.tags, tags...)
	}
}

// WithClockSkew sets how far apart the clocks that stamp tags may be. On a
// single node (or Sentinel), the Redis server's clock stamps both
// InvalidateTags and the loads and Sets it races, so no allowance is used.
// The nodes of a Cluster or Ring keep clocks of their own: there, a load or
// Set stamped less than this before an InvalidateTags counts as older than
// it, trading a few extra loads right after an invalidation for safety
// against the nodes' skew. Default: 250ms.
func WithClockSkew(d time.Duration) Option {
	return func(c *config) error {
		if d < 0 || d > time.Minute {
			return fmt.Errorf("%w: clock skew %v outside [0, 1m]", ErrInvalidOption, d)
		}
		c.skew = d
		return nil
	}
}

// checkTags validates and de-duplicates tags.
func checkTags(tags []string) ([]string, error) {
	if len(tags) == 0 {
		return nil, nil
	}
	tags = slices.Compact(slices.Sorted(slices.Values(tags)))
	if len(tags) > envelope.MaxTags {
		return nil, fmt.Errorf("%w: %d tags, limit %d", ErrInvalidOption, len(tags), envelope.MaxTags)
	}
	for _, t := range tags {
		if t == "" || len(t) > envelope.MaxTagLen {
			return nil, fmt.Errorf("%w: tag of %d bytes (want 1 to %d)", ErrInvalidOption, len(t), envelope.MaxTagLen)
		}
	}
	return tags, nil
}

// errInvalidated marks an entry that a tag invalidation made stale.
var errInvalidated = errors.New("invalidated by tag")

// tagKey returns the stamp key of tag.
func (m *Manager) tagKey(tag string) string { return keys.Tag(m.prefix, tag, m.maxKey) }

// tagWrites returns the commands that prepare the stamps of ti's tags for
// an entry that lives exp; they go in the same pipeline as the write.
//
// For a Set (loaded false) a missing stamp is created by the server's clock
// just older than the entry, which is readable at once: a Set hands over
// data its caller holds to be current. For a load's result it is created
// equal to the entry's stamp, which makes that entry unreadable for now:
// the stamp may have been evicted (or lost in a restart) after an
// InvalidateTags that overtook the load. The load then lowers it
// (settleTags) once it knows that no tag was invalidated while it ran.
func (m *Manager) tagWrites(ctx context.Context, ti tagInfo, exp time.Duration, loaded bool) []redis.Cmder {
	keep := millis(exp + time.Minute)
	cmds := make([]redis.Cmder, 0, len(ti.tags)+1)
	for _, t := range ti.tags {
		if loaded {
			cmds = append(cmds, tagWriteArgs{key: m.tagKey(t), stamp: ti.stamp, keepMS: keep}.cmd(ctx))
		} else {
			cmds = append(cmds, tagWriteArgs{key: m.tagKey(t), byServer: true, keepMS: keep, skewUS: m.serverSkew().Microseconds()}.cmd(ctx))
		}
	}
	return cmds
}

// setCmd returns the command that stores buf, the envelope of a value Set
// under rkey for px ms: a plain SET, or for a tagged value setStampedScript.
func (m *Manager) setCmd(ctx context.Context, rkey string, buf []byte, px int64, tagged bool) redis.Cmder {
	if !tagged {
		return redis.NewStatusCmd(ctx, "set", rkey, buf, "px", px)
	}
	// The tag section, and its stamp, start where Parse's payload does.
	_, rest, _ := envelope.Parse(buf, math.MaxInt)
	return setStampedArgs{key: rkey, value: buf, stampOffset: len(buf) - len(rest), ttlMS: px}.cmd(ctx)
}

// tagEpoch returns a command reading the tag epoch (see keys.TagEpoch).
// It is an MGET of the one key: where no tag was ever invalidated there is
// no epoch, and a GET's nil reply would be an error that go-redis examines
// (and allocates for) on every miss that claims.
func (m *Manager) tagEpoch(ctx context.Context) *redis.SliceCmd {
	return redis.NewSliceCmd(ctx, "mget", keys.TagEpoch(m.prefix))
}

// epochOf returns what cmd read of the tag epoch; "" when there is none.
func epochOf(cmd *redis.SliceCmd) (string, bool) {
	vals, err := cmd.Result()
	if err != nil || len(vals) != 1 {
		return "", false
	}
	v, _ := mgetReply(vals[0])
	return v, true
}

// settleTags makes a load's result readable when its write-back found
// stamps missing and created them (tw are the tag writes, in ti's order):
// if the tag epoch is still what it was when the load began (before, as
// read then, if beforeOK; after, as read with the write-back), no tag was invalidated
// meanwhile and the stamps are lowered just below the entry's. It reports
// whether the entry is readable.
func (m *Manager) settleTags(ctx context.Context, ti tagInfo, tw []redis.Cmder, before string, beforeOK bool, after *redis.SliceCmd) bool {
	lower, ok := m.stampsToLower(ctx, ti, tw)
	switch {
	case !ok:
		return false // invalidated during the load
	case len(lower) == 0:
		return true
	}
	if now, ok := epochOf(after); !beforeOK || !ok || now != before {
		return false
	}
	return m.doAll(ctx, lower...) == nil && allReplied(lower, 1)
}

// stampsToLower returns the commands that lower the stamps the tag writes
// tw created (those equal to the entry's stamp), or false when one of the
// stamps is newer than the entry's: its tag was invalidated during the
// load.
func (m *Manager) stampsToLower(ctx context.Context, ti tagInfo, tw []redis.Cmder) ([]redis.Cmder, bool) {
	var lower []redis.Cmder
	for i, c := range tw {
		v, ok := c.(*redis.Cmd).Val().(int64)
		switch {
		case !ok || v > ti.stamp:
			return nil, false
		case v == ti.stamp:
			lower = append(lower, tagLowerArgs{key: m.tagKey(ti.tags[i]), stamp: ti.stamp}.cmd(ctx))
		}
	}
	return lower, true
}

// allReplied reports whether every script of cmds replied the integer n.
func allReplied(cmds []redis.Cmder, n int64) bool {
	for _, c := range cmds {
		if v, _ := c.(*redis.Cmd).Val().(int64); v != n {
			return false
		}
	}
	return true
}

// tagPrepares returns the commands that create the missing stamps of tags
// known before a load (the Tags option) just older than the load's stamp
// (the server's time at the claim, which runs after them), and read the tag
// epoch, which the write-back compares; they go in the claim's round trip.
func (m *Manager) tagPrepares(ctx context.Context, tags []string) ([]redis.Cmder, *redis.SliceCmd) {
	epoch := m.tagEpoch(ctx)
	return append(m.tagWrites(ctx, tagInfo{tags: tags}, time.Duration(m.longest.Load()), false), epoch), epoch
}

// serverSkew is how far apart the clocks that stamp tags and loads may be:
// none on one node, where the server's clock stamps both; the allowance
// (WithClockSkew) on a Cluster or Ring, whose nodes keep clocks of their
// own.
func (m *Manager) serverSkew() time.Duration {
	if m.single {
		return 0
	}
	return m.skew
}

// checkTags returns errInvalidated unless every tag of an entry has a stamp
// older than the entry's. It costs one round trip.
func (m *Manager) checkTags(ctx context.Context, ti tagInfo) error {
	cmds := make([]redis.Cmder, len(ti.tags))
	for i, t := range ti.tags {
		cmds[i] = redis.NewStringCmd(ctx, "get", m.tagKey(t))
	}
	if err := m.doAll(ctx, cmds...); err != nil {
		return err
	}
	for i, c := range cmds {
		if !stampOlder(c.(*redis.StringCmd), ti.stamp) {
			return fmt.Errorf("%w: tag %.64q", errInvalidated, ti.tags[i])
		}
	}
	return nil
}

// stampOlder reports whether a tag's stamp, as read by cmd, is older than
// an entry's stamp. An absent, unreadable or unparsable stamp is not: its
// entries are unreadable rather than possibly stale.
func stampOlder(cmd *redis.StringCmd, stamp int64) bool {
	s, err := cmd.Result()
	if err != nil {
		return false
	}
	v, err := strconv.ParseInt(s, 10, 64)
	return err == nil && v < stamp
}

// InvalidateTags makes every entry carrying any of tags unreadable, in
// every cache of this Manager's prefix and in every process sharing the
// Redis. It costs one round trip and O(1) work per tag, however many
// entries carry it; the entries themselves expire by their TTL, or are
// deleted when next read. A load that began before InvalidateTags returned
// cannot make its result readable afterwards. It is bounded by the write
// timeout and retried within it (WithWriteTimeout). When Redis still cannot
// be reached it returns an error wrapping ErrUnavailable (some tags may then
// be invalidated and others not) and keeps the invalidation in a queue that
// retries it in the background; meanwhile this process does not serve
// entries carrying those tags. It returns ErrInvalidOption for an empty
// tag.
func (m *Manager) InvalidateTags(ctx context.Context, tags ...string) error {
	if m.done.Load() {
		return ErrClosed
	}
	tags, err := checkTags(tags)
	if err != nil || len(tags) == 0 {
		return err
	}
	for _, h := range m.holdersOf("") {
		h.dropTags(tags)
	}
	retry := func(ctx context.Context) error { return m.invalidateTags(ctx, tags) }
	if err := retry(ctx); err != nil {
		return fmt.Errorf("invalidate tags: %w", m.keep(&pendingInvalidation{tags: tags, retry: retry, until: m.horizon()}, err))
	}
	return nil
}

// invalidateTags moves the stamps of tags forward and tells the other
// processes.
func (m *Manager) invalidateTags(ctx context.Context, tags []string) error {
	cmds := m.tagInvalidations(ctx, tags)
	if err := m.doWrite(ctx, cmds...); err != nil {
		return err
	}
	return m.tagsInvalidated(ctx, tags, cmds)
}

// tagInvalidations returns the commands that invalidate tags: the tag
// epoch's move, then each tag's stamp's.
func (m *Manager) tagInvalidations(ctx context.Context, tags []string) []redis.Cmder {
	// The epoch moves first: a load that sees it unchanged saw no stamp
	// move either.
	cmds := []redis.Cmder{redis.NewStatusCmd(ctx, "set", keys.TagEpoch(m.prefix), rand.Text(), "px", millis(versionTTL))}
	for _, t := range tags {
		cmds = append(cmds, tagInvalidateArgs{key: m.tagKey(t), keepMS: millis(m.markerTTL())}.cmd(ctx))
	}
	return cmds
}

// tagsInvalidated checks the replies of tagInvalidations' commands, sent,
// and tells this process's L1 tiers and the other processes.
func (m *Manager) tagsInvalidated(ctx context.Context, tags []string, cmds []redis.Cmder) error {
	if err := cmds[0].Err(); err != nil {
		return fmt.Errorf("tag epoch: %w", err)
	}
	for i, c := range cmds[1:] {
		if err := c.Err(); err != nil {
			return fmt.Errorf("tag %.64q: %w", tags[i], err)
		}
	}
	// Again now that the stamps moved: a read of this process that began
	// after the first drop but read before the stamps moved may have
	// filled its L1 since.
	for _, h := range m.holdersOf("") {
		h.dropTags(tags)
	}
	return m.publish(ctx, event{Kind: "tags", Tags: tags})
}

// AddTags attaches tags to the value being loaded, for tags known only
// after loading (a product's category). Invalid tags keep the value out of
// Redis: Fetch still returns it, and the error is counted and logged.
func (e *Entry) AddTags(tags ...string) {
	if e == nil {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.tags = append(e.tags, tags...)
}
