package main

import (
	"context"
	"strings"
	"time"

	"github.com/eko/gocache/lib/v4/cache"
	"github.com/eko/gocache/lib/v4/marshaler"
	"github.com/eko/gocache/lib/v4/store"
	redisstore "github.com/eko/gocache/store/redis/v4"
	"github.com/vmihailenco/msgpack/v5"
)

// ekoLib is github.com/eko/gocache/lib/v4 over its Redis store. Its
// Marshaler (msgpack) reads and writes structs; for get-or-load its
// LoadableCache runs over the store's strings, with the loader returning
// msgpack, because a LoadableCache[Item] over the Redis store would read
// back a string that is not an Item and return a zero Item without error.
func ekoLib() lib {
	return lib{
		name:   "eko/gocache",
		module: "github.com/eko/gocache/lib/v4",
		setup:  "redis store (WithExpiration 1h); marshaler.New(cache.New[any](store)) for Get/Set (msgpack); NewLoadable[string] with a msgpack loader for get-or-load (writes back asynchronously)",
		na: map[string]string{
			wHitLocal:      "no local tier with the Redis store alone (a chain with an in-memory store would add one)",
			wParallelLocal: "no local tier with the Redis store alone",
			wBatch:         "no batch API",
			wBatchLocal:    "no batch API",
		},
		open: func(s *server, load loadFunc) (*client, error) {
			rdb := s.client()
			prefix := s.ns + "eko:"
			st := redisstore.NewRedis(rdb, store.WithExpiration(time.Hour))
			m := marshaler.New(cache.New[any](st))
			loadable := cache.NewLoadable[string](func(ctx context.Context, key any) (string, []store.Option, error) {
				v, err := load(ctx, strings.TrimPrefix(key.(string), prefix))
				if err != nil {
					return "", nil, err
				}
				b, err := msgpack.Marshal(&v)
				return string(b), nil, err
			}, cache.New[string](st))
			return &client{
				set: func(ctx context.Context, key string, v Item) error {
					return m.Set(ctx, prefix+key, &v)
				},
				get: func(ctx context.Context, key string) (Item, error) {
					var v Item
					_, err := m.Get(ctx, prefix+key, &v)
					return v, err
				},
				fetch: func(ctx context.Context, key string) (Item, error) {
					var v Item
					s, err := loadable.Get(ctx, prefix+key)
					if err != nil {
						return v, err
					}
					return v, msgpack.Unmarshal([]byte(s), &v)
				},
				close: func() {
					loadable.Close()
					rdb.Close()
				},
			}, nil
		},
	}
}
