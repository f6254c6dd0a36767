package session

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/cachemgr/cachemgr"
	"github.com/cachemgr/cachemgr/internal/redistest"
)

func TestParseID(t *testing.T) {
	tag := []byte{1, 2, 3, 4, 5, 6}
	secret := bytes.Repeat([]byte{0xfe}, secretLen)
	p := makeID(tag, secret, 1_800_000_000_000)
	if len(p.id) != idLen {
		t.Fatalf("len(makeID()) = %d, want %d", len(p.id), idLen)
	}
	got, ok := parseID(p.id)
	if !ok || got != p {
		t.Errorf("parseID(%q) = %+v, %t, want %+v, true", p.id, got, ok, p)
	}
	ts := encodeTagSecret(tag, secret)
	if p.id[:tagChars+secretChars] != ts {
		t.Errorf("makeID() = %q, want it to start with %q", p.id, ts)
	}
	st := &Store{base: "app:session:"}
	if got, want := st.key(p.id), "app:session:{"+ts[:tagChars]+"}"+p.id[tagChars:]; got != want {
		t.Errorf("key(%q) = %q, want %q", p.id, got, want)
	}
	bad := []string{"", p.id[:idLen-1], p.id + "A", p.id[:idLen-1] + "=", p.id[:idLen-1] + "*", makeID(tag, secret, 0).id}
	for _, s := range bad {
		if got, ok := parseID(s); ok {
			t.Errorf("parseID(%q) = %+v, true, want false", s, got)
		}
	}
}

// fixedRandom returns a random source that gives draws in turn, the last
// one for ever.
func fixedRandom(draws ...[]byte) func([]byte) {
	return func(b []byte) {
		copy(b, draws[0])
		if len(draws) > 1 {
			draws = draws[1:]
		}
	}
}

func newTestStore(t *testing.T, srv *redistest.Server) *Store {
	t.Helper()
	return newTestStoreWith(t, srv, WithLifetime(time.Hour))
}

