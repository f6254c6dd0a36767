package cachemgr

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
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
	if c.l1 != nil {
		c.l1.clear()
	}
	if err := c.bump(ctx); err != nil {
		err = c.m.keep(&pendingInvalidation{cache: c.name, retry: c.bump, until: c.m.horizon()}, err)
		return fmt.Errorf("bump %q: %w", c.name, err)
	}
	return nil
}

// bump moves the cache to a new namespace version and tells the other
// processes. Redis makes the version (see bumpScript): a retried attempt
// never brings back a namespace that a later Bump retired.
func (c *Cache[T]) bump(ctx context.Context) error {
	cmd := bumpArgs{key: c.keys.Version(), seed: newVersion(), ttlMS: millis(versionTTL)}.cmd(ctx)
	err := c.m.doWrite(ctx, cmd)
	if err == nil {
		err = cmd.Err()
	}
	if err != nil {
		return err
	}
	v, ok := cmd.Val().(string)
	if !ok {
		return fmt.Errorf("%w: version reply %T", ErrUnavailable, cmd.Val())
	}
	c.version.Store(&v)
	if c.l1 != nil {
		c.l1.clear()
	}
	return c.m.publish(ctx, event{Kind: "version", Cache: c.name})
}

// newVersion returns a random namespace version. Random, not a counter: a
// version key that expires or is evicted must never lead back to a
// namespace that still holds old entries.
func newVersion() string { return rand.Text()[:12] }

// currentVersion reads the version from Redis, creating it if needed, and
// remembers it.
func (c *Cache[T]) currentVersion(ctx context.Context) (string, error) {
	cmd, err := c.m.runScript(ctx, versionInitArgs{key: c.keys.Version(), newVersion: newVersion(), ttlMS: millis(versionTTL)})
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
// version moved under it.
const maxVersionRetries = 2

// inVersion sends the commands that build returns for the data key of key,
// as a write (see doWrite) when write is set.
// In a versioned cache it reads the version in the same pipeline, before
// them, and sends them again under the new version if it moved. It returns
// the data key used and its version, and whether the version still moved
// under the last attempt (a read must then not trust its reply); errors are
// those of doAll, replies are in the commands.
func (c *Cache[T]) inVersion(ctx context.Context, key string, write bool, build func(rkey string) []redis.Cmder) (target, bool, error) {
	ts, moved, err := c.inVersionAll(ctx, []string{key}, write, func(ts []target) []redis.Cmder {
		return build(ts[0].rkey)
	})
	return ts[0], moved, err
}

// inVersionAll is inVersion for many keys: build gets their targets, in
// the order of keys, under one version, and so does the caller.
func (c *Cache[T]) inVersionAll(ctx context.Context, keyList []string, write bool, build func([]target) []redis.Cmder) ([]target, bool, error) {
	send := c.m.doAll
	if write {
		send = c.m.doWrite
	}
	ts := make([]target, len(keyList))
	if !c.versioned {
		return ts, false, send(ctx, build(c.targetsAt(ts, keyList, "", false))...)
	}
	ver, err := c.localVersion(ctx)
	if err != nil {
		return c.targetsAt(ts, keyList, "", false), false, err
	}
	for attempt := 0; ; attempt++ {
		get := redis.NewStringCmd(ctx, "get", c.keys.Version())
		if err := send(ctx, append([]redis.Cmder{get}, build(c.targetsAt(ts, keyList, ver, true))...)...); err != nil {
			return ts, false, err
		}
		var again bool
		ver, again, err = c.observed(ctx, ver, get.Val(), get.Err())
		if err != nil || !again {
			return ts, false, err
		}
		if attempt == maxVersionRetries {
			return slices.Clone(c.targetsAt(ts, keyList, ver, true)), true, nil
		}
	}
}

// targetsAt fills ts with the targets of keyList: under version ver when
// versioned, else the plain data keys.
func (c *Cache[T]) targetsAt(ts []target, keyList []string, ver string, versioned bool) []target {
	for i, k := range keyList {
		if versioned {
			ts[i] = target{key: k, rkey: c.keys.KeyAt(ver, k), version: ver}
		} else {
			ts[i] = target{key: k, rkey: c.keys.Key(k)}
		}
	}
	return ts
}

// readVersioned is inVersion for a plain read on a single-node client: one
// MGET of the version and the value, cheaper than a pipeline. (On Cluster
// and Ring the two keys live on different nodes, so they go through
// inVersion's pipeline.) A value read under a version that moved is never
// returned: after the retries it is a miss under the newest version.
func (c *Cache[T]) readVersioned(ctx context.Context, key string) (target, string, error) {
	ver, err := c.localVersion(ctx)
	if err != nil {
		return target{key: key, rkey: c.keys.Key(key)}, "", err
	}
	for attempt := 0; ; attempt++ {
		t := target{key: key, rkey: c.keys.KeyAt(ver, key), version: ver}
		cmd := redis.NewSliceCmd(ctx, "mget", c.keys.Version(), t.rkey)
		if err := c.m.do(ctx, cmd); err != nil {
			return t, "", err
		}
		vals := cmd.Val()
		cur, curErr := mgetReply(vals[0])
		var again bool
		ver, again, err = c.observed(ctx, ver, cur, curErr)
		switch {
		case err != nil:
			return t, "", err
		case again && attempt == maxVersionRetries:
			return target{key: key, rkey: c.keys.KeyAt(ver, key), version: ver}, "", redis.Nil
		case again:
			continue
		}
		s, err := mgetReply(vals[1])
		return t, s, err
	}
}

// mgetReply returns one value of an MGET reply as GET answers it: the
// string, or redis.Nil for a key that does not exist.
func mgetReply(v any) (string, error) {
	if s, ok := v.(string); ok {
		return s, nil
	}
	return "", redis.Nil
}

// versionCheck returns a command that reads the namespace version, to send
// in the same pipeline as a claim or a write-back of data key version ver,
// so that a Bump that returned before the pipeline ran is seen; nil when the
// cache is not versioned.
func (c *Cache[T]) versionCheck(ctx context.Context) *redis.StringCmd {
	if !c.versioned {
		return nil
	}
	return redis.NewStringCmd(ctx, "get", c.keys.Version())
}

// versionMoved reports whether check (from versionCheck) saw a version
// other than ver; a version key that is gone counts as moved.
func versionMoved(check *redis.StringCmd, ver string) bool {
	if check == nil {
		return false
	}
	v, err := check.Result()
	return err != nil || v != ver
}

// withCheck appends check, if any, to cmds.
func withCheck(cmds []redis.Cmder, check *redis.StringCmd) []redis.Cmder {
	if check == nil {
		return cmds
	}
	return append(cmds, check)
}
