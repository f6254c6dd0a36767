package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/redis/rueidis"
	"github.com/vmihailenco/msgpack/v5"
)

// rueidisLib is github.com/redis/rueidis over RESP3: plain commands (Do,
// the Redis tier) or client-side caching (DoCache, the local tier, kept
// coherent by Redis' invalidation messages). rueidisaside, its
// get-or-load layer, is not served by the module proxy, so there is no
// load workload.
func rueidisLib(csc bool) lib {
	l := lib{
		name:   "rueidis",
		module: "github.com/redis/rueidis",
		setup:  "ClientOption{InitAddress: addr} (RESP3, auto-pipelining); Do(GET) + msgpack.Unmarshal; MGET for batches",
		na: map[string]string{
			wHitLocal:      "see the rueidis CSC row",
			wParallelLocal: "see the rueidis CSC row",
			wBatchLocal:    "see the rueidis CSC row",
		},
	}
	if csc {
		l.name = "rueidis CSC"
		l.setup = "same client; DoCache(GET, 1h) + msgpack.Unmarshal (client-side caching; the local tier holds the RESP reply); DoMultiCache for batches"
		l.na = map[string]string{
			wHitRedis:      "see the rueidis row",
			wParallelRedis: "see the rueidis row",
			wBatch:         "see the rueidis row",
		}
	}
	na := "rueidisaside (its get-or-load layer) is not served by the module proxy; rueidis has no load API"
	l.na[wMiss], l.na[wStampede1], l.na[wStampede4] = na, na, na
	l.open = func(s *server, _ loadFunc) (*client, error) {
		opt := rueidis.ClientOption{InitAddress: []string{s.opt.Addr}}
		if url := os.Getenv("REDIS_URL"); url != "" {
			var err error
			if opt, err = rueidis.ParseURL(url); err != nil {
				return nil, err
			}
		}
		rc, err := rueidis.NewClient(opt)
		if err != nil {
			return nil, err
		}
		prefix := s.ns + "rue:"
		decode := func(r rueidis.RedisResult) (Item, error) {
			var v Item
			b, err := r.AsBytes()
			if err != nil {
				return v, err
			}
			return v, msgpack.Unmarshal(b, &v)
		}
		cl := &client{
			set: func(ctx context.Context, key string, v Item) error {
				b, err := msgpack.Marshal(&v)
				if err != nil {
					return err
				}
				return rc.Do(ctx, rc.B().Set().Key(prefix+key).Value(rueidis.BinaryString(b)).Ex(time.Hour).Build()).Error()
			},
			close: rc.Close,
		}
		if csc {
			cl.getLocal = func(ctx context.Context, key string) (Item, error) {
				return decode(rc.DoCache(ctx, rc.B().Get().Key(prefix+key).Cache(), time.Hour))
			}
			cl.batchLocal = func(ctx context.Context, keys []string) (int, error) {
				cmds := make([]rueidis.CacheableTTL, len(keys))
				for i, k := range keys {
					cmds[i] = rueidis.CT(rc.B().Get().Key(prefix+k).Cache(), time.Hour)
				}
				n := 0
				for _, r := range rc.DoMultiCache(ctx, cmds...) {
					if rueidis.IsRedisNil(r.Error()) {
						continue
					}
					if _, err := decode(r); err != nil {
						return n, err
					}
					n++
				}
				return n, nil
			}
		} else {
			cl.get = func(ctx context.Context, key string) (Item, error) {
				return decode(rc.Do(ctx, rc.B().Get().Key(prefix+key).Build()))
			}
			cl.batch = func(ctx context.Context, keys []string) (int, error) {
				full := make([]string, len(keys))
				for i, k := range keys {
					full[i] = prefix + k
				}
				vals, err := rc.Do(ctx, rc.B().Mget().Key(full...).Build()).ToArray()
				if err != nil {
					return 0, err
				}
				n := 0
				for _, m := range vals {
					if m.IsNil() {
						continue
					}
					b, err := m.AsBytes()
					if err != nil {
						return n, err
					}
					var v Item
					if err := msgpack.Unmarshal(b, &v); err != nil {
						return n, fmt.Errorf("decode: %w", err)
					}
					n++
				}
				return n, nil
			}
		}
		return cl, nil
	}
	return l
}
