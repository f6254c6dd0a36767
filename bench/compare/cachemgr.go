package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/cachemgr/cachemgr"
)

func cachemgrLib() lib {
	return lib{
		name:   "cachemgr",
		module: "github.com/cachemgr/cachemgr",
		setup:  `New(rdb, WithPrefix("cmp")), NewCache[Item](m, "v", WithTTL(time.Hour)); defaults otherwise (msgpack, LZ4 from 1 KiB, 100ms op timeout). No batch API yet: its batch row is a loop of 100 Get, for reference`,
		na: map[string]string{
			wHitLocal:      "no local tier yet",
			wParallelLocal: "no local tier yet",
			wBatchLocal:    "no local tier yet",
		},
		open: func(s *server, load loadFunc) (*client, error) {
			rdb := s.client()
			m, err := cachemgr.New(rdb, cachemgr.WithPrefix(s.ns+"cmp"), cachemgr.WithLogger(slog.New(slog.DiscardHandler)))
			if err != nil {
				rdb.Close()
				return nil, err
			}
			c, err := cachemgr.NewCache[Item](m, "v", cachemgr.WithTTL(time.Hour))
			if err != nil {
				m.Close()
				rdb.Close()
				return nil, err
			}
			cl := &client{
				set: func(ctx context.Context, key string, v Item) error { return c.Set(ctx, key, v) },
				get: c.Get,
				fetch: func(ctx context.Context, key string) (Item, error) {
					return c.Fetch(ctx, key, func(ctx context.Context) (Item, error) { return load(ctx, key) })
				},
				batchByGet: true,
				close: func() {
					m.Close()
					rdb.Close()
				},
			}
			cl.batch = func(ctx context.Context, keys []string) (int, error) {
				for i, k := range keys {
					if _, err := c.Get(ctx, k); err != nil {
						return i, err
					}
				}
				return len(keys), nil
			}
			return cl, nil
		},
	}
}
