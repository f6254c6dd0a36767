package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/vmihailenco/msgpack/v5"
)

// rawLib is the baseline: go-redis and msgpack with no cache library, the
// cache-aside a user writes by hand (GET; on a miss load, SET).
func rawLib() lib {
	return lib{
		name:   "go-redis (hand-written)",
		module: "github.com/redis/go-redis/v9",
		setup:  "GET + msgpack.Unmarshal; miss: load, msgpack.Marshal, SET PX 1h; MGET for batches; no stampede protection",
		na: map[string]string{
			wHitLocal:      "no local tier",
			wParallelLocal: "no local tier",
			wBatchLocal:    "no local tier",
		},
		open: func(s *server, load loadFunc) (*client, error) {
			rdb := s.client()
			prefix := s.ns + "raw:"
			get, set, fetch := handWritten(rdb, prefix, load)
			return &client{
				set:   set,
				get:   get,
				fetch: fetch,
				batch: func(ctx context.Context, keys []string) (int, error) {
					full := make([]string, len(keys))
					for i, k := range keys {
						full[i] = prefix + k
					}
					vals, err := rdb.MGet(ctx, full...).Result()
					if err != nil {
						return 0, err
					}
					n := 0
					for _, val := range vals {
						s, ok := val.(string)
						if !ok {
							continue
						}
						var v Item
						if err := msgpack.Unmarshal([]byte(s), &v); err != nil {
							return n, fmt.Errorf("decode: %w", err)
						}
						n++
					}
					return n, nil
				},
				close: func() { rdb.Close() },
			}, nil
		},
	}
}

// handWritten returns the hand-written client's operations on rdb under
// prefix: GET + msgpack.Unmarshal, msgpack.Marshal + SET PX 1h, and
// cache-aside (GET; on redis.Nil, load and SET). go-redis's client-side
// cache row uses them too, on a client with the cache turned on.
func handWritten(rdb redis.Cmdable, prefix string, load loadFunc) (
	get func(context.Context, string) (Item, error),
	set func(context.Context, string, Item) error,
	fetch func(context.Context, string) (Item, error),
) {
	get = func(ctx context.Context, key string) (Item, error) {
		var v Item
		b, err := rdb.Get(ctx, prefix+key).Bytes()
		if err != nil {
			return v, err
		}
		return v, msgpack.Unmarshal(b, &v)
	}
	set = func(ctx context.Context, key string, v Item) error {
		b, err := msgpack.Marshal(&v)
		if err != nil {
			return err
		}
		return rdb.Set(ctx, prefix+key, b, time.Hour).Err()
	}
	fetch = func(ctx context.Context, key string) (Item, error) {
		v, err := get(ctx, key)
		if !errors.Is(err, redis.Nil) {
			return v, err
		}
		if v, err = load(ctx, key); err != nil {
			return v, err
		}
		return v, set(ctx, key, v)
	}
	return get, set, fetch
}
