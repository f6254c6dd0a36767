package session_test

import (
	"bytes"
	"context"
	"fmt"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/cachemgr/cachemgr"
	"github.com/cachemgr/cachemgr/codec"
	"github.com/cachemgr/cachemgr/internal/redistest"
	"github.com/cachemgr/cachemgr/session"
	"github.com/redis/go-redis/v9"
)

// paired runs a and base alternately, one call each in turn, inside one
// benchmark loop, so that both see the same machine load, and times every
// call. It reports each side's mean and median time per call and their
// allocations (measured after the loop, untimed), and two ratios of a to
// base: of the medians ("ratio", which a stalled call on a busy machine
// cannot move) and of the means ("ratio-mean").
func paired(b *testing.B, a, base func()) {
	var ta, tb []time.Duration
	timed := func(f func()) time.Duration {
		start := time.Now()
		f()
		return time.Since(start)
	}
	for i := 0; b.Loop(); i++ {
		if i%2 == 0 {
			ta = append(ta, timed(a))
			tb = append(tb, timed(base))
		} else {
			tb = append(tb, timed(base))
			ta = append(ta, timed(a))
		}
	}
	ma, mb := median(ta), median(tb)
	sa, sb := sum(ta), sum(tb)
	b.ReportMetric(float64(sa.Nanoseconds())/float64(len(ta)), "session-ns/op")
	b.ReportMetric(float64(sb.Nanoseconds())/float64(len(tb)), "raw-ns/op")
	b.ReportMetric(float64(ma.Nanoseconds()), "session-median-ns")
	b.ReportMetric(float64(mb.Nanoseconds()), "raw-median-ns")
	b.ReportMetric(float64(ma)/float64(mb), "ratio")
	b.ReportMetric(float64(sa)/float64(sb), "ratio-mean")
	for _, side := range []struct {
		name string
		f    func()
	}{{"session", a}, {"raw", base}} {
		const n = 200
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for range n {
			side.f()
		}
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/n, side.name+"-B/op")
		b.ReportMetric(float64(after.Mallocs-before.Mallocs)/n, side.name+"-allocs/op")
	}
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

func sum(d []time.Duration) time.Duration {
	var t time.Duration
	for _, x := range d {
		t += x
	}
	return t
}

// benchSession starts a redis-server and returns a Store on it (raw codec,
// so that no encoding cost hides in the comparison), a client for the
// hand-rolled side, a saved session holding field "f" of size bytes, its
// Redis key, and the bytes as stored.
func benchSession(b *testing.B, size int) (*session.Store, *redis.Client, string, string, []byte) {
	b.Helper()
	srv := redistest.Start(b)
	rdb := srv.ClientWith(b, func(o *redis.Options) {
		o.ReadTimeout, o.WriteTimeout = 5*time.Second, 5*time.Second
	})
	m, err := cachemgr.New(rdb, cachemgr.WithPrefix("test"), cachemgr.WithOpTimeout(5*time.Second))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { m.Close() })
	st, err := session.New(m, session.WithCodec(codec.Raw()))
	if err != nil {
		b.Fatal(err)
	}
	value := bytes.Repeat([]byte("s"), size)
	s := st.Open("")
	s.Set("f", value)
	if err := s.Save(context.Background()); err != nil {
		b.Fatal(err)
	}
	stored := append([]byte{codec.RawID}, value...)
	return st, rdb, s.ID(), key(s.ID()), stored
}

// BenchmarkFieldRead compares reading one field of an existing session
// through a new Session (HMGET of the field and the deadline, PEXPIRE for
// the idle timeout, one round trip, and the decode) with a hand-rolled HGET
// of the same bytes.
func BenchmarkFieldRead(b *testing.B) {
	ctx := context.Background()
	for _, size := range []int{64, 1 << 10, 16 << 10} {
		b.Run(fmt.Sprintf("%dB", size), func(b *testing.B) {
			st, rdb, id, k, stored := benchSession(b, size)
			paired(b,
				func() {
					v, err := session.Get[[]byte](ctx, st.Open(id), "f")
					if err != nil || len(v) != size {
						b.Fatalf("Get(f) = %d bytes, %v", len(v), err)
					}
				},
				func() {
					v, err := rdb.HGet(ctx, k, "f").Bytes()
					if err != nil || len(v) != len(stored) {
						b.Fatalf("HGET f = %d bytes, %v", len(v), err)
					}
				})
		})
	}
}

// BenchmarkFieldWrite compares writing one field of an existing session
// through a new Session (Set, then Save: HSET, PEXPIRE and HMGET of the
// deadline in one round trip) with a hand-rolled HSET of the same bytes.
func BenchmarkFieldWrite(b *testing.B) {
	ctx := context.Background()
	for _, size := range []int{64, 1 << 10, 16 << 10} {
		b.Run(fmt.Sprintf("%dB", size), func(b *testing.B) {
			st, rdb, id, k, stored := benchSession(b, size)
			value := stored[1:]
			paired(b,
				func() {
					s := st.Open(id)
					if err := s.Set("f", value); err != nil {
						b.Fatal(err)
					}
					if err := s.Save(ctx); err != nil || s.ID() != id {
						b.Fatalf("Save = %v, ID %q", err, s.ID())
					}
				},
				func() {
					if err := rdb.HSet(ctx, k, "f", stored).Err(); err != nil {
						b.Fatal(err)
					}
				})
		})
	}
}
