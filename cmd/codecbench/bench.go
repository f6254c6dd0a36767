package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/cachemgr/cachemgr"
	"github.com/cachemgr/cachemgr/codec"
	"github.com/cachemgr/cachemgr/compress"
	"github.com/cachemgr/cachemgr/internal/envelope"
	"github.com/cachemgr/cachemgr/internal/keys"
	"github.com/redis/go-redis/v9"
)

// compressors are the compressions every codec is tried with.
func compressors() []compress.Compressor {
	return []compress.Compressor{compress.LZ4(), compress.None()}
}

// payload is one value to benchmark, with the rows it produces.
type payload struct {
	name string
	// jsonSize is the size of the payload as JSON, to tell the reader what
	// "small" means.
	jsonSize int
	// measure benchmarks the payload with every codec that applies to it,
	// each with every compressor.
	measure func(ctx context.Context, bn *bench) ([]result, error)
}

// structured returns the payload v, benchmarked as a T with the msgpack
// and JSON codecs.
func structured[T any](name string, v T) payload {
	js, _ := json.Marshal(v) // the size is only informative
	return payload{
		name:     name,
		jsonSize: len(js),
		measure: func(ctx context.Context, bn *bench) ([]result, error) {
			var rows []result
			for _, cd := range []codec.Codec{codec.Msgpack(), codec.JSON()} {
				for _, cp := range compressors() {
					r, err := measure(ctx, bn, name, cd, cp, v)
					if err != nil {
						return nil, err
					}
					rows = append(rows, r)
				}
			}
			return rows, nil
		},
	}
}

// document returns the payload of a JSON document: its decoded form v
// benchmarked as an any with the msgpack and JSON codecs, and its bytes
// with the raw codec, as a Cache[[]byte] that passes JSON through would
// store them.
func document(name string, data []byte, v any) payload {
	p := structured(name, v)
	p.jsonSize = len(data)
	structuredRows := p.measure
	p.measure = func(ctx context.Context, bn *bench) ([]result, error) {
		rows, err := structuredRows(ctx, bn)
		if err != nil {
			return nil, err
		}
		for _, cp := range compressors() {
			r, err := measure(ctx, bn, name, codec.Raw(), cp, data)
			if err != nil {
				return nil, err
			}
			rows = append(rows, r)
		}
		return rows, nil
	}
	return p
}

// result is one row of the report.
type result struct {
	Payload     string `json:"payload"`
	Codec       string `json:"codec"`
	Compression string `json:"compression"`
	// EncodedBytes is the codec's output, before compression and without
	// the envelope header.
	EncodedBytes int `json:"encoded_bytes"`
	// StoredBytes is the length of the value in Redis, header included.
	StoredBytes int64 `json:"stored_bytes"`
	// Compressed tells whether the stored payload is compressed: lz4 is
	// skipped under the threshold and when it would not shrink the payload.
	Compressed bool `json:"compressed"`
	// Ratio is EncodedBytes over the stored payload (StoredBytes without
	// the header): 1 when not compressed.
	Ratio        float64 `json:"ratio"`
	EncodeNs     float64 `json:"encode_ns_per_op"`
	EncodeAllocs int64   `json:"encode_allocs_per_op"`
	DecodeNs     float64 `json:"decode_ns_per_op"`
	DecodeAllocs int64   `json:"decode_allocs_per_op"`
	RoundTripUs  float64 `json:"round_trip_us_per_op"`
	// Smallest and Fastest mark the smallest stored size and the fastest
	// round trip among the rows of the payload; ties in size are all marked.
	Smallest bool `json:"smallest"`
	Fastest  bool `json:"fastest"`
}

// bench is one run: the Redis client, a Manager per codec and compressor
// pair, and the keys they write.
type bench struct {
	rdb       *redis.Client
	prefix    string // keys written are prefix:cache:{=key}; all are deleted at the end
	threshold int
	managers  map[[2]string]*cachemgr.Manager
	caches    int // caches created, to give each its own name
}

