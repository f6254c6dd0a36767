package compress

import "fmt"

// None returns the compressor that leaves payloads as they are, with ID
// [NoneID]. Compress always reports ok=false; Decompress copies src, which
// must be exactly rawLen bytes, or returns an error wrapping [ErrCorrupt].
//
// None is safe for concurrent use.
func None() Compressor { return noneCompressor{} }

type noneCompressor struct{}

func (noneCompressor) ID() byte     { return NoneID }
func (noneCompressor) Name() string { return "none" }

func (noneCompressor) Compress(dst, src []byte) ([]byte, bool, error) {
	return dst, false, nil
}

func (noneCompressor) Decompress(dst, src []byte, rawLen int) ([]byte, error) {
	if rawLen != len(src) {
		return dst, fmt.Errorf("none: %w: %d bytes, want %d", ErrCorrupt, len(src), rawLen)
	}
	return append(dst, src...), nil
}
