package transport

import (
	"context"
	"fmt"
	"sync"

	"github.com/redis/go-redis/v9"
)

// processor is what doOn needs of a client or cluster node.
type processor interface {
	Process(ctx context.Context, cmd redis.Cmder) error
}

// doOn sends cmd to one node within the op timeout. It does not touch the
// breaker: a scan is an administrative walk, not a request path. Errors
// other than replies wrap ErrUnavailable.
func (t *Transport) doOn(ctx context.Context, node processor, cmd redis.Cmder) error {
	ctx, cancel := context.WithTimeout(ctx, t.op)
	defer cancel()
	var err error
	if t.direct {
		err = node.Process(ctx, cmd)
	} else {
		_, err = t.guardedFn(ctx, func() error { return node.Process(ctx, cmd) })
	}
	if err != nil && !IsReply(err) {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return err
}

// Scan calls fn with each batch of keys matching pattern, count a hint of
// the batch size, on every master when the client is a Cluster (SCAN is
// per node). Each SCAN call is bounded by the op timeout; fn is never
// called concurrently.
func (t *Transport) Scan(ctx context.Context, pattern string, count int, fn func([]string) error) error {
	var mu sync.Mutex // ForEachMaster scans the masters in parallel
	each := func(ctx context.Context, node processor) error {
		var cursor uint64
		for {
			cmd := redis.NewScanCmd(ctx, nil, "scan", cursor, "match", pattern, "count", count)
			if err := t.doOn(ctx, node, cmd); err != nil {
				return err
			}
			found, next, err := cmd.Result()
			if err != nil {
				return err
			}
			mu.Lock()
			err = fn(found)
			mu.Unlock()
			if err != nil {
				return err
			}
			if cursor = next; cursor == 0 {
				return nil
			}
		}
	}
	if cc, ok := t.client.(*redis.ClusterClient); ok {
		return cc.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error {
			return each(ctx, node)
		})
	}
	return each(ctx, t.client)
}