// newTestStoreWith returns a Store with opts on a client of srv, prefix "test".
func newTestStoreWith(t *testing.T, srv *redistest.Server, opts ...Option) *Store {
	t.Helper()
	m, err := cachemgr.New(srv.Client(t), cachemgr.WithPrefix("test"), cachemgr.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	st, err := New(m, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func TestIDCollision(t *testing.T) {
	redistest.Each(t, func(t *testing.T, srv *redistest.Server) {
		ctx := context.Background()
		st := newTestStore(t, srv)
		first := bytes.Repeat([]byte{1}, tagLen+secretLen)
		second := bytes.Repeat([]byte{2}, tagLen+secretLen)

		st.random = fixedRandom(first)
		taken := st.Open("")
		taken.Set("owner", "first")
		if err := taken.Save(ctx); err != nil {
			t.Fatalf("Save error = %v", err)
		}
		// The deadline is part of the key: stop the clock at the one
		// that gave the taken session's.
		p, _ := parseID(taken.ID())
		st.now = func() time.Time { return time.UnixMilli(p.deadline).Add(-time.Hour) }
		// A draw that hits the taken key is drawn again, never adopted.
		st.random = fixedRandom(first, second)
		s := st.Open("")
		s.Set("owner", "second")
		if err := s.Save(ctx); err != nil {
			t.Fatalf("Save after a colliding draw error = %v", err)
		}
		if s.ID() == taken.ID() || s.ID()[:8] != encodeTagSecret(second[:tagLen], second[tagLen:])[:8] {
			t.Errorf("ID() after a colliding draw = %q, want one from the second draw", s.ID())
		}
		if got, err := Get[string](ctx, st.Open(taken.ID()), "owner"); got != "first" || err != nil {
			t.Errorf("Get(owner) of the taken session = %q, %v, want first, nil", got, err)
		}
		// A source that only ever gives the taken key fails cleanly.
		st.random = fixedRandom(first)
		s = st.Open("")
		s.Set("owner", "third")
		if err := s.Save(ctx); !errors.Is(err, errNoFreeID) {
			t.Errorf("Save with every draw taken error = %v, want errNoFreeID", err)
		}
		// Renew onto a taken key draws again.
		renewing := st.Open(taken.ID())
		st.random = fixedRandom(first[tagLen:], second[tagLen:])
		if err := renewing.Renew(ctx); err != nil {
			t.Fatalf("Renew error = %v", err)
		}
		if got, want := renewing.ID()[tagChars:tagChars+secretChars], encodeSecret(second[tagLen:]); got != want {
			t.Errorf("secret after a colliding Renew = %q, want %q", got, want)
		}
		if got, err := Get[string](ctx, st.Open(renewing.ID()), "owner"); got != "first" || err != nil {
			t.Errorf("Get(owner) after Renew = %q, %v, want first, nil", got, err)
		}
	})
}

func TestDeadlineFromRedisClock(t *testing.T) {
	redistest.Each(t, func(t *testing.T, srv *redistest.Server) {
		ctx := context.Background()
		st := newTestStore(t, srv)
		// This process's clock is an hour fast: Redis's decides.
		st.now = func() time.Time { return time.Now().Add(time.Hour) }
		for i := range 2 {
			s := st.Open("")
			s.Set("a", i)
			before := time.Now()
			if err := s.Save(ctx); err != nil {
				t.Fatalf("Save error = %v", err)
			}
			p, _ := parseID(s.ID())
			got := time.UnixMilli(p.deadline).Sub(before)
			if got < time.Hour-2*clockTolerance || got > time.Hour+2*clockTolerance {
				t.Errorf("deadline of session %d = now + %v, want now + 1h (Redis's clock)", i, got)
			}
		}
		if skew := time.Duration(st.skew.Load()) * time.Millisecond; skew > -59*time.Minute || skew < -61*time.Minute {
			t.Errorf("skew learned = %v, want about -1h", skew)
		}
	})
}

// recordingReader passes reads through to r and keeps what they returned.
type recordingReader struct {
	r   io.Reader
	got []byte
}

func (rr *recordingReader) Read(b []byte) (int, error) {
	n, err := rr.r.Read(b)
	rr.got = append(rr.got, b[:n]...)
	return n, err
}

// TestIDsFromCryptoRand checks that the random parts of an ID are bytes
// read from crypto/rand: the 48-bit tag and 144-bit secret of a new ID
// (192 bits), and the new 144-bit secret that Renew draws.
func TestIDsFromCryptoRand(t *testing.T) {
	srv := redistest.StartMini(t)
	ctx := context.Background()
	st := newTestStore(t, srv)
	rec := &recordingReader{r: rand.Reader}
	rand.Reader = rec
	t.Cleanup(func() { rand.Reader = rec.r })

	s := st.Open("")
	s.Set("a", "1")
	if err := s.Save(ctx); err != nil {
		t.Fatal(err)
	}
	if len(rec.got) != tagLen+secretLen {
		t.Fatalf("bytes read from crypto/rand for a new ID = %d, want %d", len(rec.got), tagLen+secretLen)
	}
	if got, want := s.ID()[:tagChars+secretChars], encodeTagSecret(rec.got[:tagLen], rec.got[tagLen:]); got != want {
		t.Errorf("tag and secret of the new ID = %q, want %q (the bytes crypto/rand gave)", got, want)
	}
	rec.got = nil
	if err := s.Renew(ctx); err != nil {
		t.Fatal(err)
	}
	if len(rec.got) != secretLen {
		t.Fatalf("bytes read from crypto/rand for Renew = %d, want %d", len(rec.got), secretLen)
	}
	if got, want := s.ID()[tagChars:tagChars+secretChars], encodeSecret(rec.got); got != want {
		t.Errorf("secret after Renew = %q, want %q (the bytes crypto/rand gave)", got, want)
	}
}
