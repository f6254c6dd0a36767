package compress_test

import (
	"errors"
	"testing"

	"github.com/cachemgr/cachemgr/compress"
)

func TestNoneCompress(t *testing.T) {
	tests := []struct {
		name string
		src  []byte
	}{
		{"empty", nil},
		{"text", jsonLike(1 << 10)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, ok, err := compress.None().Compress([]byte("pre"), tt.src)
			if ok || err != nil || string(out) != "pre" {
				t.Errorf("Compress(%q, %d bytes) = %q, %v, %v, want %q, false, nil", "pre", len(tt.src), out, ok, err, "pre")
			}
		})
	}
}

func TestNoneDecompress(t *testing.T) {
	src := []byte("payload")
	out, err := compress.None().Decompress([]byte("pre:"), src, len(src))
	if err != nil || string(out) != "pre:payload" {
		t.Fatalf("Decompress(%q, %q, %d) = %q, %v, want %q, nil", "pre:", src, len(src), out, err, "pre:payload")
	}
	src[0] = 'X'
	if string(out) != "pre:payload" {
		t.Errorf("Decompress(%q, %q, %d) = %q after src changed, want a copy", "pre:", src, len(src), out)
	}
}

func TestNoneDecompressWrongLength(t *testing.T) {
	tests := []struct {
		name   string
		rawLen int
	}{
		{"short", 6},
		{"long", 8},
		{"negative", -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := compress.None().Decompress([]byte("pre"), []byte("payload"), tt.rawLen)
			if !errors.Is(err, compress.ErrCorrupt) || string(out) != "pre" {
				t.Errorf("Decompress(%q, %q, %d) = %q, %v, want %q, %v", "pre", "payload", tt.rawLen, out, err, "pre", compress.ErrCorrupt)
			}
		})
	}
}
