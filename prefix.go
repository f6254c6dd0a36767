package cachemgr

import (
	"context"
	"fmt"
	"strings"

	"github.com/cachemgr/cachemgr/internal/keys"
	"github.com/redis/go-redis/v9"
)

// scanBatch is the SCAN COUNT hint and the most keys deleted per pipeline.
const scanBatch = 500

// InvalidatePrefix deletes every entry of the cache whose key starts with
// prefix, and returns how many it deleted. It walks the keyspace with SCAN
// (never KEYS), on every master of a Cluster, so it costs time in
// proportion to the whole database: prefer tags or Bump where they fit.
// Glob characters in prefix match only themselves. Keys longer than the
// Manager's maximum key length are stored hashed and are found only by a
// prefix of at most 32 bytes. Each key is deleted as by Delete, so loads of
// matching keys that are in flight (cached or not) do not write back.
func (c *Cache[T]) InvalidatePrefix(ctx context.Context, prefix string) (int, error) {
	if c.m.done.Load() {
		return 0, ErrClosed
	}
	if c.l1 != nil {
		c.dropPrefix(prefix)
	}
	n, err := c.invalidatePrefix(ctx, prefix)
	if err != nil {
		p := &pendingInvalidation{cache: c.name, prefix: &prefix, until: c.m.horizon(), retry: func(ctx context.Context) error {
			_, err := c.invalidatePrefix(ctx, prefix)
			return err
		}}
		return n, fmt.Errorf("invalidate prefix %.64q: %w", prefix, c.m.keep(p, err))
	}
	return n, nil
}

// dropPrefix drops the L1 entries whose key starts with prefix.
func (c *Cache[T]) dropPrefix(prefix string) {
	c.l1.removeIf(func(e *l1Entry[T]) bool { return strings.HasPrefix(e.key, prefix) })
}

// invalidatePrefix deletes the entries of keys starting with prefix in
// Redis and tells the other processes.
func (c *Cache[T]) invalidatePrefix(ctx context.Context, prefix string) (int, error) {
	base, err := c.scanBase(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, pattern := range keys.Patterns(base, prefix, c.m.maxKey) {
		err := c.m.scan(ctx, pattern, func(found []string) error {
			deleted, err := c.m.deleteFound(ctx, found)
			n += deleted
			return err
		})
		if err != nil {
			return n, err
		}
	}
	if c.l1 != nil {
		// Again now that the keys are gone: a read of this process that
		// began after the first drop may have found one before the scan
		// did, and filled its L1 since.
		c.dropPrefix(prefix)
	}
	return n, c.m.publish(ctx, event{Kind: "prefix", Cache: c.name, Prefix: prefix})
}

// scanBase returns the base of the keys of the cache's entries: under the
// current namespace version for a versioned cache.
func (c *Cache[T]) scanBase(ctx context.Context) (string, error) {
	if !c.versioned {
		return c.keys.Base(), nil
	}
	v, err := c.currentVersion(ctx)
	if err != nil {
		return "", err
	}
	return c.keys.VersionedBase(v), nil
}

// deleteFound deletes what a scan found: each data key, and the data key
// of each marker, whose key may be loading without a value yet: rotating
// the marker keeps that load's result out. It returns how many data keys
// it found, counted even when the write fails.
func (m *Manager) deleteFound(ctx context.Context, found []string) (int, error) {
	del := toDelete(found)
	if len(del) == 0 {
		return 0, nil
	}
	n := 0
	cmds := make([]redis.Cmder, 0, len(del))
	for k, isData := range del {
		cmds = append(cmds, m.deleteCmd(ctx, k))
		if isData {
			n++
		}
	}
	if err := m.doWrite(ctx, cmds...); err != nil {
		return n, err
	}
	for _, cmd := range cmds {
		if err := cmd.Err(); err != nil {
			return n, err
		}
	}
	return n, nil
}

// toDelete returns the data keys to delete for the keys a scan found: true
// for a data key found, false for the data key of a marker found.
func toDelete(found []string) map[string]bool {
	del := map[string]bool{}
	for _, k := range found {
		if keys.IsData(k) {
			del[k] = true
		} else if data, ok := keys.DataOfMarker(k); ok && !del[data] {
			del[data] = false
		}
	}
	return del
}
