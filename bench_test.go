package cachemgr_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
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

// benchValue is the struct the benchmarks cache; Data sets its size.
type benchValue struct {
	ID    int
	Name  string
	Price float64
	Data  []byte
}

var benchSizes = []int{64, 1 << 10, 64 << 10}

// benchServer returns a real redis-server when one can be started, or
// miniredis.
func benchServer(b *testing.B) *redistest.Server {
	b.Helper()
	return redistest.Start(b)
}

func newBenchValue(size int) benchValue {
	r := rand.New(rand.NewPCG(1, 2))
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(r.Uint32())
	}
	return benchValue{ID: 42, Name: "benchmark value", Price: 9.99, Data: data}
}

func newBenchCache(b *testing.B, rdb *redis.Client) *cachemgr.Cache[benchValue] {
	b.Helper()
	m, err := cachemgr.New(rdb, cachemgr.WithPrefix("bench"), cachemgr.WithLogger(quiet))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { m.Close() })
	c, err := cachemgr.NewCache[benchValue](m, "v", cachemgr.WithTTL(time.Hour))
	if err != nil {
		b.Fatal(err)
	}
	return c
}

// BenchmarkGet compares a Redis-tier hit with the raw go-redis baseline:
// GET of the same msgpack bytes and msgpack.Unmarshal, in the same run.
func BenchmarkGet(b *testing.B) {
	ctx := context.Background()
	s := benchServer(b)
	rdb := s.Client(b)
	for _, size := range benchSizes {
		v := newBenchValue(size)
		b.Run(fmt.Sprintf("raw/%dB", size), func(b *testing.B) {
			enc, err := msgpack.Marshal(v)
			if err != nil {
				b.Fatal(err)
			}
			if err := rdb.Set(ctx, "raw", enc, time.Hour).Err(); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				s, err := rdb.Get(ctx, "raw").Result()
				if err != nil {
					b.Fatal(err)
				}
				var got benchValue
				if err := msgpack.Unmarshal([]byte(s), &got); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("cachemgr/%dB", size), func(b *testing.B) {
			c := newBenchCache(b, rdb)
			key := fmt.Sprint(size)
			if err := c.Set(ctx, key, v); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.Get(ctx, key); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkFetchHit measures Fetch when the value is cached.
func BenchmarkFetchHit(b *testing.B) {
	ctx := context.Background()
	rdb := benchServer(b).Client(b)
	for _, size := range benchSizes {
		v := newBenchValue(size)
		b.Run(fmt.Sprintf("%dB", size), func(b *testing.B) {
			c := newBenchCache(b, rdb)
			key := fmt.Sprint(size)
			load := func(context.Context) (benchValue, error) { return v, nil }
			if _, err := c.Fetch(ctx, key, load); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.Fetch(ctx, key, load); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkSet compares Set with a raw msgpack.Marshal and SET PX.
func BenchmarkSet(b *testing.B) {
	ctx := context.Background()
	rdb := benchServer(b).Client(b)
	for _, size := range benchSizes {
		v := newBenchValue(size)
		b.Run(fmt.Sprintf("raw/%dB", size), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				enc, err := msgpack.Marshal(v)
				if err != nil {
					b.Fatal(err)
				}
				if err := rdb.Set(ctx, "raw", enc, time.Hour).Err(); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("cachemgr/%dB", size), func(b *testing.B) {
			c := newBenchCache(b, rdb)
			b.ReportAllocs()
			for b.Loop() {
				if err := c.Set(ctx, fmt.Sprint(size), v); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkGetKinds compares a Redis-tier hit of a plain, a versioned and
// a tagged 1 KiB entry in the same run.
func BenchmarkGetKinds(b *testing.B) {
	ctx := context.Background()
	rdb := benchServer(b).Client(b)
	v := newBenchValue(1 << 10)
	kinds := []struct {
		name string
		opts []cachemgr.CacheOption
		tags []string
	}{
		{"plain", nil, nil},
		{"versioned", []cachemgr.CacheOption{cachemgr.WithVersioned(true)}, nil},
		{"tagged", nil, []string{"category:7"}},
	}
	for _, k := range kinds {
		b.Run(k.name, func(b *testing.B) {
			m, err := cachemgr.New(rdb, cachemgr.WithPrefix("bench"), cachemgr.WithLogger(quiet))
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { m.Close() })
			c, err := cachemgr.NewCache[benchValue](m, k.name, append(k.opts, cachemgr.WithTTL(time.Hour))...)
			if err != nil {
				b.Fatal(err)
			}
			if err := c.Set(ctx, "k", v, cachemgr.Tags(k.tags...)); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.Get(ctx, "k"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkInvalidateTags measures InvalidateTags on a tag carried by 10,
// 1,000 and 100,000 entries: one round trip whatever the count.
func BenchmarkInvalidateTags(b *testing.B) {
	ctx := context.Background()
	rdb := benchServer(b).Client(b)
	m, err := cachemgr.New(rdb, cachemgr.WithPrefix("bench"), cachemgr.WithLogger(quiet))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { m.Close() })
	c, err := cachemgr.NewCache[int](m, "t", cachemgr.WithTTL(time.Hour))
	if err != nil {
		b.Fatal(err)
	}
	written := 0
	for _, n := range []int{10, 1000, 100000} {
		tag := "shared"
		for ; written < n; written++ {
			// Entries are written through the cache so they carry the tag.
			if err := c.Set(ctx, fmt.Sprint(written), written, cachemgr.Tags(tag)); err != nil {
				b.Fatal(err)
			}
		}
		b.Run(fmt.Sprintf("%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := m.InvalidateTags(ctx, tag); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkSetTags compares Set without tags and with one and three tags.
func BenchmarkSetTags(b *testing.B) {
	ctx := context.Background()
	rdb := benchServer(b).Client(b)
	c := newBenchCache(b, rdb)
	v := newBenchValue(1 << 10)
	for _, tags := range [][]string{nil, {"a"}, {"a", "b", "c"}} {
		b.Run(fmt.Sprintf("%dtags", len(tags)), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := c.Set(ctx, "k", v, cachemgr.Tags(tags...)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkL1 compares an L1 hit with a Redis-tier hit of the same 1 KiB
// struct in the same run, and measures parallel L1 hits.
func BenchmarkL1(b *testing.B) {
	ctx := context.Background()
	rdb := benchServer(b).Client(b)
	v := newBenchValue(1 << 10)
	for _, l1 := range []int{0, 10000} {
		m, err := cachemgr.New(rdb, cachemgr.WithPrefix("bench"), cachemgr.WithLogger(quiet), cachemgr.WithL1(l1), cachemgr.WithL1TTL(time.Hour))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { m.Close() })
		c, err := cachemgr.NewCache[benchValue](m, "l1", cachemgr.WithTTL(time.Hour))
		if err != nil {
			b.Fatal(err)
		}
		if err := c.Set(ctx, "k", v); err != nil {
			b.Fatal(err)
		}
		deadline := time.Now().Add(5 * time.Second)
		for l1 > 0 && m.Stats().L1Hits == 0 && time.Now().Before(deadline) {
			c.Get(ctx, "k") // until the subscription is up and the entry cached
			time.Sleep(time.Millisecond)
		}
		name := map[bool]string{false: "redis", true: "l1"}[l1 > 0]
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.Get(ctx, "k"); err != nil {
					b.Fatal(err)
				}
			}
		})
		if l1 > 0 {
			b.Run("l1-parallel", func(b *testing.B) {
				b.ReportAllocs()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if _, err := c.Get(ctx, "k"); err != nil {
							b.Error(err)
							return
						}
					}
				})
			})
		}
	}
}

// BenchmarkInvalidationLatency measures the time from A's Delete returning
// to B's L1 no longer serving the key, over b.N events; it reports the
// median and p99 as custom metrics.
func BenchmarkInvalidationLatency(b *testing.B) {
	ctx := context.Background()
	s := benchServer(b)
	newM := func() (*cachemgr.Manager, *cachemgr.Cache[int]) {
		m, err := cachemgr.New(s.Client(b), cachemgr.WithPrefix("bench"), cachemgr.WithLogger(quiet), cachemgr.WithL1(100), cachemgr.WithL1TTL(time.Hour))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { m.Close() })
		c, err := cachemgr.NewCache[int](m, "inv", cachemgr.WithTTL(time.Hour))
		if err != nil {
			b.Fatal(err)
		}
		return m, c
	}
	_, ca := newM()
	mb, cb := newM()
	var lat []time.Duration
	for i := 0; b.Loop(); i++ {
		if err := ca.Set(ctx, "k", i); err != nil {
			b.Fatal(err)
		}
		for {
			before := mb.Stats().L1Hits
			if v, err := cb.Get(ctx, "k"); err == nil && v == i && mb.Stats().L1Hits > before {
				break // B serves i from its L1
			}
			runtime.Gosched()
		}
		if err := ca.Delete(ctx, "k"); err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		for {
			before := mb.Stats().L1Hits
			cb.Get(ctx, "k")
			if mb.Stats().L1Hits == before {
				break
			}
			runtime.Gosched() // leave the listener goroutine a core
		}
		lat = append(lat, time.Since(start))
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}

// BenchmarkStaleHit compares a fresh hit with a stale hit whose refresh is
// already running (the common case: the first stale hit starts it, the
// rest only find it under way), same run.
func BenchmarkStaleHit(b *testing.B) {
	ctx := context.Background()
	rdb := benchServer(b).Client(b)
	v := newBenchValue(1 << 10)
	var offset atomic.Int64
	m, err := cachemgr.New(rdb, cachemgr.WithPrefix("bench"), cachemgr.WithLogger(quiet),
		cachemgr.WithClock(func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { m.Close() })
	c, err := cachemgr.NewCache[benchValue](m, "swr", cachemgr.WithTTL(time.Hour), cachemgr.WithJitter(0), cachemgr.WithStale(time.Hour))
	if err != nil {
		b.Fatal(err)
	}
	release := make(chan struct{})
	b.Cleanup(func() { close(release) })
	load := func(ctx context.Context) (benchValue, error) {
		select {
		case <-release:
		case <-ctx.Done():
		}
		return v, nil
	}
	if err := c.Set(ctx, "k", v); err != nil {
		b.Fatal(err)
	}
	b.Run("fresh", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := c.Fetch(ctx, "k", load); err != nil {
				b.Fatal(err)
			}
		}
	})
	offset.Store(int64(time.Hour + time.Minute))
	b.Run("stale", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := c.Fetch(ctx, "k", load); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkCrossProcessStampede runs 1,000 Fetches of one missing key from
// 4 Managers (250 each) against a 50 ms loader, and reports how far the
// last caller finishes past the loader's own time ("over-ms") and the
// loader calls per stampede.
func BenchmarkCrossProcessStampede(b *testing.B) {
	s := benchServer(b)
	const loadTime = 50 * time.Millisecond
	var caches []*cachemgr.Cache[int]
	for i := 0; i < 4; i++ {
		m, err := cachemgr.New(s.Client(b), cachemgr.WithPrefix("bench"), cachemgr.WithLogger(quiet), cachemgr.WithOpTimeout(time.Second))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { m.Close() })
		c, err := cachemgr.NewCache[int](m, "stampede")
		if err != nil {
			b.Fatal(err)
		}
		caches = append(caches, c)
	}
	var loads atomic.Int64
	load := func(context.Context) (int, error) {
		loads.Add(1)
		time.Sleep(loadTime)
		return 1, nil
	}
	var over time.Duration
	for i := 0; b.Loop(); i++ {
		key := fmt.Sprint("hot", i)
		start := time.Now()
		var wg sync.WaitGroup
		for _, c := range caches {
			for g := 0; g < 250; g++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if _, err := c.Fetch(context.Background(), key, load); err != nil {
						b.Error(err)
					}
				}()
			}
		}
		wg.Wait()
		over += time.Since(start) - loadTime
	}
	b.ReportMetric(float64(over.Milliseconds())/float64(b.N), "over-ms")
	b.ReportMetric(float64(loads.Load())/float64(b.N), "loads/op")
}

// pairedBlocks runs a and base alternately, one block each per iteration
// of the benchmark loop (which goes first alternates too), so that both see
// the same machine load. ops is how many operations one block makes. It
// reports each side's time per operation and, as "ratio", the median over
// the iterations of a's block time over base's: a pause of the whole
// process in one block does not move it. Run with -count 5 or more and take
// the median and spread of the ratios across runs.
func pairedBlocks(b *testing.B, ops int, a, base func()) {
	b.Helper()
	var ta, tb time.Duration
	var ratios []float64
	timed := func(f func()) time.Duration {
		start := time.Now()
		f()
		return time.Since(start)
	}
	n := 0
	for i := 0; b.Loop(); i++ {
		var da, db time.Duration
		if i%2 == 0 {
			da, db = timed(a), timed(base)
		} else {
			db, da = timed(base), timed(a)
		}
		ta, tb, n = ta+da, tb+db, n+ops
		ratios = append(ratios, float64(da)/float64(db))
	}
	slices.Sort(ratios)
	b.ReportMetric(float64(ta.Nanoseconds())/float64(n), "a-ns/op")
	b.ReportMetric(float64(tb.Nanoseconds())/float64(n), "base-ns/op")
	b.ReportMetric(ratios[len(ratios)/2], "ratio")
}

// reportAllocs reports the bytes and allocations of one call of each of a
// and base, averaged over 200 calls counted outside the timed loop.
func reportAllocs(b *testing.B, a, base func()) {
	b.Helper()
	for _, s := range []struct {
		name string
		f    func()
	}{{"a", a}, {"base", base}} {
		const runs = 200
		s.f()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for range runs {
			s.f()
		}
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/runs, s.name+"-B/op")
		b.ReportMetric(float64(after.Mallocs-before.Mallocs)/runs, s.name+"-allocs/op")
	}
}

// repeat returns a function that calls f n times, failing b on an error.
func repeat(b *testing.B, n int, f func() error) func() {
	return func() {
		for range n {
			if err := f(); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// rawGet returns the hand-written hit that cachemgr's Get is compared
// with: GET of msgpack bytes written under key, and msgpack.Unmarshal.
func rawGet(b *testing.B, rdb *redis.Client, key string, v benchValue) func() error {
	b.Helper()
	enc, err := msgpack.Marshal(v)
	if err != nil {
		b.Fatal(err)
	}
	if err := rdb.Set(context.Background(), key, enc, time.Hour).Err(); err != nil {
		b.Fatal(err)
	}
	return func() error {
		s, err := rdb.Get(context.Background(), key).Result()
		if err != nil {
			return err
		}
		var got benchValue
		return msgpack.Unmarshal([]byte(s), &got)
	}
}

// BenchmarkGetPaired compares a Redis-tier hit of a 1 KiB struct (a,
// cachemgr's Get, coalescing on) with the hand-written hit (base: GET and
// msgpack.Unmarshal of the same bytes), paired: blocks of 16 calls each,
// alternating inside one loop. "ctx-deadlines" is a client with
// ContextTimeoutEnabled; "go-redis-defaults" one built from
// redis.Options{Addr} alone, on which the Manager must still bound every
// call by the op timeout.
func BenchmarkGetPaired(b *testing.B) {
	s := benchServer(b)
	v := newBenchValue(1 << 10)
	clients := []struct {
		name   string
		client func(testing.TB) *redis.Client
	}{
		{"ctx-deadlines", s.Client},
		{"go-redis-defaults", func(t testing.TB) *redis.Client {
			rdb := redis.NewClient(&redis.Options{Addr: s.Addr()})
			t.Cleanup(func() { rdb.Close() })
			return rdb
		}},
	}
	for _, cl := range clients {
		b.Run(cl.name, func(b *testing.B) {
			rdb := cl.client(b)
			get := benchCacheGet(func(testing.TB) *redis.Client { return rdb }, v, true)(b)
			a := func() error { return get(0) }
			base := rawGet(b, rdb, "raw", v)
			const block = 16
			pairedBlocks(b, block, repeat(b, block, a), repeat(b, block, base))
			reportAllocs(b, repeat(b, 1, a), repeat(b, 1, base))
		})
	}
}

// BenchmarkFetchMissPaired compares a Fetch miss of a 1 KiB struct whose
// loader returns at once (a) with the hand-written miss (base: GET that
// finds nothing, msgpack.Marshal, SET EX), paired: blocks of 16 misses each,
// alternating inside one loop, every call on a key not used before. The
// write-behind case takes the write-back off the caller's path
// (WithWriteBehind): its time is what the caller waits for.
func BenchmarkFetchMissPaired(b *testing.B) {
	ctx := context.Background()
	rdb := benchServer(b).Client(b)
	v := newBenchValue(1 << 10)
	load := func(context.Context) (benchValue, error) { return v, nil }
	for _, behind := range []bool{false, true} {
		b.Run(fmt.Sprintf("write-behind=%v", behind), func(b *testing.B) {
			m, err := cachemgr.New(rdb, cachemgr.WithPrefix("bench"), cachemgr.WithLogger(quiet))
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { m.Close() })
			c, err := cachemgr.NewCache[benchValue](m, fmt.Sprint("miss", behind), cachemgr.WithTTL(time.Hour), cachemgr.WithWriteBehind(behind))
			if err != nil {
				b.Fatal(err)
			}
			// Keys new to every run of the benchmark too (-count).
			run := time.Now().UnixNano()
			var n atomic.Int64
			a := func() error {
				_, err := c.Fetch(ctx, fmt.Sprint(run, ":", n.Add(1)), load)
				return err
			}
			base := func() error {
				key := fmt.Sprint("raw-miss:", run, ":", n.Add(1))
				if err := rdb.Get(ctx, key).Err(); err != redis.Nil {
					return fmt.Errorf("GET %s: %v, want redis.Nil", key, err)
				}
				enc, err := msgpack.Marshal(v)
				if err != nil {
					return err
				}
				return rdb.Set(ctx, key, enc, time.Hour).Err()
			}
			const block = 16
			pairedBlocks(b, block, repeat(b, block, a), repeat(b, block, base))
			reportAllocs(b, repeat(b, 1, a), repeat(b, 1, base))
		})
	}
}
