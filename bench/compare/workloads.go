package main

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Workload names, in table order.
const (
	wHitRedis      = "hit, Redis tier"
	wHitLocal      = "hit, local tier"
	wMiss          = "miss + load"
	wStampede1     = "stampede, 1 client"
	wStampede4     = "stampede, 4 clients"
	wBatch         = "batch of 100, Redis tier"
	wBatchLocal    = "batch of 100, local tier"
	wParallelRedis = "parallel hits, Redis tier"
	wParallelLocal = "parallel hits, local tier"
)

const (
	stampedeCallers = 1000
	stampedeDelay   = 20 * time.Millisecond
	batchSize       = 100
	// parallelism is RunParallel's goroutines per GOMAXPROCS, enough to
	// keep a connection pool or a pipeline busy.
	parallelism = 8
)

// workload is one row group of the table.
type workload struct {
	name string
	// clients is how many library instances run it, as that many
	// processes would.
	clients int
	// delay is how long each loader call takes.
	delay time.Duration
	// stampede makes the loader calls a column of the table.
	stampede bool
	// uses reports whether the library has the API the workload needs.
	uses func(*client) bool
	run  func(b *testing.B, cs []*client)
}

func workloads() []workload {
	return []workload{
		{name: wHitRedis, clients: 1, uses: func(c *client) bool { return c.get != nil }, run: hit(func(c *client) getFunc { return c.get })},
		{name: wHitLocal, clients: 1, uses: func(c *client) bool { return c.getLocal != nil }, run: hit(func(c *client) getFunc { return c.getLocal })},
		{name: wMiss, clients: 1, uses: hasFetch, run: missLoad},
		{name: wStampede1, clients: 1, delay: stampedeDelay, stampede: true, uses: hasFetch, run: stampede},
		{name: wStampede4, clients: 4, delay: stampedeDelay, stampede: true, uses: hasFetch, run: stampede},
		{name: wBatch, clients: 1, uses: func(c *client) bool { return c.batch != nil }, run: batch(func(c *client) batchFunc { return c.batch })},
		{name: wBatchLocal, clients: 1, uses: func(c *client) bool { return c.batchLocal != nil }, run: batch(func(c *client) batchFunc { return c.batchLocal })},
		{name: wParallelRedis, clients: 1, uses: func(c *client) bool { return c.get != nil }, run: parallel(func(c *client) getFunc { return c.get })},
		{name: wParallelLocal, clients: 1, uses: func(c *client) bool { return c.getLocal != nil }, run: parallel(func(c *client) getFunc { return c.getLocal })},
	}
}

// cpuMeter reports the process's CPU time per op: user and system time of
// every thread, so the library's background goroutines and the garbage
// collector count, and redis-server (another process) does not. Unlike
// ns/op it hardly moves when other processes share the machine.
type cpuMeter struct {
	b     *testing.B
	start time.Duration
}

func startCPU(b *testing.B) cpuMeter { return cpuMeter{b, processCPU()} }

func (m cpuMeter) stop() {
	m.b.ReportMetric(float64(processCPU()-m.start)/float64(m.b.N), "cpu-ns/op")
}

type (
	getFunc   = func(ctx context.Context, key string) (Item, error)
	batchFunc = func(ctx context.Context, keys []string) (int, error)
)

func hasFetch(c *client) bool { return c.fetch != nil }

// runs reports whether l runs w: it has the API, and no note rules the
// row out.
func runs(l lib, c *client, w workload) bool {
	_, ruledOut := l.na[w.name]
	return w.uses(c) && !ruledOut
}

// item is the value every workload stores and every loader returns.
var item = newItem()

// bench returns the benchmark of w on l: it empties the server, opens
// w.clients instances of l, runs w, and reports loader calls per op. The
// instances are closed after the timer stops.
func bench(s *server, l lib, w workload) func(b *testing.B) {
	return func(b *testing.B) {
		ctx := context.Background()
		if err := s.reset(ctx); err != nil {
			b.Fatal(err)
		}
		var loads atomic.Int64
		load := func(ctx context.Context, key string) (Item, error) {
			loads.Add(1)
			if w.delay > 0 {
				t := time.NewTimer(w.delay)
				defer t.Stop()
				select {
				case <-t.C:
				case <-ctx.Done():
					return Item{}, ctx.Err()
				}
			}
			return item, nil
		}
		cs := make([]*client, w.clients)
		for i := range cs {
			c, err := l.open(s, load)
			if err != nil {
				b.Fatalf("open %s: %v", l.name, err)
			}
			defer c.close()
			cs[i] = c
		}
		w.run(b, cs)
		b.StopTimer()
		if w.stampede || w.name == wMiss {
			b.ReportMetric(float64(loads.Load())/float64(b.N), "loads/op")
		}
	}
}

