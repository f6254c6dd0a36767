package compress

import (
	"errors"
	"fmt"
	"sync"

	"github.com/pierrec/lz4/v4"
)

// maxLZ4Ratio bounds how far an LZ4 block can expand: each extra byte of a
// match length adds at most 255 bytes of output.
const maxLZ4Ratio = 255

// LZ4 returns the default compressor: the LZ4 block format, not the frame
// format, through github.com/pierrec/lz4/v4. A block does not record its
// uncompressed length, so the caller stores it and passes it to Decompress.
//
// Compress reports ok=false when the block would not be strictly smaller
// than the input, including for empty input. Decompress rejects, with an
// error wrapping [ErrCorrupt], a rawLen that is negative or more than an LZ4
// block of len(src) bytes can expand to (255 times plus 16 bytes), and a
// block that does not expand to exactly rawLen bytes; it allocates at most
// once, rawLen bytes beyond len(dst), so the caller must bound rawLen by its
// own size limit first.
//
// LZ4 reuses pooled hash tables and is safe for concurrent use.
func LZ4() Compressor { return lz4Compressor{} }

type lz4Compressor struct{}

// lz4Tables pools lz4.Compressor values, which hold a 136 KiB hash table.
var lz4Tables = sync.Pool{New: func() any { return new(lz4.Compressor) }}

func (lz4Compressor) ID() byte     { return LZ4ID }
func (lz4Compressor) Name() string { return "lz4" }

func (lz4Compressor) Compress(dst, src []byte) ([]byte, bool, error) {
	if len(src) == 0 {
		return dst, false, nil
	}
	// Offer one byte less than src: a block that does not fit is not worth
	// storing. lz4 then reports (0, nil) for data it judges incompressible
	// and ErrInvalidSourceShortBuffer for a block that outgrew the space.
	limit := len(src) - 1
	dst = grow(dst, limit)
	c := lz4Tables.Get().(*lz4.Compressor)
	n, err := c.CompressBlock(src, dst[len(dst):len(dst)+limit])
	lz4Tables.Put(c)
	switch {
	case errors.Is(err, lz4.ErrInvalidSourceShortBuffer):
		return dst, false, nil
	case err != nil:
		return dst, false, fmt.Errorf("lz4: %w", err)
	case n <= 0 || n >= len(src):
		return dst, false, nil
	}
	return dst[:len(dst)+n], true, nil
}

func (lz4Compressor) Decompress(dst, src []byte, rawLen int) (out []byte, err error) {
	if err := checkLZ4Lengths(len(src), rawLen); err != nil {
		return dst, err
	}
	defer func() {
		if p := recover(); p != nil {
			out, err = dst, fmt.Errorf("lz4: %w: panic: %v", ErrCorrupt, p)
		}
	}()
	grown := grow(dst, rawLen)
	n, err := lz4.UncompressBlock(src, grown[len(dst):len(dst)+rawLen])
	if err != nil {
		return dst, fmt.Errorf("lz4: %w: %w", ErrCorrupt, err)
	}
	if n != rawLen {
		return dst, fmt.Errorf("lz4: %w: block expands to %d bytes, want %d", ErrCorrupt, n, rawLen)
	}
	return grown[:len(dst)+n], nil
}

// checkLZ4Lengths refuses, before decoding, a block of n bytes that
// cannot expand to rawLen bytes, including the empty block that lz4
// itself decodes as (0, nil).
func checkLZ4Lengths(n, rawLen int) error {
	switch {
	case rawLen < 0:
		return fmt.Errorf("lz4: %w: negative length %d", ErrCorrupt, rawLen)
	case n == 0 && rawLen > 0:
		return fmt.Errorf("lz4: %w: empty block for %d bytes", ErrCorrupt, rawLen)
	case uint64(rawLen) > maxLZ4Ratio*uint64(n)+16:
		return fmt.Errorf("lz4: %w: %d-byte block cannot expand to %d bytes", ErrCorrupt, n, rawLen)
	}
	return nil
}

// grow returns b with room for n more bytes, allocating exactly once if it
// must. slices.Grow would do, but under the race detector it also
// allocates a temporary of n bytes.
func grow(b []byte, n int) []byte {
	if cap(b)-len(b) >= n {
		return b
	}
	grown := make([]byte, len(b), len(b)+n)
	copy(grown, b)
	return grown
}