// manager returns the Manager that uses cd and cp, creating it once.
func (bn *bench) manager(cd codec.Codec, cp compress.Compressor) (*cachemgr.Manager, error) {
	k := [2]string{cd.Name(), cp.Name()}
	if m := bn.managers[k]; m != nil {
		return m, nil
	}
	m, err := cachemgr.New(bn.rdb,
		cachemgr.WithPrefix(bn.prefix),
		cachemgr.WithCodec(cd),
		cachemgr.WithCompressor(cp),
		cachemgr.WithCompressThreshold(bn.threshold),
		// A benchmark measures; it should not time out on a busy machine
		// or trip the breaker and fail over.
		cachemgr.WithOpTimeout(10*time.Second),
		cachemgr.WithBreaker(0, time.Second),
	)
	if err != nil {
		return nil, err
	}
	bn.managers[k] = m
	return m, nil
}

// close closes every Manager; the Redis client stays open.
func (bn *bench) close() {
	for _, m := range bn.managers {
		m.Close()
	}
}

// measure produces the row of v stored with cd and cp.
func measure[T any](ctx context.Context, bn *bench, name string, cd codec.Codec, cp compress.Compressor, v T) (result, error) {
	r := result{Payload: name, Codec: cd.Name(), Compression: cp.Name()}
	fail := func(what string, err error) (result, error) {
		return result{}, fmt.Errorf("%s %s/%s: %s: %w", name, r.Codec, r.Compression, what, err)
	}
	m, err := bn.manager(cd, cp)
	if err != nil {
		return fail("manager", err)
	}
	bn.caches++
	cacheName := fmt.Sprintf("%s.%s.%d", cd.Name(), cp.Name(), bn.caches)
	c, err := cachemgr.NewCache[T](m, cacheName, cachemgr.WithTTL(10*time.Minute))
	if err != nil {
		return fail("cache", err)
	}

	// What Redis holds after a Set: its length is the stored size, and its
	// header says whether the Manager compressed the payload.
	if err := c.Set(ctx, "v", v); err != nil {
		return fail("set", err)
	}
	value, err := bn.storedValue(ctx, cacheName)
	if err != nil {
		return fail("read back", err)
	}
	h, payload, err := envelope.Parse(value, math.MaxInt32)
	if err != nil {
		return fail("read back", err)
	}
	r.StoredBytes = int64(len(value))
	r.Compressed = h.Compressor != compress.NoneID
	r.EncodedBytes = len(payload)
	if r.Compressed {
		r.EncodedBytes = h.RawLen
	}
	r.Ratio = float64(r.EncodedBytes) / float64(len(payload))

	// Encoding as Cache.Set does it, without Redis: append the encoding,
	// compress it when at least the threshold, and keep the compressed form
	// only when that made it smaller.
	var encoded, zbuf []byte
	var compressed bool
	encode := func() error {
		var err error
		if encoded, err = cd.Append(encoded[:0], &v); err != nil {
			return err
		}
		compressed = false
		if cp.ID() == compress.NoneID || len(encoded) < bn.threshold {
			return nil
		}
		zbuf, compressed, err = cp.Compress(zbuf[:0], encoded)
		return err
	}
	enc, err := benchmark(ctx, encode)
	if err != nil {
		return fail("encode", err)
	}
	r.EncodeNs, r.EncodeAllocs = nsPerOp(enc), enc.AllocsPerOp()
	if len(encoded) != r.EncodedBytes || compressed != r.Compressed {
		// Then the encode timings would be of something else.
		return fail("encode", fmt.Errorf("%d bytes, compressed %t; cachemgr stored %d bytes, compressed %t",
			len(encoded), compressed, r.EncodedBytes, r.Compressed))
	}

	// Decoding as Cache.Get does it once Redis has answered.
	var buf []byte
	decode := func() error {
		data := payload
		if r.Compressed {
			var err error
			if buf, err = cp.Decompress(buf[:0], payload, h.RawLen); err != nil {
				return err
			}
			data = buf
		}
		var out T
		return cd.Unmarshal(data, &out)
	}
	dec, err := benchmark(ctx, decode)
	if err != nil {
		return fail("decode", err)
	}
	r.DecodeNs, r.DecodeAllocs = nsPerOp(dec), dec.AllocsPerOp()

	roundTrip := func() error {
		if err := c.Set(ctx, "v", v); err != nil {
			return err
		}
		_, err := c.Get(ctx, "v")
		return err
	}
	rt, err := benchmark(ctx, roundTrip)
	if err != nil {
		return fail("round trip", err)
	}
	r.RoundTripUs = nsPerOp(rt) / 1e3
	return r, nil
}