// hit reads one cached key.
func hit(pick func(*client) getFunc) func(*testing.B, []*client) {
	return func(b *testing.B, cs []*client) {
		ctx := context.Background()
		c := cs[0]
		get := pick(c)
		if err := c.set(ctx, "hit", item); err != nil {
			b.Fatalf("set: %v", err)
		}
		// The first read fills a client-side cache.
		if _, err := get(ctx, "hit"); err != nil {
			b.Fatalf("first get: %v", err)
		}
		b.ReportAllocs()
		var v Item
		var err error
		cpu := startCPU(b)
		for b.Loop() {
			if v, err = get(ctx, "hit"); err != nil {
				b.Fatalf("get: %v", err)
			}
		}
		cpu.stop()
		if v.ID != item.ID || v.Description != item.Description {
			b.Fatalf("get returned %+v, want the stored Item", v.ID)
		}
	}
}

// missLoad fetches a new key each op; the loader answers at once.
func missLoad(b *testing.B, cs []*client) {
	ctx := context.Background()
	c := cs[0]
	b.ReportAllocs()
	i := 0
	cpu := startCPU(b)
	for b.Loop() {
		i++
		v, err := c.fetch(ctx, "miss:"+strconv.Itoa(i))
		if err != nil {
			b.Fatalf("fetch: %v", err)
		}
		if v.ID != item.ID {
			b.Fatalf("fetch returned ID %d, want %d", v.ID, item.ID)
		}
	}
	cpu.stop()
}

// stampede has 1,000 goroutines, spread over the clients, fetch one new
// key at the same moment; the loader takes 20ms. An op is one stampede.
func stampede(b *testing.B, cs []*client) {
	ctx := context.Background()
	b.ReportAllocs()
	var failed atomic.Int64
	var firstErr atomic.Value
	i := 0
	cpu := startCPU(b)
	for b.Loop() {
		i++
		key := "stampede:" + strconv.Itoa(i)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for g := range stampedeCallers {
			c := cs[g%len(cs)]
			wg.Go(func() {
				<-start
				v, err := c.fetch(ctx, key)
				if err == nil && v.ID != item.ID {
					err = fmt.Errorf("got ID %d, want %d", v.ID, item.ID)
				}
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err)
				}
			})
		}
		close(start)
		wg.Wait()
	}
	cpu.stop()
	if n := failed.Load(); n > 0 {
		b.Fatalf("%d of %d fetches failed, first: %v", n, b.N*stampedeCallers, firstErr.Load())
	}
}

// batch reads 100 cached keys per op.
func batch(pick func(*client) batchFunc) func(*testing.B, []*client) {
	return func(b *testing.B, cs []*client) {
		ctx := context.Background()
		c := cs[0]
		get := pick(c)
		keys := make([]string, batchSize)
		for i := range keys {
			keys[i] = "batch:" + strconv.Itoa(i)
			if err := c.set(ctx, keys[i], item); err != nil {
				b.Fatalf("set: %v", err)
			}
		}
		if _, err := get(ctx, keys); err != nil {
			b.Fatalf("first batch: %v", err)
		}
		b.ReportAllocs()
		cpu := startCPU(b)
		for b.Loop() {
			n, err := get(ctx, keys)
			if err != nil {
				b.Fatalf("batch: %v", err)
			}
			if n != batchSize {
				b.Fatalf("batch found %d keys, want %d", n, batchSize)
			}
		}
		cpu.stop()
	}
}

// parallel reads one cached key from GOMAXPROCS*parallelism goroutines.
func parallel(pick func(*client) getFunc) func(*testing.B, []*client) {
	return func(b *testing.B, cs []*client) {
		ctx := context.Background()
		c := cs[0]
		get := pick(c)
		if err := c.set(ctx, "hit", item); err != nil {
			b.Fatalf("set: %v", err)
		}
		if _, err := get(ctx, "hit"); err != nil {
			b.Fatalf("first get: %v", err)
		}
		b.SetParallelism(parallelism)
		b.ReportAllocs()
		b.ResetTimer()
		cpu := startCPU(b)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := get(ctx, "hit"); err != nil {
					b.Errorf("get: %v", err)
					return
				}
			}
		})
		cpu.stop()
	}
}
