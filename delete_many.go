package cachemgr

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// DeleteMany removes keys, each as Delete does, in one round trip (one
// pipeline; on Cluster and Ring one per node). See DeleteAndInvalidate.
func (c *Cache[T]) DeleteMany(ctx context.Context, keys ...string) error {
	return c.DeleteAndInvalidate(ctx, keys, nil)
}

// DeleteAndInvalidate removes keys from the cache and invalidates tags in
// every cache of the Manager's prefix, in one round trip: what a write
// handler needs after changing a row that lists and aggregates carry as
// tags. Each key is deleted as by Delete and the tags invalidated as by
// InvalidateTags, with their guarantees: a load of a key or tag that began
// before it returned does not make its result readable afterwards; the
// write is bounded by the write timeout and retried within it
// (WithWriteTimeout); the other processes are told, for their L1 tiers.
// When Redis still cannot be reached it returns an error wrapping
// ErrUnavailable and keeps each key's delete and the tags' invalidation in
// the queue that retries them in the background; meanwhile this process
// serves nothing they cover. It returns ErrInvalidOption for an empty tag,
// before doing anything.
func (c *Cache[T]) DeleteAndInvalidate(ctx context.Context, keys, tags []string) error {
	if c.m.done.Load() {
		return ErrClosed
	}
	tags, err := checkTags(tags)
	if err != nil {
		return fmt.Errorf("delete and invalidate: %w", err)
	}
	keys = distinct(keys)
	if len(keys) == 0 && len(tags) == 0 {
		return nil
	}
	if c.l1 != nil {
		c.dropKeys(keys)
	}
	for _, h := range c.m.holdersOf("") {
		h.dropTags(tags)
	}
	if err := c.deleteAndInvalidate(ctx, keys, tags); err != nil {
		return fmt.Errorf("delete and invalidate: %w", c.keepAll(keys, tags, err))
	}
	return nil
}

// deleteAndInvalidate sends the deletes of keys and the invalidation of
// tags as one write, then tells the other processes.
func (c *Cache[T]) deleteAndInvalidate(ctx context.Context, keys, tags []string) error {
	var tagCmds, cmds []redis.Cmder
	_, _, err := c.inVersionAll(ctx, keys, true, func(ts []target) []redis.Cmder {
		tagCmds, cmds = nil, nil
		if len(tags) > 0 {
			tagCmds = c.m.tagInvalidations(ctx, tags)
		}
		for _, t := range ts {
			cmds = append(cmds, c.m.deleteCmd(ctx, t.rkey))
		}
		return append(append([]redis.Cmder(nil), tagCmds...), cmds...)
	})
	if err != nil {
		return err
	}
	for i, cmd := range cmds {
		if err := cmd.Err(); err != nil {
			return fmt.Errorf("delete %.64q: %w", keys[i], err)
		}
	}
	if len(keys) > 0 {
		if err := c.invalidated(ctx, keys...); err != nil {
			return err
		}
	}
	if len(tags) > 0 {
		return c.m.tagsInvalidated(ctx, tags, tagCmds)
	}
	return nil
}

// keepAll queues for retry each key's delete and the tags' invalidation,
// after their first attempt failed with err, as Delete and InvalidateTags
// do theirs.
func (c *Cache[T]) keepAll(keys, tags []string, err error) error {
	out := err
	for _, k := range keys {
		out = c.m.keep(c.pendingDelete(k), err)
	}
	if len(tags) > 0 {
		m := c.m
		retry := func(ctx context.Context) error { return m.invalidateTags(ctx, tags) }
		out = m.keep(&pendingInvalidation{tags: tags, retry: retry, until: m.horizon()}, err)
	}
	return out
}

// distinct returns keys without repeats, in their first order.
func distinct(keys []string) []string {
	seen := make(map[string]bool, len(keys))
	out := make([]string, 0, len(keys))
	for _, k := range keys {
		if !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	return out
}
