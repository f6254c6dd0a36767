package envelope

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestRoundTrip(t *testing.T) {
	tests := []struct {
		name    string
		h       Header
		payload []byte
	}{
		{"plain", Header{Codec: 1, FreshUntil: 1_700_000_000_123, Load: 20 * time.Millisecond}, []byte("hello")},
		{"shaped", Header{Codec: 1, FreshUntil: 1, Shape: 0xdeadbeef}, []byte("hello")},
		{"compressed", Header{Codec: 2, Compressor: 1, FreshUntil: 1, RawLen: 4096}, []byte{1, 2, 3}},
		{"negative", Header{Codec: 1, Negative: true, FreshUntil: 42}, nil},
		{"tagged", Header{Codec: 1, Tagged: true, FreshUntil: 42}, AppendTags(nil, 7, []string{"a", "b"})},
		{"tagged negative", Header{Codec: 1, Negative: true, Tagged: true}, AppendTags(nil, 7, []string{"a"})},
		{"empty payload", Header{Codec: 3, FreshUntil: maxFresh, Load: maxLoadMS * time.Millisecond}, []byte{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := append(Append(nil, tt.h), tt.payload...)
			want := HeaderSize + len(tt.payload)
			if tt.h.Compressor != 0 {
				want += len(binary.AppendUvarint(nil, uint64(tt.h.RawLen)))
			}
			if len(b) != want {
				t.Fatalf("len(Append) = %d, want %d", len(b), want)
			}
			h, p, err := Parse(b, 1<<20)
			if err != nil {
				t.Fatalf("Parse() error = %v", err)
			}
			if h != tt.h {
				t.Errorf("Parse() header = %+v, want %+v", h, tt.h)
			}
			if !bytes.Equal(p, tt.payload) {
				t.Errorf("Parse() payload = %q, want %q", p, tt.payload)
			}
		})
	}
}

func TestAppendSaturates(t *testing.T) {
	h, _, err := Parse(Append(nil, Header{Codec: 1, FreshUntil: -5, Load: time.Hour}), 0)
	if err != nil {
		t.Fatalf("Parse() error = %v", err)
	}
	if h.FreshUntil != 0 || h.Load != maxLoadMS*time.Millisecond {
		t.Errorf("Parse(Append(saturating)) = %+v, want FreshUntil 0 and Load 65.535s", h)
	}
	h, _, _ = Parse(Append(nil, Header{Codec: 1, FreshUntil: 1 << 62}), 0)
	if h.FreshUntil != maxFresh {
		t.Errorf("FreshUntil after overflow = %d, want %d", h.FreshUntil, int64(maxFresh))
	}
}

func TestParseRejects(t *testing.T) {
	valid := Append(nil, Header{Codec: 1, FreshUntil: 10})
	mutate := func(f func(b []byte) []byte) []byte {
		return f(append([]byte(nil), valid...))
	}
	tests := []struct {
		name string
		b    []byte
	}{
		{"nil", nil},
		{"short", valid[:HeaderSize-1]},
		{"foreign json", []byte(`{"id":42,"name":"not ours at all"}`)},
		{"bad magic", mutate(func(b []byte) []byte { b[0] = 0; return b })},
		{"future version", mutate(func(b []byte) []byte { b[1] = 3 << 4; return b })},
		{"version 1", mutate(func(b []byte) []byte { b[1] = 1 << 4; return b })},
		{"unknown flag", mutate(func(b []byte) []byte { b[1] |= 0x8; return b })},
		{"compressed negative", mutate(func(b []byte) []byte { b[1] |= flagNegative; b[3] = 1; return append(b, 4, 1) })},
		{"codec zero", mutate(func(b []byte) []byte { b[2] = 0; return b })},
		{"negative with payload", mutate(func(b []byte) []byte { b[1] |= flagNegative; return append(b, 'x') })},
		{"compressed without raw length", mutate(func(b []byte) []byte { b[3] = 1; return b })},
		{"compressed raw length zero", mutate(func(b []byte) []byte { b[3] = 1; return append(b, 0, 1, 2) })},
		{"forged raw length", mutate(func(b []byte) []byte { b[3] = 1; return append(b, 0xff, 0xff, 0xff, 0x7f, 1, 2, 3) })},
		{"raw length not shortest", mutate(func(b []byte) []byte { b[3] = 1; return append(b, 0x89, 0x00, 1, 2, 3) })},
		{"compressed but empty", mutate(func(b []byte) []byte { b[3] = 1; return append(b, 9) })},
		{"payload over limit", append(append([]byte(nil), valid...), make([]byte, 2048)...)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, _, err := Parse(tt.b, 1024); !errors.Is(err, ErrCorrupt) {
				t.Errorf("Parse(%q) error = %v, want ErrCorrupt", tt.b, err)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	f.Add(Append(nil, Header{Codec: 1, FreshUntil: 1_700_000_000_000}))
	f.Add(append(Append(nil, Header{Codec: 1, Compressor: 1, RawLen: 100}), 0x1f, 'a', 1, 0))
	f.Add([]byte{magic, version << 4, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x0f, 0})
	f.Add([]byte("\xdd\xff\xff\xff\xff"))
	f.Add([]byte{})
	const limit = 1 << 20
	f.Fuzz(func(t *testing.T, b []byte) {
		h, p, err := Parse(b, limit)
		if err != nil {
			return
		}
		if h.RawLen > limit || (h.Compressor == 0 && len(p) > limit) {
			t.Fatalf("Parse accepted raw length %d over limit", h.RawLen)
		}
		again := append(Append(nil, h), p...)
		if !bytes.Equal(again, b) {
			t.Fatalf("Append(Parse(%x)) = %x", b, again)
		}
	})
}

func TestTagsRoundTrip(t *testing.T) {
	tags := []string{"user:42", "category:7", strings.Repeat("x", MaxTagLen)}
	b := append(AppendTags(nil, 1_700_000_000_000, tags), "payload"...)
	stamp, got, rest, err := ParseTags(b)
	if err != nil || stamp != 1_700_000_000_000 || len(got) != 3 || got[2] != tags[2] || string(rest) != "payload" {
		t.Errorf("ParseTags(AppendTags()) = %d, %q, %q, %v", stamp, got, rest, err)
	}
}

func TestParseTagsRejects(t *testing.T) {
	valid := AppendTags(nil, 1, []string{"abc"})
	tests := []struct {
		name string
		b    []byte
	}{
		{"short", valid[:5]},
		{"no tags", AppendTags(nil, 1, nil)},
		{"too many", append(AppendTags(nil, 1, nil)[:8], MaxTags+1)},
		{"truncated tag", valid[:len(valid)-1]},
		{"forged length", append(append([]byte(nil), valid[:9]...), 0xff, 0xff, 0xff, 0xff, 0x0f)},
		{"empty tag", append(append([]byte(nil), valid[:9]...), 0)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, _, _, err := ParseTags(tt.b); !errors.Is(err, ErrCorrupt) {
				t.Errorf("ParseTags(%x) error = %v, want ErrCorrupt", tt.b, err)
			}
		})
	}
}

func FuzzParseTags(f *testing.F) {
	f.Add(AppendTags(nil, 1, []string{"a", "bb"}))
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 1, 1, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		stamp, tags, rest, err := ParseTags(b)
		if err != nil {
			return
		}
		again := append(AppendTags(nil, stamp, tags), rest...)
		if len(again) > len(b) {
			t.Fatalf("re-encoding grew: %d > %d", len(again), len(b))
		}
	})
}
