package main

import (
	"github.com/redis/go-redis/v9"
)

// goRedisCSCLib is go-redis's own client-side cache (Options.
// ClientSideCacheConfig, RESP3 CLIENT TRACKING): it keeps raw replies, so
// every local hit still decodes them.
func goRedisCSCLib() lib {
	return lib{
		name:   "go-redis ClientSideCache",
		module: "github.com/redis/go-redis/v9",
		setup:  "Options{Protocol: 3, ClientSideCacheConfig: &CacheConfig{MaxEntries: 10_000}}; GET served from its cache + msgpack.Unmarshal; miss: load, SET PX 1h",
		na: map[string]string{
			wHitRedis:      "every GET goes through its local cache; a Redis-tier read is the go-redis (hand-written) row",
			wParallelRedis: "every GET goes through its local cache; a Redis-tier read is the go-redis (hand-written) row",
			wBatch:         "MGET is not cached; a Redis-tier batch is the go-redis (hand-written) row",
			wBatchLocal:    "MGET is not cached",
		},
		open: func(s *server, load loadFunc) (*client, error) {
			opt := s.opt
			opt.Protocol = 3
			opt.ClientSideCacheConfig = &redis.ClientSideCacheConfig{MaxEntries: 10_000}
			rdb := redis.NewClient(&opt)
			prefix := s.ns + "csc:"
			get, set, fetch := handWritten(rdb, prefix, load)
			return &client{
				set:      set,
				getLocal: get,
				fetch:    fetch,
				close:    func() { rdb.Close() },
			}, nil
		},
	}
}
