// Package codec turns typed values into bytes and back for cachemgr.
//
// A [Codec] has a one-byte ID that cachemgr records in every stored value,
// so entries written with one codec still decode after the default changes.
// IDs 1 to 127 are reserved for this package; custom codecs use 128 to 255.
package codec

// Codec encodes and decodes values. Implementations must be safe for
// concurrent use and must not retain data passed to Unmarshal: the bytes may
// be reused by the caller once Unmarshal returns.
type Codec interface {
	// ID identifies the codec in the stored envelope. It must never change
	// for a given format, and must be non-zero.
	ID() byte
	// Name is a short human-readable name, such as "msgpack".
	Name() string
	// Append appends the encoding of v to dst and returns the extended slice.
	Append(dst []byte, v any) ([]byte, error)
	// Unmarshal decodes data into v, which is a non-nil pointer. Malformed or
	// hostile input returns an error; it never panics and never allocates more
	// than a small multiple of len(data).
	Unmarshal(data []byte, v any) error
}

// IDs of the built-in codecs, as recorded in stored envelopes.
const (
	MsgpackID byte = 1
	JSONID    byte = 2
	RawID     byte = 3
)
