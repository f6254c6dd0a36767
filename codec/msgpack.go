package codec

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/vmihailenco/msgpack/v5"
)

// maxMsgpackDepth is how deeply Msgpack lets arrays and maps nest. The
// msgpack decoder recurses once per level, so this also bounds its stack.
const maxMsgpackDepth = 512

// Msgpack returns the default codec, MessagePack through
// github.com/vmihailenco/msgpack/v5.
//
// A struct field is named by its msgpack tag, else by its json tag, else by
// its Go name, so structs already tagged for encoding/json keep their field
// names; options such as omitempty work in either tag. Otherwise values are
// encoded as msgpack.Marshal encodes them, so nil and empty slices stay
// distinct. A time.Time uses the MessagePack timestamp extension and decodes
// as the same instant in the local time zone.
//
// Unmarshal checks its input in the same pass as it decodes it: the decoder
// gets no byte of a value before the value's header has passed the check.
// The input must hold exactly one value; every length and element count
// must fit in the bytes that follow it, once one byte is set aside for each
// element already declared and not yet read; arrays and maps may nest at
// most 512 deep. Input that fails returns an error wrapping [ErrMalformed],
// also when the decoder stopped first for another reason, such as a type
// mismatch; v may then hold part of the input. The check stands in for the
// allocation limits of msgpack v5.4, which are never applied: without it a
// 5-byte input could make the decoder allocate gigabytes. What remains is
// proportional to the input: each element takes at least one byte, and
// decoding n of them into a []T allocates n times the size of T. Panics in
// msgpack or in a type's own (un)marshal methods are returned as errors.
//
// Extension payloads are opaque bytes. Extension decoders that read them as
// bytes, as msgpack.RegisterExt's do, work; a custom extension decoder that
// parses its payload as MessagePack through the Decoder gets an
// [ErrMalformed] error, as does a map stored inside an extension, because
// that payload has not been checked. For the same reason, fields with the
// msgpack "intern" option fail to decode once they refer back to the 223rd
// or 224th interned string.
//
// Append and Unmarshal reuse pooled encoders and decoders and are safe for
// concurrent use.
func Msgpack() Codec { return msgpackCodec{} }

type msgpackCodec struct{}

func (msgpackCodec) ID() byte     { return MsgpackID }
func (msgpackCodec) Name() string { return "msgpack" }

// msgpackEncoder is a msgpack.Encoder bound to its own appendWriter.
type msgpackEncoder struct {
	w   appendWriter
	enc *msgpack.Encoder
}

func (e *msgpackEncoder) writer() *appendWriter { return &e.w }

func (e *msgpackEncoder) encode(v any) error {
	e.enc.ResetWriter(&e.w) // also clears the intern dictionary
	return e.enc.Encode(v)
}

var msgpackEncoders = sync.Pool{New: func() any {
	e := new(msgpackEncoder)
	e.enc = msgpack.NewEncoder(&e.w)
	e.enc.SetCustomStructTag("json")
	return e
}}

func (msgpackCodec) Append(dst []byte, v any) ([]byte, error) {
	out, err := appendPooled(&msgpackEncoders, "msgpack", dst, v)
	if err != nil {
		return dst, msgpackError(err)
	}
	return out, nil
}

// msgpackDecoder is a decoder bound to its own msgpackReader, which checks
// the input as the decoder reads it.
type msgpackDecoder struct {
	r   msgpackReader
	dec *msgpack.Decoder
}

var msgpackDecoders = sync.Pool{New: func() any {
	d := new(msgpackDecoder)
	// msgpackReader is an io.ByteScanner, so the decoder reads it directly
	// instead of through a bufio.Reader.
	d.dec = msgpack.NewDecoder(&d.r)
	d.dec.SetCustomStructTag("json")
	return d
}}

func (msgpackCodec) Unmarshal(data []byte, v any) (err error) {
	d := msgpackDecoders.Get().(*msgpackDecoder)
	defer func() {
		// A panicking decoder is dropped, not pooled: its state is unknown.
		if p := recover(); p != nil {
			err = fmt.Errorf("msgpack: panic decoding into %T: %v", v, p)
		}
	}()
	d.r.reset(data)
	d.dec.ResetReader(&d.r) // also clears the intern dictionary
	err = d.r.finish(d.dec.Decode(v))
	d.r.data = nil // the pool must not keep the caller's bytes
	msgpackDecoders.Put(d)
	return err
}

