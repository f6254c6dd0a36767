package cachemgr

import (
	"context"
	"errors"
	"fmt"
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

// WithClockSkew sets how far apart the clocks of the processes sharing the
// Redis may be. A load that began less than this before an InvalidateTags
// of one of its tags counts as older than the invalidation, so its result
// is not served; raising it trades a few extra loads right after an
// invalidation for safety against clock skew. Default: 250ms.
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

// tagWriteScript makes sure a tag's stamp exists before an entry carrying
// the tag is written, creating it just older than the entry, keeps it at
// least as long as the entry lives, and returns it.
var tagWriteScript = newScript(`
local v = redis.call('GET', KEYS[1])
if not v then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return tonumber(ARGV[1])
end
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return tonumber(v) or 0`)

// tagsMoved reports whether the stamps returned by tag writes show an
// invalidation at or after stamp.
func tagsMoved(cmds []redis.Cmder, stamp int64) bool {
	for _, c := range cmds {
		if v, ok := c.(*redis.Cmd).Val().(int64); !ok || v >= stamp {
			return true
		}
	}
	return false
}

// tagWrites returns the commands that prepare the stamps of ti's tags for
// an entry that lives exp; they go in the same pipeline as the write.
func (m *Manager) tagWrites(ctx context.Context, ti tagInfo, exp time.Duration) []redis.Cmder {
	cmds := make([]redis.Cmder, 0, len(ti.tags)+1)
	for _, t := range ti.tags {
		cmds = append(cmds, tagWriteScript.cmd(ctx, []string{m.tagKey(t)}, ti.stamp-1, millis(exp+time.Minute)))
	}
	return cmds
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

// tagInvalidateScript moves a tag's stamp forward to now (or just past its
// current value, if another process's clock is ahead), never back.
var tagInvalidateScript = newScript(`
local cur = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
local now = tonumber(ARGV[1])
if now <= cur then now = cur + 1 end
local ttl = redis.call('PTTL', KEYS[1])
local keep = tonumber(ARGV[2])
if ttl > keep then keep = ttl end
redis.call('SET', KEYS[1], now, 'PX', keep)
return now`)

// InvalidateTags makes every entry carrying any of tags unreadable, in
// every cache of this Manager's prefix and in every process sharing the
// Redis. It costs one round trip and O(1) work per tag, however many
// entries carry it; the entries themselves expire by their TTL, or are
// deleted when next read. A load that began before InvalidateTags returned
// cannot make its result readable afterwards. It returns an error wrapping
// ErrUnavailable when Redis cannot be reached (some tags may then be
// invalidated and others not), and ErrInvalidOption for an empty tag.
func (m *Manager) InvalidateTags(ctx context.Context, tags ...string) error {
	if m.done.Load() {
		return ErrClosed
	}
	tags, err := checkTags(tags)
	if err != nil || len(tags) == 0 {
		return err
	}
	now := m.now().UnixMilli()
	cmds := make([]redis.Cmder, len(tags))
	for i, t := range tags {
		cmds[i] = tagInvalidateScript.cmd(ctx, []string{m.tagKey(t)}, now, millis(m.markerTTL()))
	}
	if err := m.doAll(ctx, cmds...); err != nil {
		return fmt.Errorf("invalidate tags: %w", err)
	}
	for i, c := range cmds {
		if err := c.Err(); err != nil {
			return fmt.Errorf("invalidate tag %.64q: %w", tags[i], err)
		}
	}
	for _, h := range m.holdersOf("") {
		h.dropTags(tags)
	}
	m.publish(ctx, event{Kind: "tags", Tags: tags})
	return nil
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
