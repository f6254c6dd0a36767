package codectest

import (
	"cmp"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"math"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/cachemgr/cachemgr"
	"github.com/cachemgr/cachemgr/codec"
	"github.com/cachemgr/cachemgr/compress"
	"github.com/cachemgr/cachemgr/internal/envelope"
	"github.com/cachemgr/cachemgr/internal/keys"
	"github.com/redis/go-redis/v9"
)

// opTimeout bounds every Redis call of a measurement: generous, since a
// measurement on a busy machine should be slow, not fail.
const opTimeout = 10 * time.Second

// suite is one sample's pairs, ready to be timed, and the Redis side they
// were stored on.
type suite struct {
	typ        string
	cfg        config
	pairs      []*pair
	skipped    []Skip
	roundTrips bool // time Set+Get: the caller gave a Redis
	rdb        redis.UniversalClient
	prefix     string
	managers   []*cachemgr.Manager
	stopMini   func() // nil unless suite started its own miniredis
}

// pair is one codec and compressor for one sample: its closures, bound to
// their own buffers, and what cachemgr stored.
type pair struct {
	codec      string
	compressor string
	stored     int // bytes in Redis, header included
	encoded    int // codec output before compression
	payload    int // stored payload, after compression if any
	compressed bool
	encode     func() error
	decode     func() error
	roundTrip  func() error
}

func (p *pair) name() string { return p.codec + "+" + p.compressor }

// op is one timed operation of a pair.
type op struct {
	name string
	fn   func() error
}

func (p *pair) ops(roundTrips bool) []op {
	ops := []op{{"encode", p.encode}, {"decode", p.decode}}
	if roundTrips {
		ops = append(ops, op{"roundtrip", p.roundTrip})
	}
	return ops
}

// newSuite stores sample with every usable pair and prepares the timed
// closures. The caller closes the suite.
func newSuite[T any](ctx context.Context, sample T, cfg config) (_ *suite, err error) {
	s := &suite{
		typ:        reflect.TypeFor[T]().String(),
		cfg:        cfg,
		roundTrips: cfg.rdb != nil,
		rdb:        cfg.rdb,
		prefix:     "codectest-" + strings.ToLower(rand.Text()[:10]),
	}
	defer func() {
		if err != nil {
			s.close()
		}
	}()
	var usable []codec.Codec
	var firstErr error
	for _, cd := range cfg.codecs {
		if _, err := cd.Append(nil, &sample); err != nil {
			s.skipped = append(s.skipped, Skip{Codec: cd.Name(), Reason: err.Error()})
			firstErr = cmp.Or(firstErr, err)
			continue
		}
		usable = append(usable, cd)
	}
	if len(usable) == 0 {
		return nil, fmt.Errorf("codectest: no codec encodes %s: %w", s.typ, firstErr)
	}
	if s.rdb == nil {
		mr := miniredis.NewMiniRedis()
		if err := mr.Start(); err != nil {
			return nil, fmt.Errorf("codectest: start miniredis: %w", err)
		}
		rdb := redis.NewClient(&redis.Options{Addr: mr.Addr(), ContextTimeoutEnabled: true})
		s.rdb = rdb
		s.stopMini = func() {
			rdb.Close()
			mr.Close()
		}
	}
	for _, cd := range usable {
		for _, cp := range cfg.compressors {
			p, err := newPair(ctx, s, cd, cp, sample)
			if err != nil {
				return nil, fmt.Errorf("codectest: %s %s+%s: %w", s.typ, cd.Name(), cp.Name(), err)
			}
			s.pairs = append(s.pairs, p)
		}
	}
	return s, nil
}

