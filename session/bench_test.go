package session_test

import (
	"bytes"
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/cachemgr/cachemgr"
	"github.com/cachemgr/cachemgr/codec"
	"github.com/cachemgr/cachemgr/internal/redistest"
	"github.com/cachemgr/cachemgr/session"
	"github.com/redis/go-redis/v9"
)

// pairSide accumulates one side of a paired benchmark.
type pairSide struct {
	ns            time.Duration
	bytes, allocs uint64
	ops           int
}

// runBlock runs f block times, adding its time and allocations to s. The
// allocation count is read outside the timed part.
func (s *pairSide) runBlock(block int, f func()) {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	mallocs, total := ms.Mallocs, ms.TotalAlloc
	start := time.Now()
	for range block {
		f()
	}
	s.ns += time.Since(start)
	runtime.ReadMemStats(&ms)
	s.allocs += ms.Mallocs - mallocs
	s.bytes += ms.TotalAlloc - total
	s.ops += block
}

func (s *pairSide) report(b *testing.B, name string) {
	b.ReportMetric(float64(s.ns.Nanoseconds())/float64(s.ops), name+"-ns/op")
	b.ReportMetric(float64(s.bytes)/float64(s.ops), name+"-B/op")
	b.ReportMetric(float64(s.allocs)/float64(s.ops), name+"-allocs/op")
}

// paired runs a and base alternately, in blocks of block calls, inside one
// benchmark loop, so that both see the same machine load. It reports each
// side's time and allocations per call and the ratio of a's time to base's.
func paired(b *testing.B, block int, a, base func()) {
	var sa, sb pairSide
	for i := 0; b.Loop(); i++ {
		if i%2 == 0 {
			sa.runBlock(block, a)
			sb.runBlock(block, base)
		} else {
			sb.runBlock(block, base)
			sa.runBlock(block, a)
		}
	}
	sa.report(b, "session")
	sb.report(b, "raw")
	b.ReportMetric(float64(sa.ns)/float64(sb.ns), "ratio")
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
			paired(b, 20,
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
			paired(b, 20,
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
