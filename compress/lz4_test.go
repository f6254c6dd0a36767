package compress_test

import (
	"bytes"
	"errors"
	"math"
	"runtime"
	"testing"

	"github.com/cachemgr/cachemgr/compress"
)

func TestLZ4CompressNotSmaller(t *testing.T) {
	tests := []struct {
		name string
		src  []byte
	}{
		{"empty", nil},
		{"1 byte", []byte{'a'}},
		{"14 bytes", []byte("abcdefghijklmn")},
		{"random 4 KiB", randomBytes(4 << 10)},
		{"random 64 KiB", randomBytes(64 << 10)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, ok, err := compress.LZ4().Compress([]byte("pre"), tt.src)
			if ok || err != nil || string(out) != "pre" {
				t.Errorf("Compress(%q, %d bytes) = %d bytes, %v, %v, want %q, false, nil", "pre", len(tt.src), len(out), ok, err, "pre")
			}
		})
	}
}

func TestLZ4RoundTrip(t *testing.T) {
	tests := []struct {
		name string
		src  []byte
	}{
		{"20 repeated bytes", bytes.Repeat([]byte{'a'}, 20)},
		{"repetitive 64 KiB", bytes.Repeat([]byte("0123456789abcdef"), 4<<10)},
		{"zeros 1 MiB", make([]byte, 1<<20)},
		{"json-like 1 KiB", jsonLike(1 << 10)},
		{"json-like 64 KiB", jsonLike(64 << 10)},
		{"json-like 1 MiB", jsonLike(1 << 20)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			block, ok, err := compress.LZ4().Compress([]byte("pre"), tt.src)
			if !ok || err != nil {
				t.Fatalf("Compress(%q, %d bytes) = %v, %v, want true, nil", "pre", len(tt.src), ok, err)
			}
			if !bytes.HasPrefix(block, []byte("pre")) || len(block)-3 >= len(tt.src) {
				t.Fatalf("Compress(%q, %d bytes) = %d bytes, want %q and fewer than %d bytes", "pre", len(tt.src), len(block), "pre", len(tt.src))
			}
			out, err := compress.LZ4().Decompress([]byte("pre"), block[3:], len(tt.src))
			if err != nil || !bytes.Equal(out, append([]byte("pre"), tt.src...)) {
				t.Errorf("Decompress(%q, Compress(%d bytes)) = %d bytes, %v, want the input after %q", "pre", len(tt.src), len(out), err, "pre")
			}
		})
	}
}

func TestLZ4AppendsWithoutAllocating(t *testing.T) {
	src := jsonLike(16 << 10)
	block, ok, err := compress.LZ4().Compress(nil, src)
	if !ok || err != nil {
		t.Fatalf("Compress(nil, %d bytes) = %v, %v, want true, nil", len(src), ok, err)
	}
	buf := make([]byte, 0, 2*len(src))
	tests := []struct {
		name string
		f    func()
	}{
		{"Compress", func() { _, _, _ = compress.LZ4().Compress(buf, src) }},
		{"Decompress", func() { _, _ = compress.LZ4().Decompress(buf, block, len(src)) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if n := testing.AllocsPerRun(100, tt.f); n != 0 {
				t.Errorf("%s into spare capacity: %v allocs, want 0", tt.name, n)
			}
		})
	}
}

