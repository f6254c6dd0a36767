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
	out := envelope.Append((*buf)[:0], h)
	if h.Tagged {
		out = envelope.AppendTags(out, ti.stamp, ti.tags)
	}
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
	zbuf := m.getBuf()
	h.Compressor, h.RawLen = m.compressor.ID(), len(payload)
	z := envelope.Append((*zbuf)[:0], h)
	if h.Tagged {
		z = envelope.AppendTags(z, ti.stamp, ti.tags)
	}
	z, ok, err := m.compressor.Compress(z, payload)
	*zbuf = z
	if err != nil || !ok {
		// Incompressible (or a compressor fault): store the payload as it is.
		m.putBuf(zbuf)
		return buf, nil
	}
	m.putBuf(buf)
	return zbuf, nil
}

// encodeNegative returns the envelope of a cached "not found".
func (m *Manager) encodeNegative(cd codec.Codec, h envelope.Header, ti tagInfo) *[]byte {
	h.Codec, h.Negative, h.Tagged = cd.ID(), true, len(ti.tags) > 0
	buf := m.getBuf()
	out := envelope.Append((*buf)[:0], h)
	if h.Tagged {
		out = envelope.AppendTags(out, ti.stamp, ti.tags)
	}
	*buf = out
	return buf
}

// decode parses b and, unless it is a negative entry, decodes its payload
// into v, whose type has fingerprint shape. preferred is the cache's codec,
// used when the envelope names it even if the Manager does not know its ID.
// b is only read. An entry written for another shape is errOtherShape.
func (m *Manager) decode(b []byte, preferred codec.Codec, shape uint32, v any) (envelope.Header, tagInfo, error) {
	var ti tagInfo
	h, payload, err := envelope.Parse(b, m.maxValue)
	if err != nil {
		return h, ti, err
	}
	if !h.Negative && h.Shape != shape {
		return h, ti, errOtherShape
	}
	if h.Tagged {
		if ti.stamp, ti.tags, payload, err = envelope.ParseTags(payload); err != nil {
			return h, ti, err
		}
	}
	if h.Negative {
		if len(payload) != 0 {
			return h, ti, fmt.Errorf("%w: negative entry with payload", envelope.ErrCorrupt)
		}
		return h, ti, nil
	}
	cd := m.codecs[h.Codec]
	if h.Codec == preferred.ID() {
		cd = preferred
	}
	if cd == nil {
		return h, ti, fmt.Errorf("%w: unknown codec %d", envelope.ErrCorrupt, h.Codec)
	}
	if h.Compressor != 0 {
		cp := m.compressors[h.Compressor]
		if cp == nil {
			return h, ti, fmt.Errorf("%w: unknown compressor %d", envelope.ErrCorrupt, h.Compressor)
		}
		buf := m.getBuf()
		defer m.putBuf(buf)
		out, err := cp.Decompress((*buf)[:0], payload, h.RawLen)
		*buf = out
		if err != nil {
			return h, ti, fmt.Errorf("decompress with %s: %w", cp.Name(), err)
		}
		payload = out
	}
	if err := cd.Unmarshal(payload, v); err != nil {
		return h, ti, fmt.Errorf("decode with %s: %w", cd.Name(), err)
	}
	return h, ti, nil
}