// msgpackError prefixes err with "msgpack: " unless the library already did.
func msgpackError(err error) error {
	if strings.HasPrefix(err.Error(), "msgpack: ") {
		return err
	}
	return fmt.Errorf("msgpack: %w", err)
}

// msgpackReader hands the decoder its input and checks the structure of
// that input in the same pass, one header ahead of the decoder: before the
// decoder gets the first byte of a value, the reader has checked that
// value's header. The check follows the MessagePack grammar, not the
// decoder's calls; the decoder reads the same headers in the same order
// because it parses the same grammar.
//
// Every value declared by an array or map header but not begun yet needs at
// least one byte, so the reader counts them (owed) and refuses a header
// whose length or element count does not fit in the bytes left once those
// are set aside. Whatever the decoder allocates for the headers it has read
// is then bounded by the input's length, however the headers nest. A stack
// of open arrays and maps bounds the nesting and shows where the single
// top-level value ends: the innermost one has all its values begun once
// owed falls back to its base, what owed was before its values were added.
//
// The check skips extension payloads without looking inside, but msgpack's
// Decoder.DecodeMapLen, used for every map target, skips an extension header
// and parses what follows as a map. A forged extension could hide a huge
// length there, or knock the decoder out of step with the checked
// structure. The extension decoders that ship with msgpack read their payload
// with Read, while DecodeMapLen reads the first payload byte with ReadByte;
// so ReadByte refuses the start of a payload (guard) and records the first
// refusal in trip.
type msgpackReader struct {
	data []byte
	off  int // the decoder's position
	// scan is the offset of the first header not checked yet; the bytes
	// before it are checked, and off never passes it.
	scan  int
	owed  int   // values declared and not begun
	base  int   // owed at which the innermost open array or map is complete
	top   int   // how many arrays and maps are open
	guard int   // start of the last guarded extension payload, or -1
	trip  int   // first guarded offset the decoder read, or -1
	err   error // the first error of the check, wrapping ErrMalformed
	// bases holds the base of each open array or map and, below them, 0
	// for the top-level value.
	bases [maxMsgpackDepth + 1]int
}

func (r *msgpackReader) reset(data []byte) {
	r.data, r.off, r.scan, r.err = data, 0, 0, nil
	r.owed, r.base, r.top = 1, 0, 0
	r.guard, r.trip = -1, -1
}

func (r *msgpackReader) Read(p []byte) (int, error) {
	end := r.off + len(p)
	if end > r.scan {
		return r.readChecking(p)
	}
	copy(p, r.data[r.off:end])
	r.off = end
	return len(p), nil
}

// readChecking is Read for a p that reaches bytes not checked yet.
func (r *msgpackReader) readChecking(p []byte) (int, error) {
	if r.off >= len(r.data) {
		return 0, r.eof()
	}
	end := min(r.off+len(p), len(r.data))
	if err := r.checkTo(end); err != nil {
		return 0, err
	}
	n := copy(p, r.data[r.off:end])
	r.off = end
	return n, nil
}

// ReadByte returns the next byte. At scan it checks the header there when
// the header is a scalar or a small array or map that fits, as head would;
// below scan the byte is checked, and refused if it is the guard; the rest
// goes to readByteChecking. The check sits here, on the decoder's own path
// to the byte, because there its work overlaps with the decoder's: checked
// apart in one loop, each header waits for the one before it.
func (r *msgpackReader) ReadByte() (byte, error) {
	s := r.off
	if s == r.scan && uint(s) < uint(len(r.data)) {
		c := r.data[s]
		step := msgpackSteps[c]
		owed := r.owed
		// The body and the values due must fit after the code, as in head.
		if uint64(s+owed)+step>>16 <= uint64(len(r.data)) && owed > 0 {
			if owed == r.base {
				r.close(owed)
			}
			vals := int(step>>8) & 0xff
			if vals != 0 {
				if r.top == maxMsgpackDepth {
					return r.readByteChecking()
				}
				r.push(owed - 1)
			}
			r.owed = owed - 1 + vals
			r.scan = s + int(step&0xff)
			r.off = s + 1
			return c, nil
		}
	} else if s < r.scan && s != r.guard {
		r.off = s + 1
		return r.data[s], nil
	}
	return r.readByteChecking()
}

