// Package codectest measures which codec and compression suit a value
// type of your own: for every pair of codec and compressor, the bytes
// cachemgr stores for a sample value, and the time to encode and decode it.
//
// Measure it with your type, not with a stand-in: decoding into a struct
// and decoding into maps of interfaces differ several times over in speed,
// and not by the same factor for every codec.
//
// Two entry points share one measuring core. [Run] adds sub-benchmarks to
// a benchmark of yours, for go test -bench and benchstat:
//
//	func BenchmarkProductCodecs(b *testing.B) {
//		codectest.Run(b, sampleProduct())
//	}
//
//	go test -run '^$' -bench ProductCodecs -count 10 | benchstat -
//
// [Measure] returns a [Report] with the sizes and, for each measurement, the
// median over several runs with its 95% confidence interval. Every run
// times every row once, in turn, so rows compare run by run; a row is
// marked the fastest only when the confidence interval of its per-run
// ratio to every other row is wholly in its favour, so a difference
// within the noise is not called a win.
//
// Stored sizes are not computed: each pair writes the sample through a real
// cachemgr.Manager (on an embedded miniredis, or on the server given with
// the [Redis] option) and reads back what Redis holds, header included.
// The timed encode and decode repeat what a Set does before it talks to
// Redis, and what a Get does after; each timed encode checks that it
// produced the payload cachemgr stored, so the two cannot drift apart.
package codectest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/cachemgr/cachemgr/codec"
	"github.com/cachemgr/cachemgr/compress"
	"github.com/redis/go-redis/v9"
)

// ErrInvalidOption reports an option with a value Measure or Run cannot use.
var ErrInvalidOption = errors.New("codectest: invalid option")

// config is what the options set.
type config struct {
	codecs      []codec.Codec
	compressors []compress.Compressor
	threshold   int
	runs        int
	blockTime   time.Duration
	ops         int // fixed operations per block; 0: sized by blockTime
	rdb         redis.UniversalClient
}

func newConfig(opts []Option) (config, error) {
	cfg := config{
		codecs:      []codec.Codec{codec.Msgpack(), codec.JSON(), codec.Raw()},
		compressors: []compress.Compressor{compress.LZ4(), compress.None()},
		threshold:   1 << 10,
		runs:        10,
		blockTime:   10 * time.Millisecond,
	}
	for _, opt := range opts {
		if opt == nil {
			return config{}, fmt.Errorf("%w: nil option", ErrInvalidOption)
		}
		if err := opt(&cfg); err != nil {
			return config{}, err
		}
	}
	return cfg, nil
}

// Option configures one Measure or Run.
type Option func(*config) error

// Codecs sets the codecs to try. A codec that cannot encode the sample's
// type (codec.Raw for anything but bytes and strings) is left out and
// listed in Report.Skipped with the reason. Default: codec.Msgpack(),
// codec.JSON() and codec.Raw().
func Codecs(cds ...codec.Codec) Option {
	return func(c *config) error {
		if len(cds) == 0 {
			return fmt.Errorf("%w: no codecs", ErrInvalidOption)
		}
		for _, cd := range cds {
			if cd == nil || cd.ID() == 0 {
				return fmt.Errorf("%w: nil codec or codec ID 0", ErrInvalidOption)
			}
		}
		c.codecs = cds
		return nil
	}
}

// Compressors sets the compressions to try with every codec;
// compress.None() stores payloads as encoded. Default: compress.LZ4() and
// compress.None().
func Compressors(cps ...compress.Compressor) Option {
	return func(c *config) error {
		if len(cps) == 0 {
			return fmt.Errorf("%w: no compressors", ErrInvalidOption)
		}
		for _, cp := range cps {
			if cp == nil {
				return fmt.Errorf("%w: nil compressor", ErrInvalidOption)
			}
		}
		c.compressors = cps
		return nil
	}
}