// newPair writes sample through a Manager that uses cd and cp, reads back
// what Redis holds, and returns the pair with its timed closures.
func newPair[T any](ctx context.Context, s *suite, cd codec.Codec, cp compress.Compressor, sample T) (*pair, error) {
	m, err := cachemgr.New(s.rdb,
		cachemgr.WithPrefix(s.prefix),
		cachemgr.WithCodec(cd),
		cachemgr.WithCompressor(cp),
		cachemgr.WithCompressThreshold(s.cfg.threshold),
		cachemgr.WithOpTimeout(opTimeout),
		// A measurement should be slow on a busy machine, not fail over.
		cachemgr.WithBreaker(0, time.Second),
	)
	if err != nil {
		return nil, err
	}
	s.managers = append(s.managers, m)
	name := fmt.Sprintf("%s.%s.%d", cd.Name(), cp.Name(), len(s.managers))
	c, err := cachemgr.NewCache[T](m, name, cachemgr.WithTTL(10*time.Minute))
	if err != nil {
		return nil, err
	}
	if err := c.Set(ctx, "v", sample); err != nil {
		return nil, err
	}
	rctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	stored, err := s.rdb.Get(rctx, keys.New(s.prefix, name, math.MaxInt32).Key("v")).Bytes()
	if err != nil {
		return nil, fmt.Errorf("read back: %w", err)
	}
	h, payload, err := envelope.Parse(stored, math.MaxInt32)
	if err != nil {
		return nil, fmt.Errorf("read back: %w", err)
	}
	p := &pair{codec: cd.Name(), compressor: cp.Name(), stored: len(stored), compressed: h.Compressor != compress.NoneID}
	p.encoded, p.payload = len(payload), len(payload)
	if p.compressed {
		p.encoded = h.RawLen
	}

	// Encoding as Cache.Set does it before Redis: append the encoding of a
	// pointer to the value, compress it from the threshold on, and keep the
	// compressed form only when it is smaller.
	v := sample
	var enc, zbuf []byte
	p.encode = func() error {
		var err error
		if enc, err = cd.Append(enc[:0], &v); err != nil {
			return err
		}
		n, compressed := len(enc), false
		if cp.ID() != compress.NoneID && len(enc) >= s.cfg.threshold {
			if zbuf, compressed, err = cp.Compress(zbuf[:0], enc); err != nil {
				return err
			}
		}
		// The timings are of what cachemgr stores, or of nothing.
		if n != p.encoded || compressed != p.compressed {
			return fmt.Errorf("encoded %d bytes, compressed %t; cachemgr stored %d bytes, compressed %t",
				n, compressed, p.encoded, p.compressed)
		}
		return nil
	}
	if err := p.encode(); err != nil {
		return nil, err
	}

	// Decoding as Cache.Get does it once Redis has answered: decompress,
	// then unmarshal into a new value.
	var dbuf []byte
	p.decode = func() error {
		data := payload
		if p.compressed {
			var err error
			if dbuf, err = cp.Decompress(dbuf[:0], payload, h.RawLen); err != nil {
				return err
			}
			data = dbuf
		}
		var out T
		return cd.Unmarshal(data, &out)
	}
	if err := p.decode(); err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}

	p.roundTrip = func() error {
		if err := c.Set(ctx, "v", v); err != nil {
			return err
		}
		_, err := c.Get(ctx, "v")
		return err
	}
	return p, nil
}

// measure times every pair's operations in cfg.runs runs. Within a run the
// pairs take turns, each for one block of operations, starting from a
// different pair every run, so that slow moments of a busy machine spread
// over all of them.
func (s *suite) measure(ctx context.Context) (*Report, error) {
	type series struct {
		n       int
		ns      []float64
		allocs  []float64
		bytes   []float64
		timings *Timing
	}
	rep := &Report{
		Type:       s.typ,
		Runs:       s.cfg.runs,
		Threshold:  s.cfg.threshold,
		RoundTrips: s.roundTrips,
		Skipped:    s.skipped,
	}
	var all [][]*series // per pair, per op
	for _, p := range s.pairs {
		r := Result{Codec: p.codec, Compression: p.compressor, EncodedBytes: p.encoded,
			StoredBytes: p.stored, Compressed: p.compressed, Ratio: float64(p.encoded) / float64(max(p.payload, 1))}
		rep.Results = append(rep.Results, r)
	}
	for i, p := range s.pairs {
		var ss []*series
		for _, o := range p.ops(s.roundTrips) {
			n := s.cfg.ops
			if n == 0 {
				var err error
				if n, err = calibrate(ctx, o.fn, s.cfg.blockTime); err != nil {
					return nil, fmt.Errorf("codectest: %s %s: %w", p.name(), o.name, err)
				}
			}
			t := rep.Results[i].timing(o.name)
			ss = append(ss, &series{n: n, timings: t})
		}
		all = append(all, ss)
	}
	for run := range s.cfg.runs {
		runtime.GC()
		for k := range s.pairs {
			i := (k + run) % len(s.pairs)
			p := s.pairs[i]
			for j, o := range p.ops(s.roundTrips) {
				if err := ctx.Err(); err != nil {
					return nil, context.Cause(ctx)
				}
				se := all[i][j]
				b, err := timeBlock(o.fn, se.n)
				if err != nil {
					return nil, fmt.Errorf("codectest: %s %s: %w", p.name(), o.name, err)
				}
				se.ns = append(se.ns, b.nsPerOp)
				se.allocs = append(se.allocs, b.allocsPerOp)
				se.bytes = append(se.bytes, b.bytesPerOp)
			}
		}
	}
	for _, ss := range all {
		for _, se := range ss {
			lo, hi := interval(se.ns)
			*se.timings = Timing{
				Ops:         se.n,
				NsPerOp:     median(se.ns),
				LowNsPerOp:  lo,
				HighNsPerOp: hi,
				AllocsPerOp: math.Round(median(se.allocs)),
				BytesPerOp:  math.Round(median(se.bytes)),
				runs:        se.ns,
			}
		}
	}
	rep.mark()
	return rep, nil
}

