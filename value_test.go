package cachemgr

import (
	"reflect"
	"testing"
	"time"

	"github.com/cachemgr/cachemgr/codec"
	"github.com/cachemgr/cachemgr/compress"
	"github.com/cachemgr/cachemgr/internal/envelope"
	"github.com/redis/go-redis/v9"
)

type fuzzValue struct {
	ID    int
	Name  string
	Tags  []string
	Attrs map[string]any
	When  time.Time
	Next  *fuzzValue
}

// FuzzDecode feeds arbitrary stored bytes through the whole read path
// (envelope, decompression, codec) into a typed value: it must never panic,
// and what it accepts must encode again.
func FuzzDecode(f *testing.F) {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer rdb.Close()
	m, err := New(rdb, WithMaxValueSize(1<<20))
	if err != nil {
		f.Fatal(err)
	}
	defer m.Close()
	v := fuzzValue{ID: 1, Name: "seed", Tags: []string{"a"}, Attrs: map[string]any{"k": 1.5}, When: time.Unix(1, 0)}
	shape := shapeOf(reflect.TypeFor[fuzzValue]())
	for _, cd := range []codec.Codec{codec.Msgpack(), codec.JSON()} {
		buf, err := m.encode(cd, &v, envelope.Header{FreshUntil: 1, Shape: shape}, tagInfo{})
		if err != nil {
			f.Fatal(err)
		}
		f.Add(append([]byte(nil), *buf...))
	}
	big := v
	big.Name = string(make([]byte, 4096))
	buf, _ := m.encode(codec.Msgpack(), &big, envelope.Header{Shape: shape}, tagInfo{stamp: 5, tags: []string{"t1", "t2"}})
	f.Add(append([]byte(nil), *buf...)) // lz4-compressed
	f.Add(append(envelope.Append(nil, envelope.Header{Codec: codec.MsgpackID, Shape: shape}), 0xdd, 0xff, 0xff, 0xff, 0xff))
	f.Add(append(envelope.Append(nil, envelope.Header{Codec: codec.MsgpackID, Compressor: compress.LZ4ID, RawLen: 1 << 20, Shape: shape}), 0xf0, 0xff, 0xff))
	f.Add(append(envelope.Append(nil, envelope.Header{Codec: codec.JSONID, Shape: shape}), `{"Tags":[[[[[[`...))
	f.Fuzz(func(t *testing.T, b []byte) {
		var got fuzzValue
		h, ti, err := m.decode(b, m.codec, shape, &got)
		if err != nil || h.Negative {
			return
		}
		if _, err := m.encode(m.codecs[h.Codec], &got, h, ti); err != nil {
			t.Fatalf("decoded value does not encode again: %v", err)
		}
	})
}
