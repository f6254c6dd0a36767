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
// Unmarshal checks the whole input before decoding anything: it must hold
// exactly one value, every length and element count must fit in the bytes
// that follow it, and arrays and maps may nest at most 512 deep. Input that
// fails returns an error wrapping [ErrMalformed]. The check stands in for the
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

// appendWriter is an io.Writer and io.ByteWriter that appends to b.
type appendWriter struct{ b []byte }

func (w *appendWriter) Write(p []byte) (int, error) {
	w.b = append(w.b, p...)
	return len(p), nil
}

func (w *appendWriter) WriteByte(c byte) error {
	w.b = append(w.b, c)
	return nil
}

// msgpackEncoder is an encoder bound to its own appendWriter, so pointing it
// at the caller's slice costs no allocation.
type msgpackEncoder struct {
	w   appendWriter
	enc *msgpack.Encoder
}

var msgpackEncoders = sync.Pool{New: func() any {
	e := new(msgpackEncoder)
	e.enc = msgpack.NewEncoder(&e.w)
	e.enc.SetCustomStructTag("json")
	return e
}}

func (msgpackCodec) Append(dst []byte, v any) (out []byte, err error) {
	e := msgpackEncoders.Get().(*msgpackEncoder)
	defer func() {
		// A panicking encoder is dropped, not pooled: its state is unknown.
		if p := recover(); p != nil {
			out, err = dst, fmt.Errorf("msgpack: panic encoding %T: %v", v, p)
		}
	}()
	e.w.b = dst
	e.enc.ResetWriter(&e.w) // also clears the intern dictionary
	err = e.enc.Encode(v)
	out = e.w.b
	e.w.b = nil
	msgpackEncoders.Put(e)
	if err != nil {
		return dst, msgpackError(err)
	}
	return out, nil
}

// msgpackDecoder is a decoder bound to its own msgpackReader, and the
// validator that checks its input.
type msgpackDecoder struct {
	v   msgpackValidator
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
	if err := d.v.validate(data); err != nil {
		putMsgpackDecoder(d)
		return fmt.Errorf("msgpack: %w", err)
	}
	d.r.reset(data, d.v.guard)
	d.dec.ResetReader(&d.r) // also clears the intern dictionary
	err = d.dec.Decode(v)
	trip := d.r.trip
	putMsgpackDecoder(d)
	if trip >= 0 {
		return fmt.Errorf("msgpack: %w at offset %d: extension payload read as a value", ErrMalformed, trip)
	}
	if err != nil {
		return msgpackError(err)
	}
	return nil
}

// putMsgpackDecoder returns d to the pool without the caller's data, and
// without a guard list grown by one unusual input.
func putMsgpackDecoder(d *msgpackDecoder) {
	d.r.data, d.r.guard = nil, nil
	if cap(d.v.guard) > 1024 {
		d.v.guard = nil
	}
	msgpackDecoders.Put(d)
}

// msgpackError prefixes err with "msgpack: " unless the library already did.
func msgpackError(err error) error {
	if strings.HasPrefix(err.Error(), "msgpack: ") {
		return err
	}
	return fmt.Errorf("msgpack: %w", err)
}

// msgpackReader gives the decoder input that msgpackValidator accepted.
//
// The validator skips extension payloads without looking inside, but
// msgpack's Decoder.DecodeMapLen, used for every map target, skips an
// extension header and parses what follows as a map. A forged extension can
// hide a huge length there, or knock the decoder out of step with the
// checked structure. The extension decoders that ship with msgpack read their
// payload with Read, while DecodeMapLen reads the first payload byte with
// ReadByte; so ReadByte refuses the offsets in guard and records the first
// refusal in trip.
type msgpackReader struct {
	data  []byte
	off   int
	guard []int // ascending offsets ReadByte refuses
	next  int   // guard[:next] lie before off
	trip  int   // first offset refused, or -1
}

func (r *msgpackReader) reset(data []byte, guard []int) {
	r.data, r.guard, r.off, r.next, r.trip = data, guard, 0, 0, -1
}

func (r *msgpackReader) Read(p []byte) (int, error) {
	if r.off >= len(r.data) {
		if len(p) == 0 {
			return 0, nil
		}
		return 0, io.EOF
	}
	n := copy(p, r.data[r.off:])
	r.off += n
	return n, nil
}

func (r *msgpackReader) ReadByte() (byte, error) {
	if r.off >= len(r.data) {
		return 0, io.EOF
	}
	for r.next < len(r.guard) && r.guard[r.next] < r.off {
		r.next++
	}
	if r.next < len(r.guard) && r.guard[r.next] == r.off {
		if r.trip < 0 {
			r.trip = r.off
		}
		return 0, errExtPayload
	}
	c := r.data[r.off]
	r.off++
	return c, nil
}

func (r *msgpackReader) UnreadByte() error {
	if r.off == 0 {
		return errors.New("msgpack: UnreadByte at start of input")
	}
	r.off--
	for r.next > 0 && r.guard[r.next-1] >= r.off {
		r.next--
	}
	return nil
}

var errExtPayload = fmt.Errorf("%w: extension payload read as a value", ErrMalformed)

