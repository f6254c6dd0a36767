// Package compress shrinks encoded payloads for cachemgr.
//
// A [Compressor] has a one-byte ID recorded in every stored value. ID 0 means
// "not compressed"; IDs 1 to 127 are reserved for this package and custom
// compressors use 128 to 255.
package compress

// Compressor compresses and decompresses whole payloads. Implementations
// must be safe for concurrent use.
type Compressor interface {
	// ID identifies the compressor in the stored envelope; 0 is reserved
	// for "none".
	ID() byte
	// Name is a short human-readable name, such as "lz4".
	Name() string
	// Compress appends the compressed form of src to dst. It returns
	// ok=false, leaving dst's contents beyond its original length
	// unspecified, when the result would not be smaller than src: the
	// caller then stores src as it is.
	Compress(dst, src []byte) (out []byte, ok bool, err error)
	// Decompress appends to dst the decompression of src, which must
	// expand to exactly rawLen bytes. Forged or truncated input returns an
	// error; it never panics and never allocates more than rawLen bytes.
	Decompress(dst, src []byte, rawLen int) ([]byte, error)
}

// IDs of the built-in compressors, as recorded in stored envelopes.
const (
	NoneID byte = 0
	LZ4ID  byte = 1
)
