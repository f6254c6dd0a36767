// Package envelope reads and writes the fixed header that precedes every
// value cachemgr stores in Redis.
//
// Layout (16 bytes, big endian), format version 2:
//
//	0      magic 0xCE
//	1      high nibble: format version (2); low nibble: flags (bit 0: negative
//	       entry, bit 1: a tag section precedes the payload)
//	2      codec ID
//	3      compressor ID (0: payload stored as encoded)
//	4..9   fresh-until, Unix milliseconds, 48 bits
//	10..11 load duration in milliseconds, saturating at 65535
//	12..15 shape: a fingerprint of the Go type the payload encodes
//
// A compressed value follows the header with the uncompressed payload
// length as a uvarint. The header names the codec and compressor, so a
// change of default needs no flush: older entries still decode. The shape
// lets a reader refuse an entry written for another type (another process,
// another deploy) instead of decoding it half filled. A tagged value
// carries a tag section before the payload (see AppendTags); compression
// covers only the payload after it. Version 1 entries (which kept the
// uncompressed length where the shape is now) are refused as corrupt.
package envelope

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// HeaderSize is the number of bytes the header adds to every value.
const HeaderSize = 16

const (
	magic        = 0xCE
	version      = 2
	flagNegative = 1 << 0
	flagTagged   = 1 << 1
	knownFlags   = flagNegative | flagTagged
	maxFresh     = 1<<48 - 1
	maxLoadMS    = 1<<16 - 1
)

// ErrCorrupt reports bytes that are not a valid envelope.
var ErrCorrupt = errors.New("envelope: corrupt")

// Header describes a stored value.
type Header struct {
	// Codec is the ID of the codec that encoded the payload.
	Codec byte
	// Compressor is the ID of the compressor, or 0 when not compressed.
	Compressor byte
	// Negative marks a cached "not found"; its payload is empty.
	Negative bool
	// Tagged marks a tag section before the payload.
	Tagged bool
	// FreshUntil is when the value stops being fresh, in Unix milliseconds.
	FreshUntil int64
	// Load is how long the loader took to produce the value.
	Load time.Duration
	// RawLen is the payload length before compression; 0 when not compressed.
	RawLen int
	// Shape is a fingerprint of the type the payload encodes (0: none).
	Shape uint32
}

// Append appends h's encoding to dst: the header, and for a compressed
// value the uncompressed length. Out-of-range fields saturate: FreshUntil to
// [0, 2^48), Load to [0, 65535ms].
func Append(dst []byte, h Header) []byte {
	var b [HeaderSize]byte
	b[0] = magic
	b[1] = version << 4
	if h.Negative {
		b[1] |= flagNegative
	}
	if h.Tagged {
		b[1] |= flagTagged
	}
	b[2] = h.Codec
	b[3] = h.Compressor
	fresh := min(max(h.FreshUntil, 0), maxFresh)
	b[4] = byte(fresh >> 40)
	b[5] = byte(fresh >> 32)
	binary.BigEndian.PutUint32(b[6:10], uint32(fresh))
	binary.BigEndian.PutUint16(b[10:12], uint16(min(max(h.Load.Milliseconds(), 0), maxLoadMS)))
	binary.BigEndian.PutUint32(b[12:16], h.Shape)
	dst = append(dst, b[:]...)
	if h.Compressor != 0 {
		dst = binary.AppendUvarint(dst, uint64(max(h.RawLen, 0)))
	}
	return dst
}

// Parse splits b into its header and payload. The payload aliases b.
// maxRaw bounds RawLen, so a forged length cannot force a large allocation
// when the caller decompresses. Anything malformed returns ErrCorrupt.
func Parse(b []byte, maxRaw int) (Header, []byte, error) {
	if err := checkFixed(b); err != nil {
		return Header{}, nil, err
	}
	flags := b[1] & 0x0f
	h := Header{
		Codec:      b[2],
		Compressor: b[3],
		Negative:   flags&flagNegative != 0,
		Tagged:     flags&flagTagged != 0,
		FreshUntil: int64(b[4])<<40 | int64(b[5])<<32 | int64(binary.BigEndian.Uint32(b[6:10])),
		Load:       time.Duration(binary.BigEndian.Uint16(b[10:12])) * time.Millisecond,
		Shape:      binary.BigEndian.Uint32(b[12:16]),
	}
	payload := b[HeaderSize:]
	if h.Compressor != 0 {
		n, k, err := rawLen(payload, maxRaw)
		if err != nil {
			return Header{}, nil, err
		}
		h.RawLen, payload = n, payload[k:]
	}
	if err := h.check(payload, maxRaw); err != nil {
		return Header{}, nil, err
	}
	return h, payload, nil
}