// block is the outcome of one timed block of operations.
type block struct {
	nsPerOp, allocsPerOp, bytesPerOp float64
}

// timeBlock runs fn n times and returns the time and allocations per call,
// counted as the testing package counts them.
func timeBlock(fn func() error, n int) (block, error) {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	start := time.Now()
	for range n {
		if err := fn(); err != nil {
			return block{}, err
		}
	}
	took := time.Since(start)
	runtime.ReadMemStats(&after)
	return block{
		nsPerOp:     float64(took.Nanoseconds()) / float64(n),
		allocsPerOp: float64(after.Mallocs-before.Mallocs) / float64(n),
		bytesPerOp:  float64(after.TotalAlloc-before.TotalAlloc) / float64(n),
	}, nil
}

// maxOps bounds a calibrated block, for operations too quick to time.
const maxOps = 10_000_000

// calibrate returns how many calls of fn take about d, growing a trial
// block until it lasts a quarter of d and scaling from there.
func calibrate(ctx context.Context, fn func() error, d time.Duration) (int, error) {
	for n := 1; ; n *= 4 {
		if err := ctx.Err(); err != nil {
			return 0, context.Cause(ctx)
		}
		b, err := timeBlock(fn, n)
		if err != nil {
			return 0, err
		}
		took := time.Duration(b.nsPerOp * float64(n))
		if took >= d/4 || n >= maxOps {
			return int(min(max(float64(d)/max(b.nsPerOp, 1), 1), maxOps)), nil
		}
	}
}

// median returns the median of xs, which is not empty.
func median(xs []float64) float64 {
	s := slices.Sorted(slices.Values(xs))
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// interval returns the bounds of a 95% confidence interval of the median
// of xs, which is not empty: the j-th fastest and j-th slowest value for
// the largest j such that the median lies outside them with probability
// at most 5% (X ~ Binomial(n, 1/2): 2·P(X < j) <= 0.05), and the fastest
// and slowest when no j qualifies (fewer than 6 values).
func interval(xs []float64) (lo, hi float64) {
	s := slices.Sorted(slices.Values(xs))
	n := len(s)
	j := 1 // 1-based rank
	for k := 2; k <= n/2; k++ {
		if 2*binomialCDF(n, k-1) > 0.05 {
			break
		}
		j = k
	}
	return s[j-1], s[n-j]
}

// binomialCDF returns P(X <= k) for X ~ Binomial(n, 1/2).
func binomialCDF(n, k int) float64 {
	var p float64
	for i := 0; i <= k; i++ {
		lc, _ := math.Lgamma(float64(n + 1))
		li, _ := math.Lgamma(float64(i + 1))
		lr, _ := math.Lgamma(float64(n - i + 1))
		p += math.Exp(lc - li - lr - float64(n)*math.Ln2)
	}
	return p
}

// cleanup deletes every key the suite wrote. It runs even when ctx has
// ended, so that an interrupted measurement leaves nothing behind either.
func (s *suite) cleanup(ctx context.Context) error {
	if s.rdb == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), opTimeout)
	defer cancel()
	var ks []string
	it := s.rdb.Scan(ctx, 0, keys.EscapeGlob(s.prefix+":")+"*", 1000).Iterator()
	for it.Next(ctx) {
		ks = append(ks, it.Val())
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("codectest: clean up: %w", err)
	}
	for len(ks) > 0 {
		n := min(len(ks), 500)
		if err := deleteKeys(ctx, s.rdb, ks[:n]); err != nil {
			return fmt.Errorf("codectest: clean up: %w", err)
		}
		ks = ks[n:]
	}
	return nil
}

// deleteKeys deletes ks in one pipeline of single-key DELs, which works on
// a single node and on a cluster alike.
func deleteKeys(ctx context.Context, rdb redis.UniversalClient, ks []string) error {
	pipe := rdb.Pipeline()
	for _, k := range ks {
		pipe.Del(ctx, k)
	}
	_, err := pipe.Exec(ctx)
	if errors.Is(err, redis.Nil) {
		return nil
	}
	return err
}

// close closes the Managers and the embedded miniredis, if any. The
// caller's client stays open.
func (s *suite) close() {
	for _, m := range s.managers {
		m.Close()
	}
	s.managers = nil
	if s.stopMini != nil {
		s.stopMini()
		s.stopMini = nil
		s.rdb = nil
	}
}