// readByteChecking is ReadByte for the guarded offset, the end of the
// input and headers that ReadByte leaves to head.
func (r *msgpackReader) readByteChecking() (byte, error) {
	s := r.off
	switch {
	case s == r.scan && r.shortBytes(s):
	case s < r.scan:
		return 0, r.refuse(s)
	case s >= len(r.data):
		return 0, r.eof()
	default:
		if err := r.checkTo(s + 1); err != nil {
			return 0, err
		}
	}
	r.off++
	return r.data[s], nil
}

// shortBytes checks a str8, str16, bin8 or bin16 header at s, r.scan, as
// head would, and reports whether it did; it leaves other headers, and
// those that do not fit, to head. Strings of 32 bytes or more are common
// enough that the detour through head shows.
func (r *msgpackReader) shortBytes(s int) bool {
	if s >= len(r.data) {
		return false
	}
	var size int
	switch r.data[s] {
	case 0xc4, 0xd9:
		size = 1
	case 0xc5, 0xda:
		size = 2
	default:
		return false
	}
	owed, i := r.owed, s+1+size
	if owed <= 0 || i > len(r.data) {
		return false
	}
	n := int(r.data[s+1])
	if size == 2 {
		n = int(binary.BigEndian.Uint16(r.data[s+1:]))
	}
	// The values due after this one need a byte each, as in head.
	if i+n+owed-1 > len(r.data) {
		return false
	}
	if owed == r.base {
		r.close(owed)
	}
	r.owed = owed - 1
	r.scan = i + n
	return true
}

func (r *msgpackReader) UnreadByte() error {
	if r.off == 0 {
		return errors.New("msgpack: UnreadByte at start of input")
	}
	r.off--
	return nil
}

var errExtPayload = fmt.Errorf("%w: extension payload read as a value", ErrMalformed)

// refuse records a read of the guarded offset s.
func (r *msgpackReader) refuse(s int) error {
	if r.trip < 0 {
		r.trip = s
	}
	return errExtPayload
}

// eof is the error for a read at the end of the input: io.EOF for a decoder
// that reads past a complete value, else the check's error.
func (r *msgpackReader) eof() error {
	if r.err == nil && r.owed > 0 {
		r.fail(malformed(len(r.data), "unexpected end of input"))
	}
	if r.err != nil {
		return r.err
	}
	return io.EOF
}

// finish completes the check of the input after the decoder returned err,
// so that malformed input is reported as such even where the decoder
// stopped early, and returns the error for Unmarshal.
func (r *msgpackReader) finish(err error) error {
	if r.checkTo(len(r.data)) == nil && r.owed > 0 {
		r.fail(malformed(len(r.data), "unexpected end of input"))
	}
	switch {
	case r.err != nil:
		return fmt.Errorf("msgpack: %w", r.err)
	case r.trip >= 0:
		return fmt.Errorf("msgpack: %w at offset %d: extension payload read as a value", ErrMalformed, r.trip)
	case err != nil:
		return msgpackError(err)
	}
	return nil
}

// fail records err and stops the check: no value can begin once owed is
// below base.
func (r *msgpackReader) fail(err error) {
	r.err = err
	r.owed, r.base = -1, 0
}

// checkTo checks the headers that start before end, which is at most
// len(r.data).
func (r *msgpackReader) checkTo(end int) error {
	for r.err == nil && r.scan < end {
		if err := r.head(); err != nil {
			r.fail(err)
		}
	}
	return r.err
}

// close closes the arrays and maps that have all their values once owed
// values are due.
func (r *msgpackReader) close(owed int) {
	for owed == r.base {
		r.top--
		r.base = r.bases[r.top]
	}
}

// msgpackSteps describes each code for ReadByte's check: the bytes the
// code and its body take (bits 0-7), the values it opens (bits 8-15) and
// need, the bytes those need after the code (from bit 16). Codes left to
// head have a need of 1<<48 - 1, which with the code's own byte is more
// than any Go allocation holds. It is read-only.
var msgpackSteps = msgpackStepTable()