// checkFixed reports, as ErrCorrupt, bytes too short for a header or
// whose magic, version or flags this package does not write.
func checkFixed(b []byte) error {
	if len(b) < HeaderSize {
		return fmt.Errorf("%w: %d bytes, want at least %d", ErrCorrupt, len(b), HeaderSize)
	}
	if b[0] != magic {
		return fmt.Errorf("%w: bad magic %#x", ErrCorrupt, b[0])
	}
	if v := b[1] >> 4; v != version {
		return fmt.Errorf("%w: unknown version %d", ErrCorrupt, v)
	}
	if flags := b[1] & 0x0f; flags&^knownFlags != 0 {
		return fmt.Errorf("%w: unknown flags %#x", ErrCorrupt, flags)
	}
	return nil
}

// rawLen reads the uncompressed length that starts a compressed payload
// and returns it with the number of bytes it took. Only the shortest
// encoding is accepted (one value, one byte string), and no length over
// maxRaw.
func rawLen(payload []byte, maxRaw int) (int, int, error) {
	n, k := binary.Uvarint(payload)
	if k <= 0 || n > uint64(maxRaw) || k != len(binary.AppendUvarint(nil, n)) {
		return 0, 0, fmt.Errorf("%w: bad raw length of compressed payload (limit %d)", ErrCorrupt, maxRaw)
	}
	return int(n), k, nil
}

// check reports a header that does not fit its payload, or the limit
// maxRaw, as ErrCorrupt. Its receiver is a value so that Parse's header
// need not live in memory: with a pointer, Parse took 1.3x as long.
func (h Header) check(payload []byte, maxRaw int) error {
	if err := h.checkKind(len(payload)); err != nil {
		return err
	}
	if h.Compressor != 0 {
		return h.checkCompressed(len(payload), maxRaw)
	}
	return h.checkPlain(len(payload), maxRaw)
}

// checkKind reports a header without a codec, or a negative entry that
// carries more than its tags: a negative entry has no payload.
func (h Header) checkKind(n int) error {
	switch {
	case h.Codec == 0:
		return fmt.Errorf("%w: codec 0", ErrCorrupt)
	case h.Negative && h.Compressor != 0, h.Negative && !h.Tagged && n != 0:
		return fmt.Errorf("%w: negative entry with payload", ErrCorrupt)
	}
	return nil
}

// checkCompressed reports a compressed payload of n bytes that is empty,
// or whose raw length is 0 or over maxRaw.
func (h Header) checkCompressed(n, maxRaw int) error {
	if h.RawLen == 0 || h.RawLen > maxRaw || n == 0 {
		return fmt.Errorf("%w: raw length %d for %d compressed bytes (limit %d)", ErrCorrupt, h.RawLen, n, maxRaw)
	}
	return nil
}

// checkPlain reports an uncompressed payload of n bytes with a raw length
// (only compressed payloads have one) or over maxRaw.
func (h Header) checkPlain(n, maxRaw int) error {
	if h.RawLen != 0 {
		return fmt.Errorf("%w: raw length %d without compression", ErrCorrupt, h.RawLen)
	}
	if n > maxRaw {
		return fmt.Errorf("%w: payload of %d bytes over limit %d", ErrCorrupt, n, maxRaw)
	}
	return nil
}

// Limits of a tag section.
const (
	MaxTags   = 32
	MaxTagLen = 1024
)

// AppendTags appends a tag section: the entry's stamp (Unix microseconds;
// the entry is valid only while every tag's last invalidation is older)
// and its tags, each a uvarint length and the bytes. The caller enforces
// MaxTags and MaxTagLen.
func AppendTags(dst []byte, stamp int64, tags []string) []byte {
	dst = binary.BigEndian.AppendUint64(dst, uint64(stamp))
	dst = append(dst, byte(len(tags)))
	for _, t := range tags {
		dst = binary.AppendUvarint(dst, uint64(len(t)))
		dst = append(dst, t...)
	}
	return dst
}

// ParseTags splits the tag section off the front of b.
func ParseTags(b []byte) (stamp int64, tags []string, rest []byte, err error) {
	if len(b) < 9 {
		return 0, nil, nil, fmt.Errorf("%w: tag section of %d bytes", ErrCorrupt, len(b))
	}
	stamp = int64(binary.BigEndian.Uint64(b))
	n := int(b[8])
	if n == 0 || n > MaxTags {
		return 0, nil, nil, fmt.Errorf("%w: %d tags", ErrCorrupt, n)
	}
	b = b[9:]
	tags = make([]string, n)
	for i := range tags {
		var ok bool
		if tags[i], b, ok = parseTag(b); !ok {
			return 0, nil, nil, fmt.Errorf("%w: tag %d length", ErrCorrupt, i)
		}
	}
	return stamp, tags, b, nil
}

// parseTag splits one tag, a uvarint length and the bytes, off the front
// of b. It reports false for a length that is 0, over MaxTagLen or past
// the end of b.
func parseTag(b []byte) (tag string, rest []byte, ok bool) {
	l, k := binary.Uvarint(b)
	if k <= 0 || l == 0 || l > MaxTagLen || l > uint64(len(b)-k) {
		return "", nil, false
	}
	return string(b[k : k+int(l)]), b[k+int(l):], true
}