func TestLZ4DecompressCorrupt(t *testing.T) {
	src := jsonLike(4 << 10)
	block, ok, err := compress.LZ4().Compress(nil, src)
	if !ok || err != nil {
		t.Fatalf("Compress(nil, %d bytes) = %v, %v, want true, nil", len(src), ok, err)
	}
	tests := []struct {
		name   string
		src    []byte
		rawLen int
	}{
		{"random bytes", randomBytes(4 << 10), 4 << 10},
		{"random bytes, small rawLen", randomBytes(64), 16},
		{"truncated by 1", block[:len(block)-1], len(src)},
		{"truncated by half", block[:len(block)/2], len(src)},
		{"first byte only", block[:1], len(src)},
		{"rawLen one short", block, len(src) - 1},
		{"rawLen one long", block, len(src) + 1},
		{"rawLen zero", block, 0},
		{"rawLen negative", block, -1},
		{"rawLen past 255x", block, 255*len(block) + 17},
		{"rawLen 1 TiB", block, 1 << 40},
		{"rawLen MaxInt", block, math.MaxInt},
		{"rawLen MinInt", block, math.MinInt},
		{"empty block", nil, 10},
		{"zero token with data expected", []byte{0x00}, 10},
		{"offset zero", []byte{0x10, 'a', 0x00, 0x00, 0x00}, 20},
		{"offset before start", []byte{0x14, 'a', 0xff, 0xff, 0x50, 'b', 'c', 'd', 'e', 'f'}, 30},
		{"literal length past end", []byte{0xf0, 0xff, 0xff}, 600},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out []byte
			var err error
			n := allocated(func() { out, err = compress.LZ4().Decompress([]byte("pre"), tt.src, tt.rawLen) })
			if !errors.Is(err, compress.ErrCorrupt) {
				t.Errorf("Decompress(%q, %.16x, %d) error = %v, want %v", "pre", tt.src, tt.rawLen, err, compress.ErrCorrupt)
			}
			if string(out) != "pre" {
				t.Errorf("Decompress(%q, %.16x, %d) = %.16q, want %q", "pre", tt.src, tt.rawLen, out, "pre")
			}
			// rawLen bytes, rounded up to a size class, and the error.
			if limit := uint64(max(tt.rawLen, 0))*9/8 + 2<<10; n > limit {
				t.Errorf("Decompress(%q, %.16x, %d) allocated %d bytes, want at most %d", "pre", tt.src, tt.rawLen, n, limit)
			}
		})
	}
}

func TestLZ4DecompressEmpty(t *testing.T) {
	out, err := compress.LZ4().Decompress([]byte("pre"), nil, 0)
	if err != nil || string(out) != "pre" {
		t.Errorf("Decompress(%q, nil, 0) = %q, %v, want %q, nil", "pre", out, err, "pre")
	}
}

// allocated returns how many bytes f allocates.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

func FuzzLZ4Decompress(f *testing.F) {
	for _, src := range [][]byte{
		nil, {'a'}, bytes.Repeat([]byte{'a'}, 20), jsonLike(1 << 10), make([]byte, 4<<10),
	} {
		block, ok, _ := compress.LZ4().Compress(nil, src)
		if ok {
			f.Add(block, len(src))
			f.Add(block[:len(block)-1], len(src))
			f.Add(block, len(src)+1)
			f.Add(block, len(src)*300)
		}
		f.Add(src, len(src))
	}
	f.Add([]byte{0x00}, 0)
	f.Add([]byte{0x10, 'a', 0x00, 0x00, 0x00}, 20)
	f.Add([]byte{0xf0, 0xff, 0xff}, 600)
	f.Add(randomBytes(64), 1<<20)
	f.Add([]byte{}, -1)

	c := compress.LZ4()
	f.Fuzz(func(t *testing.T, src []byte, rawLen int) {
		// Keep the fuzzer's memory bounded; larger lengths take the same paths.
		rawLen %= 1 << 22
		out, err := c.Decompress([]byte("pre"), src, rawLen)
		switch {
		case err != nil && !errors.Is(err, compress.ErrCorrupt):
			t.Errorf("Decompress(%q, %x, %d) error = %v, want nil or %v", "pre", src, rawLen, err, compress.ErrCorrupt)
		case err != nil && string(out) != "pre":
			t.Errorf("Decompress(%q, %x, %d) = %q, %v, want %q on error", "pre", src, rawLen, out, err, "pre")
		case err == nil && (len(out) != 3+rawLen || string(out[:3]) != "pre"):
			t.Errorf("Decompress(%q, %x, %d) = %d bytes, want %q then %d bytes", "pre", src, rawLen, len(out), "pre", rawLen)
		}

		// Whatever the input, Compress either declines or round-trips.
		block, ok, err := c.Compress(nil, src)
		if err != nil {
			t.Fatalf("Compress(nil, %x) error: %v", src, err)
		}
		if !ok {
			return
		}
		if len(block) >= len(src) {
			t.Fatalf("Compress(nil, %x) = %d bytes, want fewer than %d", src, len(block), len(src))
		}
		got, err := c.Decompress(nil, block, len(src))
		if err != nil || !bytes.Equal(got, src) {
			t.Fatalf("Decompress(Compress(%x)) = %x, %v, want the input", src, got, err)
		}
	})
}
