package session_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/cachemgr/cachemgr"
	"github.com/cachemgr/cachemgr/codec"
	"github.com/cachemgr/cachemgr/internal/benchpair"
	"github.com/cachemgr/cachemgr/internal/redistest"
	"github.com/cachemgr/cachemgr/session"
	"github.com/redis/go-redis/v9"
)

// benchBlock is how many calls of a side one block of a paired benchmark
// makes.
const benchBlock = 16

// paired runs a paired benchmark of the session side against the
// hand-rolled one (see benchpair), and reports both sides' allocations.
func paired(b *testing.B, sess, raw func()) {
	b.Helper()
	benchpair.Run(b, benchBlock, sess, raw).Report(b, "session", "raw")
	benchpair.ReportAllocs(b, "session", 200, 1, sess)
	benchpair.ReportAllocs(b, "raw", 200, 1, raw)
}

// benchCases are the sizes of the stored value, and the refresh settings:
// the default interval, and a refresh with every use.
var benchCases = []struct {
	name  string
	size  int
	every time.Duration // -1: the default
}{
	{"64B", 64, -1},
	{"1KiB", 1 << 10, -1},
	{"16KiB", 16 << 10, -1},
	{"64B-refresh-every-use", 64, 0},
}

// benchSession starts a redis-server and returns a Store on it (raw codec,
// so that no encoding cost hides in the comparison; refresh interval every
// unless -1), a client for the hand-rolled side, a saved session holding
// field "f" of size bytes, its Redis key, and the bytes as stored.
func benchSession(b *testing.B, size int, every time.Duration) (*session.Store, *redis.Client, string, string, []byte) {
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
	opts := []session.Option{session.WithCodec(codec.Raw())}
	if every >= 0 {
		opts = append(opts, session.WithRefreshInterval(every))
	}
	st, err := session.New(m, opts...)
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
// through a new Session (HMGET of the field and the deadline, with a
// PEXPIRE in the same round trip when the refresh is due, and the decode)
// with a hand-rolled HGET of the same bytes.
func BenchmarkFieldRead(b *testing.B) {
	ctx := context.Background()
	for _, bc := range benchCases {
		b.Run(bc.name, func(b *testing.B) {
			st, rdb, id, k, stored := benchSession(b, bc.size, bc.every)
			paired(b,
				func() {
					v, err := session.Get[[]byte](ctx, st.Open(id), "f")
					if err != nil || len(v) != bc.size {
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
// through a new Session (Set, then Save: HSET of the sentinel field and
// the field, with a PEXPIRE in the same round trip when the refresh is
// due) with a hand-rolled HSET of the same bytes.
func BenchmarkFieldWrite(b *testing.B) {
	ctx := context.Background()
	for _, bc := range benchCases {
		b.Run(bc.name, func(b *testing.B) {
			st, rdb, id, k, stored := benchSession(b, bc.size, bc.every)
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
