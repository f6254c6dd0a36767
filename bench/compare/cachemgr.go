package main

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/cachemgr/cachemgr"
)

func cachemgrLib() lib {
	return lib{
		name:   "cachemgr",
		module: "github.com/cachemgr/cachemgr",
		setup:  `New(rdb, WithPrefix("cmp")), NewCache[Item](m, "v", WithTTL(time.Hour)); defaults otherwise (msgpack, LZ4 from 1 KiB, 100ms op timeout, 5s lease); batch = GetMany; local tier = a second Manager with WithL1(10_000) (decoded values, kept coherent by pub/sub)`,
		open: func(s *server, load loadFunc) (*client, error) {
			rdb := s.client()
			quiet := cachemgr.WithLogger(slog.New(slog.DiscardHandler))
			m, err := cachemgr.New(rdb, cachemgr.WithPrefix(s.ns+"cmp"), quiet)
			if err != nil {
				rdb.Close()
				return nil, err
			}
			ml, err := cachemgr.New(rdb, cachemgr.WithPrefix(s.ns+"cmp"), quiet, cachemgr.WithL1(10_000), cachemgr.WithL1TTL(time.Hour))
			if err != nil {
				m.Close()
				rdb.Close()
				return nil, err
			}
			closeAll := func() {
				ml.Close()
				m.Close()
				rdb.Close()
			}
			c, err := cachemgr.NewCache[Item](m, "v", cachemgr.WithTTL(time.Hour))
			if err != nil {
				closeAll()
				return nil, err
			}
			cl1, err := cachemgr.NewCache[Item](ml, "v", cachemgr.WithTTL(time.Hour))
			if err != nil {
				closeAll()
				return nil, err
			}
			if err := waitL1(ml, cl1); err != nil {
				closeAll()
				return nil, err
			}
			count := func(c *cachemgr.Cache[Item]) func(ctx context.Context, keys []string) (int, error) {
				return func(ctx context.Context, keys []string) (int, error) {
					_, errs, err := c.GetMany(ctx, keys)
					if err != nil {
						return 0, err
					}
					n := 0
					for _, e := range errs {
						if e == nil {
							n++
						}
					}
					return n, nil
				}
			}
			return &client{
				set:      func(ctx context.Context, key string, v Item) error { return c.Set(ctx, key, v) },
				get:      c.Get,
				getLocal: cl1.Get,
				fetch: func(ctx context.Context, key string) (Item, error) {
					return c.Fetch(ctx, key, func(ctx context.Context) (Item, error) { return load(ctx, key) })
				},
				batch:      count(c),
				batchLocal: count(cl1),
				close:      closeAll,
			}, nil
		},
	}
}

// waitL1 waits until ml's event subscription is up, which is when its L1
// tier starts serving.
func waitL1(ml *cachemgr.Manager, c *cachemgr.Cache[Item]) error {
	ctx := context.Background()
	if err := c.Set(ctx, "l1-probe", Item{}); err != nil {
		return err
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		c.Get(ctx, "l1-probe")
		before := ml.Stats().L1Hits
		c.Get(ctx, "l1-probe")
		if ml.Stats().L1Hits > before {
			return nil
		}
		time.Sleep(5 * time.Millisecond)
	}
	return errors.New("cachemgr L1 tier did not start serving within 5s")
}