// Threshold sets the encoded size from which payloads are compressed, as
// cachemgr.WithCompressThreshold does. Default: 1024 bytes, cachemgr's.
func Threshold(n int) Option {
	return func(c *config) error {
		if n < 0 {
			return fmt.Errorf("%w: threshold %d", ErrInvalidOption, n)
		}
		c.threshold = n
		return nil
	}
}

// Runs sets how many times Measure times every measurement. The runs
// alternate between the pairs, so a noisy moment of the machine falls on
// all of them, and the report gives the median and its confidence
// interval, which needs at least 6 runs to reach 95%; with fewer, no row
// is marked the fastest. Run ignores it: go test -count does that job.
// Default: 10.
func Runs(n int) Option {
	return func(c *config) error {
		if n < 1 {
			return fmt.Errorf("%w: %d runs", ErrInvalidOption, n)
		}
		c.runs = n
		return nil
	}
}

// BlockTime sets how long each measurement of one run lasts: the number of
// operations is sized once so that a block takes about d. Run ignores it:
// go test -benchtime does that job. Default: 10ms.
func BlockTime(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return fmt.Errorf("%w: block time %v", ErrInvalidOption, d)
		}
		c.blockTime, c.ops = d, 0
		return nil
	}
}

// Ops makes each measurement of one run exactly n operations instead of
// BlockTime's worth: for a quick look, or a test. Default: 0 (BlockTime).
func Ops(n int) Option {
	return func(c *config) error {
		if n < 1 {
			return fmt.Errorf("%w: %d ops", ErrInvalidOption, n)
		}
		c.ops = n
		return nil
	}
}

// Redis makes the measurement store its samples on rdb instead of an
// embedded miniredis, and time a round trip (one Cache.Set, then one
// Cache.Get of the same key) for every pair as well. Keys are written
// under a prefix of their own, "codectest-" and a random suffix, and
// deleted at the end. The caller keeps ownership of rdb. Default: nil (an
// embedded miniredis, no round trips).
func Redis(rdb redis.UniversalClient) Option {
	return func(c *config) error {
		if rdb == nil {
			return fmt.Errorf("%w: nil redis client", ErrInvalidOption)
		}
		c.rdb = rdb
		return nil
	}
}

// Measure stores sample with every pair of codec and compressor, times its
// encoding, decoding and (with the Redis option) a round trip, and returns
// the report. It returns an error for a bad option, a sample no codec can
// encode, a failed write or read, or when ctx ends.
func Measure[T any](ctx context.Context, sample T, opts ...Option) (*Report, error) {
	cfg, err := newConfig(opts)
	if err != nil {
		return nil, err
	}
	s, err := newSuite(ctx, sample, cfg)
	if err != nil {
		return nil, err
	}
	defer s.close()
	rep, err := s.measure(ctx)
	if err != nil {
		return nil, err
	}
	if err := s.cleanup(ctx); err != nil {
		return nil, err
	}
	return rep, nil
}

// Run adds one sub-benchmark of b per pair of codec and compressor, each
// with sub-benchmarks encode, decode and (with the Redis option) roundtrip,
// named like "msgpack+lz4/decode". Each reports ns/op, B/op and allocs/op,
// and the stored size as the metric stored-B. Runs and BlockTime do not
// apply: go test's -count and -benchtime do. A failure to set up (a bad
// option, no codec that encodes the sample, Redis down) fails b.
func Run[T any](b *testing.B, sample T, opts ...Option) {
	b.Helper()
	cfg, err := newConfig(opts)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	s, err := newSuite(ctx, sample, cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if err := s.cleanup(ctx); err != nil {
			b.Error(err)
		}
		s.close()
	})
	for _, p := range s.pairs {
		b.Run(p.name(), func(b *testing.B) {
			for _, op := range p.ops(s.roundTrips) {
				b.Run(op.name, func(b *testing.B) {
					b.ReportAllocs()
					for b.Loop() {
						if err := op.fn(); err != nil {
							b.Fatalf("%s %s: %v", p.name(), op.name, err)
						}
					}
					b.ReportMetric(float64(p.stored), "stored-B")
				})
			}
		})
	}
}
