package cachemgr

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// versionTTL is how long a namespace version lives without a Bump. When it
// expires (or is evicted) the next call starts a new random version: every
// older entry becomes unreachable, never readable again.
const versionTTL = 30 * 24 * time.Hour

// WithVersioned makes the cache versioned: its keys carry a namespace
// version, and Bump moves every entry out of reach in one O(1) call. Reads
// check the version in the same round trip as the value (a pipeline), so a
// read that starts after Bump returns never sees an entry written before
// it: there is no staleness window. Default: false.
func WithVersioned(on bool) CacheOption {
	return func(c *cacheConfig) error {
		c.versioned = on
		return nil
	}
}

// Bump invalidates every entry of a versioned cache at once by moving it to
// a new namespace version; old entries are never read again and expire by
// their TTL. A load that began before Bump writes into the old namespace,
// where nobody reads. Bump on a cache without WithVersioned(true) returns
// ErrNotVersioned; when Redis cannot be reached it returns an error wrapping
// ErrUnavailable and the entries stay readable.
func (c *Cache[T]) Bump(ctx context.Context) error {
	if !c.versioned {
		return fmt.Errorf("bump %q: %w", c.name, ErrNotVersioned)
	}
	if c.m.done.Load() {
		return ErrClosed
	}
	v := newVersion()
	cmd := redis.NewStatusCmd(ctx, "set", c.keys.Version(), v, "px", millis(versionTTL))
	err := c.m.doAll(ctx, cmd)
	if err == nil {
		err = cmd.Err()
	}
	if err != nil {
		return fmt.Errorf("bump %q: %w", c.name, err)
	}
	c.version.Store(&v)
	if c.l1 != nil {
		c.l1.clear()
	}
	c.m.publish(ctx, event{Kind: "version", Cache: c.name})
	return nil
}

// newVersion returns a random namespace version. Random, not a counter: a
// version key that expires or is evicted must never lead back to a
// namespace that still holds old entries.
func newVersion() string { return rand.Text()[:12] }

// versionInitScript returns the current version, creating one if there is
// none.
var versionInitScript = newScript(`
local v = redis.call('GET', KEYS[1])
if v then return v end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return ARGV[1]`)

// currentVersion reads the version from Redis, creating it if needed, and
// remembers it.
func (c *Cache[T]) currentVersion(ctx context.Context) (string, error) {
	cmd, err := c.m.runScript(ctx, versionInitScript, []string{c.keys.Version()}, newVersion(), millis(versionTTL))
	if err != nil {
		return "", err
	}
	v, ok := cmd.Val().(string)
	if !ok {
		return "", fmt.Errorf("%w: version reply %T", ErrUnavailable, cmd.Val())
	}
	c.version.Store(&v)
	return v, nil
}

// localVersion returns the last version seen, reading it on first use.
func (c *Cache[T]) localVersion(ctx context.Context) (string, error) {
	if p := c.version.Load(); p != nil {
		return *p, nil
	}
	return c.currentVersion(ctx)
}

// observed takes the version read in the same round trip as an operation
// done under ver (redis.Nil: the key is gone) and reports whether the
// operation must be redone under the returned version.
func (c *Cache[T]) observed(ctx context.Context, ver, cur string, err error) (string, bool, error) {
	if errors.Is(err, redis.Nil) {
		cur, err = c.currentVersion(ctx)
	}
	if err != nil || cur == ver {
		return ver, false, err
	}
	c.version.Store(&cur)
	return cur, true, nil
}

// maxVersionRetries bounds how often an operation is redone because the
// version moved under it; after that the caller sees the last attempt.
const maxVersionRetries = 2

// inVersion sends the commands that build returns for the data key of key.
// In a versioned cache it reads the version in the same pipeline, before
// them, and sends them again under the new version if it moved. It returns
// the data key used; errors are those of doAll, replies are in the commands.
func (c *Cache[T]) inVersion(ctx context.Context, key string, build func(rkey string) []redis.Cmder) (string, error) {
	if !c.versioned {
		rkey := c.keys.Key(key)
		return rkey, c.m.doAll(ctx, build(rkey)...)
	}
	ver, err := c.localVersion(ctx)
	if err != nil {
		return c.keys.Key(key), err
	}
	for attempt := 0; ; attempt++ {
		rkey := c.keys.KeyAt(ver, key)
		get := redis.NewStringCmd(ctx, "get", c.keys.Version())
		if err := c.m.doAll(ctx, append([]redis.Cmder{get}, build(rkey)...)...); err != nil {
			return rkey, err
		}
		var again bool
		ver, again, err = c.observed(ctx, ver, get.Val(), get.Err())
		if err != nil || !again || attempt == maxVersionRetries {
			return rkey, err
		}
	}
}

// readVersioned is inVersion for a plain read on a single-node client: one
// MGET of the version and the value, cheaper than a pipeline. (On Cluster
// and Ring the two keys live on different nodes, so they go through
// inVersion's pipeline.)
func (c *Cache[T]) readVersioned(ctx context.Context, key string) (string, string, error) {
	ver, err := c.localVersion(ctx)
	if err != nil {
		return c.keys.Key(key), "", err
	}
	for attempt := 0; ; attempt++ {
		rkey := c.keys.KeyAt(ver, key)
		cmd := redis.NewSliceCmd(ctx, "mget", c.keys.Version(), rkey)
		if err := c.m.do(ctx, cmd); err != nil {
			return rkey, "", err
		}
		vals := cmd.Val()
		cur, ok := vals[0].(string)
		var again bool
		if ok {
			ver, again, err = c.observed(ctx, ver, cur, nil)
		} else {
			ver, again, err = c.observed(ctx, ver, "", redis.Nil)
		}
		if err != nil {
			return rkey, "", err
		}
		if !again || attempt == maxVersionRetries {
			s, ok := vals[1].(string)
			if !ok {
				return rkey, "", redis.Nil
			}
			return rkey, s, nil
		}
	}
}
