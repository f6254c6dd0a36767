package cachemgr

import (
	"fmt"

	"github.com/cachemgr/cachemgr/codec"
	"github.com/cachemgr/cachemgr/internal/envelope"
)

// getBuf returns an empty encode or decompression buffer from the
// transport's pool.
func (m *Manager) getBuf() *[]byte { return m.tr.Buffers().Get() }

// putBuf returns a buffer that no command carried (see releaseBuf for one
// that a command did).
func (m *Manager) putBuf(b *[]byte) { m.tr.Buffers().Put(b) }

// tagInfo is what the tag section of an envelope carries.
type tagInfo struct {
	stamp int64 // Unix µs; valid while every tag's last invalidation is older
	tags  []string
}

// encode returns the envelope for v in a pooled buffer, which the caller
// returns with putBuf once Redis has the bytes. h carries the freshness and
// load time; encode fills in codec, compression, tags and lengths.
func (m *Manager) encode(cd codec.Codec, v any, h envelope.Header, ti tagInfo) (*[]byte, error) {
	h.Codec, h.Tagged = cd.ID(), len(ti.tags) > 0
	buf := m.getBuf()
	out := appendHeader((*buf)[:0], h, ti)
	off := len(out)
	out, err := cd.Append(out, v)
	*buf = out
	if err != nil {
		m.putBuf(buf)
		return nil, fmt.Errorf("encode with %s: %w", cd.Name(), err)
	}
	payload := out[off:]
	if len(payload) > m.maxValue {
		m.putBuf(buf)
		return nil, fmt.Errorf("%w: %d bytes encoded, limit %d", ErrTooLarge, len(payload), m.maxValue)
	}
	if m.compressor == nil || len(payload) < m.threshold {
		return buf, nil
	}
	return m.compressed(buf, h, ti, payload), nil
}

// compressed returns the envelope of payload compressed, in a pooled
// buffer, and returns buf, the envelope as encoded, to the pool; or buf
// itself when the payload does not compress.
func (m *Manager) compressed(buf *[]byte, h envelope.Header, ti tagInfo, payload []byte) *[]byte {
	zbuf := m.getBuf()
	h.Compressor, h.RawLen = m.compressor.ID(), len(payload)
	z, ok, err := m.compressor.Compress(appendHeader((*zbuf)[:0], h, ti), payload)
	*zbuf = z
	if err != nil || !ok {
		// Incompressible (or a compressor fault): store the payload as it is.
		m.putBuf(zbuf)
		return buf
	}
	m.putBuf(buf)
	return zbuf
}

// appendHeader appends envelope header h to dst and, for a tagged entry,
// the tag section of ti.
func appendHeader(dst []byte, h envelope.Header, ti tagInfo) []byte {
	dst = envelope.Append(dst, h)
	if h.Tagged {
		dst = envelope.AppendTags(dst, ti.stamp, ti.tags)
	}
	return dst
}

// encodeNegative returns the envelope of a cached "not found".
func (m *Manager) encodeNegative(cd codec.Codec, h envelope.Header, ti tagInfo) *[]byte {
	h.Codec, h.Negative, h.Tagged = cd.ID(), true, len(ti.tags) > 0
	buf := m.getBuf()
	*buf = appendHeader((*buf)[:0], h, ti)
	return buf
}

// decode parses b and, unless it is a negative entry, decodes its payload
// into v, whose type has fingerprint shape. preferred is the cache's codec,
// used when the envelope names it even if the Manager does not know its ID.
// b is only read. An entry written for another shape is errOtherShape.
func (m *Manager) decode(b []byte, preferred codec.Codec, shape uint32, v any) (envelope.Header, tagInfo, error) {
	h, ti, payload, err := m.parse(b, shape)
	if err != nil || h.Negative {
		return h, ti, err
	}
	cd := m.codecFor(h.Codec, preferred)
	if cd == nil {
		return h, ti, fmt.Errorf("%w: unknown codec %d", envelope.ErrCorrupt, h.Codec)
	}
	if h.Compressor != 0 {
		return h, ti, m.unmarshalCompressed(cd, h, payload, v)
	}
	return h, ti, unmarshal(cd, payload, v)
}

// parse splits b into its header, tags and payload, and checks the
// header against the shape of the type to decode into (a negative entry
// has none, and no payload either).
func (m *Manager) parse(b []byte, shape uint32) (envelope.Header, tagInfo, []byte, error) {
	var ti tagInfo
	h, payload, err := envelope.Parse(b, m.maxValue)
	if err != nil {
		return h, ti, nil, err
	}
	if !h.Negative && h.Shape != shape {
		return h, ti, nil, errOtherShape
	}
	if h.Tagged {
		if ti.stamp, ti.tags, payload, err = envelope.ParseTags(payload); err != nil {
			return h, ti, nil, err
		}
	}
	if h.Negative && len(payload) != 0 {
		return h, ti, nil, fmt.Errorf("%w: negative entry with payload", envelope.ErrCorrupt)
	}
	return h, ti, payload, nil
}

// codecFor returns the codec whose ID an envelope names (nil: unknown):
// preferred, the cache's, when the ID is its own, even if the Manager does
// not know it.
func (m *Manager) codecFor(id byte, preferred codec.Codec) codec.Codec {
	if id == preferred.ID() {
		return preferred
	}
	return m.codecs[id]
}

// unmarshalCompressed decompresses payload, as header h says, into a
// pooled buffer and decodes it with cd into v.
func (m *Manager) unmarshalCompressed(cd codec.Codec, h envelope.Header, payload []byte, v any) error {
	cp := m.compressors[h.Compressor]
	if cp == nil {
		return fmt.Errorf("%w: unknown compressor %d", envelope.ErrCorrupt, h.Compressor)
	}
	buf := m.getBuf()
	defer m.putBuf(buf)
	out, err := cp.Decompress((*buf)[:0], payload, h.RawLen)
	*buf = out
	if err != nil {
		return fmt.Errorf("decompress with %s: %w", cp.Name(), err)
	}
	return unmarshal(cd, out, v)
}

// unmarshal decodes payload with cd into v.
func unmarshal(cd codec.Codec, payload []byte, v any) error {
	if err := cd.Unmarshal(payload, v); err != nil {
		return fmt.Errorf("decode with %s: %w", cd.Name(), err)
	}
	return nil
}