func msgpackStepTable() (t [256]uint64) {
	for c, h := range msgpackHeads {
		t[c] = (1<<48 - 1) << 16
		if h.fast != slowHead {
			body, vals := uint64(h.fast&0xff), uint64(h.fast>>8)
			t[c] = (body+vals)<<16 | vals<<8 | (1 + body)
		}
	}
	return t
}

// Kinds of MessagePack header.
const (
	headScalar   = iota // n bytes follow: numbers, nil, bool, fixstr
	headBytes           // a length, then that many bytes: str, bin
	headExt             // a length or none, a type byte and n bytes
	headArray           // a length or none, then n values
	headMap             // a length or none, then n pairs of values
	headReserved        // the code 0xc1
)

// msgpackHead describes one code: its kind, the size of the length field
// that follows it, and otherwise the n it implies: the bytes of a scalar or
// an extension payload, or the elements of an array or pairs of a map.
// ReadByte checks scalars and the small arrays and maps from fast alone:
// the bytes after the code, plus 256 times the values the code opens, or
// slowHead for the codes it leaves to head.
type msgpackHead struct {
	kind, lenSize, n uint8
	fast             uint16
}

const slowHead = 0xffff

// msgpackHeads describes each of the 256 codes. It is read-only.
var msgpackHeads = msgpackHeadTable()

func msgpackHeadTable() (t [256]msgpackHead) {
	// 0x00-0x7f, 0xe0-0xff (fixint) and 0xc0 (nil) are scalars with
	// nothing after the code: the zero msgpackHead.
	for c := range 16 {
		t[0x80+c] = msgpackHead{kind: headMap, n: uint8(c), fast: uint16(2*c) << 8}
		t[0x90+c] = msgpackHead{kind: headArray, n: uint8(c), fast: uint16(c) << 8}
	}
	for c := range 32 {
		t[0xa0+c] = scalarHead(uint8(c)) // fixstr
	}
	copy(t[0xc1:0xe0], []msgpackHead{
		0xc1 - 0xc1: {kind: headReserved, fast: slowHead},
		0xc2 - 0xc1: scalarHead(0),                                 // false
		0xc3 - 0xc1: scalarHead(0),                                 // true
		0xc4 - 0xc1: {kind: headBytes, lenSize: 1, fast: slowHead}, // bin8
		0xc5 - 0xc1: {kind: headBytes, lenSize: 2, fast: slowHead}, // bin16
		0xc6 - 0xc1: {kind: headBytes, lenSize: 4, fast: slowHead}, // bin32
		0xc7 - 0xc1: {kind: headExt, lenSize: 1, fast: slowHead},   // ext8
		0xc8 - 0xc1: {kind: headExt, lenSize: 2, fast: slowHead},   // ext16
		0xc9 - 0xc1: {kind: headExt, lenSize: 4, fast: slowHead},   // ext32
		0xca - 0xc1: scalarHead(4),                                 // float32
		0xcb - 0xc1: scalarHead(8),                                 // float64
		0xcc - 0xc1: scalarHead(1),                                 // uint8
		0xcd - 0xc1: scalarHead(2),                                 // uint16
		0xce - 0xc1: scalarHead(4),                                 // uint32
		0xcf - 0xc1: scalarHead(8),                                 // uint64
		0xd0 - 0xc1: scalarHead(1),                                 // int8
		0xd1 - 0xc1: scalarHead(2),                                 // int16
		0xd2 - 0xc1: scalarHead(4),                                 // int32
		0xd3 - 0xc1: scalarHead(8),                                 // int64
		0xd4 - 0xc1: {kind: headExt, n: 1, fast: slowHead},         // fixext1
		0xd5 - 0xc1: {kind: headExt, n: 2, fast: slowHead},         // fixext2
		0xd6 - 0xc1: {kind: headExt, n: 4, fast: slowHead},         // fixext4
		0xd7 - 0xc1: {kind: headExt, n: 8, fast: slowHead},         // fixext8
		0xd8 - 0xc1: {kind: headExt, n: 16, fast: slowHead},        // fixext16
		0xd9 - 0xc1: {kind: headBytes, lenSize: 1, fast: slowHead}, // str8
		0xda - 0xc1: {kind: headBytes, lenSize: 2, fast: slowHead}, // str16
		0xdb - 0xc1: {kind: headBytes, lenSize: 4, fast: slowHead}, // str32
		0xdc - 0xc1: {kind: headArray, lenSize: 2, fast: slowHead}, // array16
		0xdd - 0xc1: {kind: headArray, lenSize: 4, fast: slowHead}, // array32
		0xde - 0xc1: {kind: headMap, lenSize: 2, fast: slowHead},   // map16
		0xdf - 0xc1: {kind: headMap, lenSize: 4, fast: slowHead},   // map32
	})
	return t
}

