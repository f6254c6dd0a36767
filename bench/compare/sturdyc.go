package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/viccon/sturdyc"
)

// sturdycLib is github.com/viccon/sturdyc: an in-memory cache whose
// DistributedStorage option puts Redis behind it. The storage adapter is
// the user's to write; redisStorage below is the plain one.
func sturdycLib() lib {
	return lib{
		name:   "sturdyc",
		module: "github.com/viccon/sturdyc",
		setup:  "New[Item](100_000, 10, time.Hour, 10, WithDistributedStorage(go-redis GET/SET PX 1h/MGET/pipelined SET), WithNoContinuousEvictions()); records are JSON (fixed by sturdyc); Redis write-back is asynchronous",
		na: map[string]string{
			wParallelRedis: "reads are answered by the in-memory tier; the Redis-tier row clears it before each read, which cannot be done concurrently",
		},
		open: func(s *server, load loadFunc) (*client, error) {
			rdb := s.client()
			st := &redisStorage{rdb: rdb, prefix: s.ns + "sty:", ttl: time.Hour}
			c := sturdyc.New[Item](100_000, 10, time.Hour, 10,
				sturdyc.WithDistributedStorage(st), sturdyc.WithNoContinuousEvictions())
			keyFn := func(id string) string { return id }
			return &client{
				// set goes through GetOrFetch, the only public way to fill
				// both tiers, then waits for the asynchronous Redis write.
				set: func(ctx context.Context, key string, v Item) error {
					if _, err := c.GetOrFetch(ctx, key, func(context.Context) (Item, error) { return v, nil }); err != nil {
						return err
					}
					return st.wait(ctx, key)
				},
				// get reads the Redis tier: the in-memory entry is dropped
				// first, so GetOrFetch goes to the distributed storage.
				get: func(ctx context.Context, key string) (Item, error) {
					c.Delete(key)
					return c.GetOrFetch(ctx, key, func(context.Context) (Item, error) { return Item{}, errUnexpectedLoad })
				},
				getLocal: func(_ context.Context, key string) (Item, error) {
					v, ok := c.Get(key)
					if !ok {
						return v, fmt.Errorf("sturdyc: %q not in memory", key)
					}
					return v, nil
				},
				fetch: func(ctx context.Context, key string) (Item, error) {
					return c.GetOrFetch(ctx, key, func(ctx context.Context) (Item, error) { return load(ctx, key) })
				},
				// batch reads the Redis tier, as get does.
				batch: func(ctx context.Context, keys []string) (int, error) {
					for _, k := range keys {
						c.Delete(k)
					}
					got, err := c.GetOrFetchBatch(ctx, keys, keyFn, noBatchLoad)
					return len(got), err
				},
				batchLocal: func(ctx context.Context, keys []string) (int, error) {
					got, err := c.GetOrFetchBatch(ctx, keys, keyFn, noBatchLoad)
					return len(got), err
				},
				close: func() { rdb.Close() },
			}, nil
		},
	}
}

func noBatchLoad(context.Context, []string) (map[string]Item, error) {
	return nil, errUnexpectedLoad
}

// redisStorage is sturdyc's DistributedStorage over go-redis.
type redisStorage struct {
	rdb    *redis.Client
	prefix string
	ttl    time.Duration
}

func (r *redisStorage) Get(ctx context.Context, key string) ([]byte, bool) {
	b, err := r.rdb.Get(ctx, r.prefix+key).Bytes()
	return b, err == nil
}

func (r *redisStorage) Set(ctx context.Context, key string, value []byte) {
	r.rdb.Set(ctx, r.prefix+key, value, r.ttl)
}

func (r *redisStorage) GetBatch(ctx context.Context, keys []string) map[string][]byte {
	full := make([]string, len(keys))
	for i, k := range keys {
		full[i] = r.prefix + k
	}
	vals, err := r.rdb.MGet(ctx, full...).Result()
	if err != nil {
		return nil
	}
	out := make(map[string][]byte, len(keys))
	for i, v := range vals {
		if s, ok := v.(string); ok {
			out[keys[i]] = []byte(s)
		}
	}
	return out
}

func (r *redisStorage) SetBatch(ctx context.Context, records map[string][]byte) {
	pipe := r.rdb.Pipeline()
	for k, v := range records {
		pipe.Set(ctx, r.prefix+k, v, r.ttl)
	}
	_, _ = pipe.Exec(ctx)
}

// wait polls until key is in Redis: sturdyc writes it on a goroutine.
func (r *redisStorage) wait(ctx context.Context, key string) error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		n, err := r.rdb.Exists(ctx, r.prefix+key).Result()
		if err != nil || n == 1 {
			return err
		}
		if time.Now().After(deadline) {
			return errors.New("sturdyc: value not written to Redis within 5s")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
}
