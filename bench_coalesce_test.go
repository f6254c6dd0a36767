package cachemgr_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cachemgr/cachemgr"
	"github.com/cachemgr/cachemgr/internal/redistest"
	"github.com/redis/go-redis/v9"
	"github.com/vmihailenco/msgpack/v5"
)

// benchKeys is how many keys the concurrent benchmarks spread over.
const benchKeys = 64

// BenchmarkGetConcurrent compares Redis-tier hits of a 1 KiB struct from 1,
// 8 and 32 goroutines, same run: cachemgr with coalescing, cachemgr
// without, and the raw go-redis baseline (GET and msgpack.Unmarshal, what
// go-redis/cache does on a hit). ns/op is wall time over all goroutines,
// so at 32 callers it is the inverse of throughput.
func BenchmarkGetConcurrent(b *testing.B) {
	ctx := context.Background()
	s := benchServer(b)
	v := newBenchValue(1 << 10)
	enc, err := msgpack.Marshal(v)
	if err != nil {
		b.Fatal(err)
	}
	impls := []struct {
		name string
		get  func(b *testing.B) func(i int) error
	}{
		{"raw", func(b *testing.B) func(int) error {
			rdb := s.Client(b)
			keys := make([]string, benchKeys)
			for k := range keys {
				keys[k] = fmt.Sprint("raw", k)
				if err := rdb.Set(ctx, keys[k], enc, time.Hour).Err(); err != nil {
					b.Fatal(err)
				}
			}
			return func(i int) error {
				s, err := rdb.Get(ctx, keys[i%benchKeys]).Result()
				if err != nil {
					return err
				}
				var got benchValue
				return msgpack.Unmarshal([]byte(s), &got)
			}
		}},
		{"direct", benchCacheGet(s.Client, v, false)},
		{"coalesced", benchCacheGet(s.Client, v, true)},
	}
	for _, callers := range []int{1, 8, 32} {
		for _, impl := range impls {
			b.Run(fmt.Sprintf("callers=%d/impl=%s", callers, impl.name), func(b *testing.B) {
				get := impl.get(b)
				b.ReportAllocs()
				runCallers(b, callers, get)
			})
		}
	}
}

// benchCacheGet returns the setup of a cachemgr hit benchmark.
func benchCacheGet[C redis.UniversalClient](client func(testing.TB) C, v benchValue, coalesce bool) func(b *testing.B) func(int) error {
	return func(b *testing.B) func(int) error {
		ctx := context.Background()
		m, err := cachemgr.New(client(b), cachemgr.WithPrefix("bench"), cachemgr.WithLogger(quiet),
			// A loaded machine stalls now and then; the measure is speed.
			cachemgr.WithOpTimeout(time.Second), cachemgr.WithCoalescing(coalesce))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { m.Close() })
		c, err := cachemgr.NewCache[benchValue](m, "v", cachemgr.WithTTL(time.Hour))
		if err != nil {
			b.Fatal(err)
		}
		keys := make([]string, benchKeys)
		for k := range keys {
			keys[k] = fmt.Sprint(k)
			if err := c.Set(ctx, keys[k], v); err != nil {
				b.Fatal(err)
			}
		}
		return func(i int) error {
			_, err := c.Get(ctx, keys[i%benchKeys])
			return err
		}
	}
}