// scalarHead describes a scalar code followed by n bytes.
func scalarHead(n uint8) msgpackHead {
	return msgpackHead{kind: headScalar, n: n, fast: uint16(n)}
}

// head checks the header at r.scan and moves r.scan to the next one: past
// the body of a scalar, str, bin or ext, or to the first value of an array
// or map. It returns an error wrapping ErrMalformed unless a value is due,
// the header's length or count fits in the bytes left once the values
// already due are set aside, nesting stays within maxMsgpackDepth and the
// code is not the reserved 0xc1.
func (r *msgpackReader) head() error {
	s := r.scan
	if err := r.begin(s); err != nil {
		return err
	}
	c := r.data[s]
	h := msgpackHeads[c]
	i := s + 1
	n := int64(h.n)
	if h.lenSize > 0 {
		if len(r.data)-i < int(h.lenSize) {
			return malformed(s, "truncated length of code %#x", c)
		}
		n = readLength(r.data[i:], h.lenSize)
		i += int(h.lenSize)
	}
	free := int64(len(r.data) - i - r.owed)
	switch h.kind {
	case headScalar, headBytes:
		if n > free {
			return malformed(s, "code %#x needs %d bytes, %d left", c, n, free)
		}
		r.scan = i + int(n)
	case headExt:
		return r.ext(s, i, n, free)
	case headArray:
		if n > free {
			return malformed(s, "array of %d elements, %d bytes left", n, free)
		}
		return r.open(s, i, int(n))
	case headMap:
		if 2*n > free {
			return malformed(s, "map of %d entries, %d bytes left", n, free)
		}
		return r.open(s, i, 2*int(n))
	default:
		return malformed(s, "reserved code %#x", c)
	}
	return nil
}

// begin counts the value whose header is at s as begun, closing the arrays
// and maps that have all their values.
func (r *msgpackReader) begin(s int) error {
	if r.owed == 0 {
		return malformed(s, "%d trailing bytes", len(r.data)-s)
	}
	r.close(r.owed)
	r.owed--
	return nil
}

// readLength returns the big-endian length field of size 1, 2 or 4 at the
// start of b.
func readLength(b []byte, size uint8) int64 {
	switch size {
	case 1:
		return int64(b[0])
	case 2:
		return int64(binary.BigEndian.Uint16(b))
	}
	return int64(binary.BigEndian.Uint32(b))
}

// ext checks an extension whose header starts at s and whose type byte is
// at i, with a payload of n bytes.
func (r *msgpackReader) ext(s, i int, n, free int64) error {
	if n >= free {
		return malformed(s, "extension of %d bytes, %d left", n, free)
	}
	p := i + 1
	// Read as a map code, a 1-byte payload that is a fixmap or nil leaves
	// the decoder on the next checked value; map16 and map32 would take
	// their count from the bytes after it.
	if n > 1 || n == 1 && (r.data[p] == 0xde || r.data[p] == 0xdf) {
		r.guard = p
	}
	r.scan = p + int(n)
	return nil
}

// open opens an array or map of n values whose header starts at s and
// whose first value is at i.
func (r *msgpackReader) open(s, i, n int) error {
	r.scan = i
	if n == 0 {
		return nil
	}
	if r.top == maxMsgpackDepth {
		return malformed(s, "nesting deeper than %d", maxMsgpackDepth)
	}
	r.push(r.owed)
	r.owed += n
	return nil
}

// push opens an array or map, below maxMsgpackDepth, that is complete
// once owed falls back to base.
func (r *msgpackReader) push(base int) {
	r.top++
	r.bases[r.top] = base
	r.base = base
}

// malformed returns an error wrapping ErrMalformed that names the offset.
func malformed(off int, format string, args ...any) error {
	return fmt.Errorf("%w at offset %d: %s", ErrMalformed, off, fmt.Sprintf(format, args...))
}