// msgpackValidator checks input before it reaches the decoder. Its slices
// are kept for reuse.
type msgpackValidator struct {
	// guard lists, in ascending order, the offsets of extension payloads
	// that the decoder must not read as a value (see msgpackReader).
	guard []int
	// pending counts the values still due at each depth of nesting; the
	// first entry is the single top-level value.
	pending []uint64
}

// validate returns an error wrapping ErrMalformed unless b holds exactly one
// MessagePack value in which every str, bin and ext length fits in the bytes
// that follow it, every array has at most one element per following byte and
// every map at most one entry per two, nesting is at most maxMsgpackDepth
// deep and the reserved code 0xc1 does not occur. It fills v.guard for b.
//
// It works in one pass with an explicit stack, so hostile nesting cannot
// exhaust the goroutine stack.
func (v *msgpackValidator) validate(b []byte) error {
	const (
		kindFixed = iota
		kindBytes
		kindExt
		kindArray
		kindMap
	)
	v.guard = v.guard[:0]
	v.pending = append(v.pending[:0], 1)
	i := 0
	for {
		top := len(v.pending) - 1
		for v.pending[top] == 0 {
			if top == 0 {
				if i != len(b) {
					return malformed(i, "%d trailing bytes", len(b)-i)
				}
				return nil
			}
			top--
			v.pending = v.pending[:top+1]
		}
		v.pending[top]--

		if i >= len(b) {
			return malformed(i, "unexpected end of input")
		}
		start := i
		c := b[i]
		i++

		// Each code has a fixed-size body, or a length field of lenSize
		// bytes giving the size of a str/bin/ext body or the element count
		// of an array/map.
		kind, lenSize := kindFixed, 0
		var n uint64
		switch {
		case c <= 0x7f, c >= 0xe0, c == 0xc0, c == 0xc2, c == 0xc3:
			// fixint, nil, false, true
		case c <= 0x8f:
			kind, n = kindMap, uint64(c&0x0f)
		case c <= 0x9f:
			kind, n = kindArray, uint64(c&0x0f)
		case c <= 0xbf:
			kind, n = kindBytes, uint64(c&0x1f)
		case c == 0xc1:
			return malformed(start, "reserved code 0xc1")
		case c == 0xc4, c == 0xd9: // bin8, str8
			kind, lenSize = kindBytes, 1
		case c == 0xc5, c == 0xda: // bin16, str16
			kind, lenSize = kindBytes, 2
		case c == 0xc6, c == 0xdb: // bin32, str32
			kind, lenSize = kindBytes, 4
		case c == 0xc7, c == 0xc8, c == 0xc9: // ext8, ext16, ext32
			kind, lenSize = kindExt, 1<<(c-0xc7)
		case c == 0xca, c == 0xce, c == 0xd2: // float32, uint32, int32
			n = 4
		case c == 0xcb, c == 0xcf, c == 0xd3: // float64, uint64, int64
			n = 8
		case c == 0xcc, c == 0xd0: // uint8, int8
			n = 1
		case c == 0xcd, c == 0xd1: // uint16, int16
			n = 2
		case c <= 0xd8: // fixext1 to fixext16
			kind, n = kindExt, 1<<(c-0xd4)
		case c == 0xdc, c == 0xdd: // array16, array32
			kind, lenSize = kindArray, 2<<(c-0xdc)
		default: // 0xde, 0xdf: map16, map32
			kind, lenSize = kindMap, 2<<(c-0xde)
		}

		if lenSize > 0 {
			if len(b)-i < lenSize {
				return malformed(start, "truncated length of code %#x", c)
			}
			switch lenSize {
			case 1:
				n = uint64(b[i])
			case 2:
				n = uint64(binary.BigEndian.Uint16(b[i:]))
			default:
				n = uint64(binary.BigEndian.Uint32(b[i:]))
			}
			i += lenSize
		}

		left := uint64(len(b) - i)
		switch kind {
		case kindFixed, kindBytes:
			if n > left {
				return malformed(start, "code %#x needs %d bytes, %d left", c, n, left)
			}
			i += int(n)
		case kindExt:
			// One type byte, then the payload.
			if n >= left {
				return malformed(start, "extension of %d bytes, %d left", n, left)
			}
			p := i + 1
			// Read as a map code, a 1-byte payload that is a fixmap or nil
			// leaves the decoder on the next checked value; map16 and map32
			// would take their count from the bytes after it.
			if n > 1 || n == 1 && (b[p] == 0xde || b[p] == 0xdf) {
				v.guard = append(v.guard, p)
			}
			i = p + int(n)
		case kindArray, kindMap:
			if kind == kindMap {
				if n > left/2 {
					return malformed(start, "map of %d entries, %d bytes left", n, left)
				}
				n *= 2
			} else if n > left {
				return malformed(start, "array of %d elements, %d bytes left", n, left)
			}
			if n == 0 {
				continue
			}
			if len(v.pending) > maxMsgpackDepth {
				return malformed(start, "nesting deeper than %d", maxMsgpackDepth)
			}
			v.pending = append(v.pending, n)
		}
	}
}

// malformed returns an error wrapping ErrMalformed that names the offset.
func malformed(off int, format string, args ...any) error {
	return fmt.Errorf("%w at offset %d: %s", ErrMalformed, off, fmt.Sprintf(format, args...))
}