// runCallers runs b.N calls of op from exactly n goroutines. Unlike
// RunParallel, n does not depend on GOMAXPROCS.
func runCallers(b *testing.B, n int, op func(i int) error) {
	b.Helper()
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	for range n {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= b.N {
					return
				}
				if err := op(i); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// BenchmarkGetLone measures a lone caller's Redis-tier hit of a 1 KiB
// struct three ways, taking turns op by op so that a noisy moment hits all
// alike: raw go-redis GET and msgpack.Unmarshal, cachemgr without
// coalescing and cachemgr with it. It reports each one's median latency
// and the coalesced path's median over the others'; ns/op covers all
// three.
func BenchmarkGetLone(b *testing.B) {
	ctx := context.Background()
	s := benchServer(b)
	v := newBenchValue(1 << 10)
	enc, err := msgpack.Marshal(v)
	if err != nil {
		b.Fatal(err)
	}
	rdb := s.Client(b)
	if err := rdb.Set(ctx, "raw", enc, time.Hour).Err(); err != nil {
		b.Fatal(err)
	}
	raw := func(int) error {
		s, err := rdb.Get(ctx, "raw").Result()
		if err != nil {
			return err
		}
		var got benchValue
		return msgpack.Unmarshal([]byte(s), &got)
	}
	ops := []func(int) error{raw, benchCacheGet(s.Client, v, false)(b), benchCacheGet(s.Client, v, true)(b)}
	lat := make([][]time.Duration, len(ops))
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		for j := range ops {
			k := (i + j) % len(ops) // each goes first in turn
			start := time.Now()
			if err := ops[k](i); err != nil {
				b.Fatal(err)
			}
			lat[k] = append(lat[k], time.Since(start))
		}
	}
	p50 := make([]float64, len(ops))
	for k := range lat {
		slices.Sort(lat[k])
		p50[k] = float64(lat[k][len(lat[k])/2].Nanoseconds())
	}
	b.ReportMetric(p50[0], "raw-p50-ns")
	b.ReportMetric(p50[1], "direct-p50-ns")
	b.ReportMetric(p50[2], "coalesced-p50-ns")
	b.ReportMetric(p50[2]/p50[1], "coalesced/direct")
	b.ReportMetric(p50[2]/p50[0], "coalesced/raw")
}

// BenchmarkGetConcurrentPaired compares Redis-tier hits of a 1 KiB struct
// from callers goroutines over 64 keys, on one node and on a 3-master
// Cluster, paired: each block makes 64 calls per caller, blocks alternate
// inside one loop. a is cachemgr's Get with coalescing; base is go-redis's
// AutoPipeline GET and msgpack.Unmarshal for 32 callers, and a plain GET
// and msgpack.Unmarshal for a lone caller (where the coalescer must cost
// nothing).
func BenchmarkGetConcurrentPaired(b *testing.B) {
	ctx := context.Background()
	v := newBenchValue(1 << 10)
	enc, err := msgpack.Marshal(v)
	if err != nil {
		b.Fatal(err)
	}
	type getter interface {
		Get(ctx context.Context, key string) *redis.StringCmd
	}
	topologies := []struct {
		name   string
		client func(b *testing.B) func(testing.TB) redis.UniversalClient
		auto   func(redis.UniversalClient) (*redis.AutoPipeliner, error)
	}{
		{"node", func(b *testing.B) func(testing.TB) redis.UniversalClient {
			s := benchServer(b)
			return func(t testing.TB) redis.UniversalClient { return s.Client(t) }
		}, func(c redis.UniversalClient) (*redis.AutoPipeliner, error) { return c.(*redis.Client).AutoPipeline() }},
		{"cluster", func(b *testing.B) func(testing.TB) redis.UniversalClient {
			cl := redistest.StartCluster(b, 3)
			return func(t testing.TB) redis.UniversalClient { return cl.Client(t) }
		}, func(c redis.UniversalClient) (*redis.AutoPipeliner, error) {
			return c.(*redis.ClusterClient).AutoPipeline()
		}},
	}
	for _, topo := range topologies {
		b.Run(topo.name, func(b *testing.B) {
			client := topo.client(b)
			for _, callers := range []int{1, 32} {
				b.Run(fmt.Sprintf("callers=%d", callers), func(b *testing.B) {
					rdb := client(b)
					get := benchCacheGet(client, v, true)(b)
					// Both sides read 64 keys in turn: a lone key would stay in
					// the server's CPU cache and flatter the side that reads it.
					keys := make([]string, benchKeys)
					for k := range keys {
						keys[k] = fmt.Sprint("raw", k)
						if err := rdb.Set(ctx, keys[k], enc, time.Hour).Err(); err != nil {
							b.Fatal(err)
						}
					}
					var g getter = rdb
					if callers > 1 {
						ap, err := topo.auto(rdb)
						if err != nil {
							b.Fatal(err)
						}
						g = ap
					}
					base := func(i int) error {
						s, err := g.Get(ctx, keys[i%benchKeys]).Result()
						if err != nil {
							return err
						}
						var got benchValue
						return msgpack.Unmarshal([]byte(s), &got)
					}
					const perCaller = 64
					block := func(op func(int) error) func() {
						return func() {
							var wg sync.WaitGroup
							for g := range callers {
								wg.Go(func() {
									for i := range perCaller {
										if err := op(g*perCaller + i); err != nil {
											b.Error(err)
											return
										}
									}
								})
							}
							wg.Wait()
						}
					}
					pairedBlocks(b, callers*perCaller, block(get), block(base))
				})
			}
		})
	}
}
