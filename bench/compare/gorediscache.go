package main

import (
	"context"
	"time"

	"github.com/go-redis/cache/v9"
	"github.com/vmihailenco/msgpack/v5"
)

// goRedisCacheLib is github.com/go-redis/cache/v9, with or without its
// TinyLFU local tier.
func goRedisCacheLib(local bool) lib {
	l := lib{
		name:   "go-redis/cache",
		module: "github.com/go-redis/cache/v9",
		setup:  "Options{Redis: rdb, Marshal: msgpack.Marshal, Unmarshal: msgpack.Unmarshal} (its default marshal adds s2 compression from 64 B); Once for get-or-load",
		na: map[string]string{
			wHitLocal:      "no local tier in this configuration",
			wParallelLocal: "no local tier in this configuration",
			wBatch:         "no batch API",
			wBatchLocal:    "no batch API",
		},
	}
	if local {
		l.name = "go-redis/cache + TinyLFU"
		l.setup = "as go-redis/cache, plus LocalCache: NewTinyLFU(10_000, time.Hour); the local tier holds encoded bytes"
		l.na = map[string]string{
			wHitRedis:      "a Redis-tier read is the go-redis/cache row",
			wParallelRedis: "a Redis-tier read is the go-redis/cache row",
			wBatch:         "no batch API",
			wBatchLocal:    "no batch API",
		}
	}
	l.open = func(s *server, load loadFunc) (*client, error) {
		rdb := s.client()
		opt := &cache.Options{Redis: rdb, Marshal: msgpack.Marshal, Unmarshal: msgpack.Unmarshal}
		if local {
			opt.LocalCache = cache.NewTinyLFU(10_000, time.Hour)
		}
		c := cache.New(opt)
		prefix := s.ns + "grc:"
		get := func(ctx context.Context, key string) (Item, error) {
			var v Item
			err := c.Get(ctx, prefix+key, &v)
			return v, err
		}
		cl := &client{
			set: func(ctx context.Context, key string, v Item) error {
				return c.Set(&cache.Item{Ctx: ctx, Key: prefix + key, Value: &v, TTL: time.Hour})
			},
			fetch: func(ctx context.Context, key string) (Item, error) {
				var v Item
				err := c.Once(&cache.Item{
					Ctx:   ctx,
					Key:   prefix + key,
					Value: &v,
					TTL:   time.Hour,
					Do:    func(*cache.Item) (any, error) { return load(ctx, key) },
				})
				return v, err
			},
			close: func() { rdb.Close() },
		}
		if local {
			cl.getLocal = get
		} else {
			cl.get = get
		}
		return cl, nil
	}
	return l
}