// storedValue returns the one value stored in the cache called cacheName.
// cachemgr does not say which Redis key a cache key maps to, so the key is
// found by its "prefix:cache:" start, as the one data key there (not a
// companion such as an invalidation marker).
func (bn *bench) storedValue(ctx context.Context, cacheName string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	all, err := bn.keys(ctx, keys.EscapeGlob(bn.prefix+":"+cacheName+":")+"*")
	if err != nil {
		return nil, err
	}
	var data []string
	for _, k := range all {
		if keys.IsData(k) {
			data = append(data, k)
		}
	}
	if len(data) != 1 {
		return nil, fmt.Errorf("found data keys %q for cache %q, want one", data, cacheName)
	}
	return bn.rdb.Get(ctx, data[0]).Bytes()
}

// keys returns the keys that match pattern.
func (bn *bench) keys(ctx context.Context, pattern string) ([]string, error) {
	var ks []string
	it := bn.rdb.Scan(ctx, 0, pattern, 1000).Iterator()
	for it.Next(ctx) {
		ks = append(ks, it.Val())
	}
	return ks, it.Err()
}

// cleanup deletes every key the run wrote. It runs even when ctx has
// ended, so that an interrupted run leaves nothing behind either.
func (bn *bench) cleanup(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	ks, err := bn.keys(ctx, keys.EscapeGlob(bn.prefix+":")+"*")
	if err != nil {
		return fmt.Errorf("clean up: %w", err)
	}
	for len(ks) > 0 {
		n := min(len(ks), 500)
		if err := bn.rdb.Del(ctx, ks[:n]...).Err(); err != nil {
			return fmt.Errorf("clean up: %w", err)
		}
		ks = ks[n:]
	}
	return nil
}

// benchmark runs op under testing.Benchmark, for the time or the number of
// rounds set with setBenchtime, and returns op's first error.
func benchmark(ctx context.Context, op func() error) (testing.BenchmarkResult, error) {
	if err := ctx.Err(); err != nil {
		return testing.BenchmarkResult{}, context.Cause(ctx)
	}
	var err error
	res := testing.Benchmark(func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err = op(); err != nil {
				b.FailNow()
			}
		}
	})
	if err == nil && res.N == 0 {
		err = fmt.Errorf("benchmark did not run")
	}
	return res, err
}

// nsPerOp is res.NsPerOp without rounding to whole nanoseconds.
func nsPerOp(res testing.BenchmarkResult) float64 {
	return float64(res.T.Nanoseconds()) / float64(res.N)
}

// setBenchtime sets how long, or with "Nx" how many times, testing.Benchmark
// runs each function, and returns a function that restores the setting.
// testing.Benchmark takes this only from the -test.benchtime flag, which
// testing.Init registers on the process's flag.CommandLine.
func setBenchtime(v string) (restore func(), err error) {
	testing.Init()
	f := flag.Lookup("test.benchtime")
	if f == nil {
		return nil, fmt.Errorf("testing flag test.benchtime not registered")
	}
	old := f.Value.String()
	if err := f.Value.Set(v); err != nil {
		return nil, fmt.Errorf("benchtime %q: %w", v, err)
	}
	return func() { f.Value.Set(old) }, nil
}
