package codec_test

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"runtime"
	"testing"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/cachemgr/cachemgr/codec"
)

type withStrings struct {
	S []string
}

// targets are the decode targets every forged input is tried against.
var targets = []struct {
	name string
	new  func() any
}{
	{"any", func() any { return new(any) }},
	{"[]any", func() any { return new([]any) }},
	{"map[string]any", func() any { return new(map[string]any) }},
	{"[]map[string]any", func() any { return new([]map[string]any) }},
	{"map[string]string", func() any { return new(map[string]string) }},
	{"[]int64", func() any { return new([]int64) }},
	{"withStrings", func() any { return new(withStrings) }},
	{"record", func() any { return new(record) }},
	{"RawMessage", func() any { return new(msgpack.RawMessage) }},
}

// allocated returns how many bytes f allocates.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

func repeat(unit []byte, n int, tail ...byte) []byte {
	return append(bytes.Repeat(unit, n), tail...)
}

func mustMsgpack(t testing.TB, v any) []byte {
	t.Helper()
	b, err := codec.Msgpack().Append(nil, v)
	if err != nil {
		t.Fatalf("Append(nil, %T) error: %v", v, err)
	}
	return b
}

// forgedMsgpack are inputs that the validator must reject.
func forgedMsgpack(t testing.TB) []struct {
	name string
	data []byte
} {
	valid := mustMsgpack(t, sampleRecord())
	return []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"array32 of 4G", []byte{0xdd, 0xff, 0xff, 0xff, 0xff}},
		{"array32 of 4Mi", []byte{0xdd, 0x00, 0x40, 0x00, 0x00}},
		{"array16 longer than input", []byte{0xdc, 0x00, 0x10, 0xc0}},
		{"fixarray longer than input", []byte{0x9f, 0xc0}},
		{"map32 of 4G", []byte{0xdf, 0xff, 0xff, 0xff, 0xff}},
		{"map16 with one byte per entry", append([]byte{0xde, 0x00, 0x08}, bytes.Repeat([]byte{0xc0}, 8)...)},
		{"map missing value", []byte{0x81, 0xa0}},
		{"str32 of 4G", []byte{0xdb, 0xff, 0xff, 0xff, 0xff}},
		{"str8 truncated", []byte{0xd9, 0x05, 'a'}},
		{"fixstr truncated", []byte{0xa5, 'a'}},
		{"bin32 of 4G", []byte{0xc6, 0xff, 0xff, 0xff, 0xff}},
		{"ext32 of 4G", []byte{0xc9, 0xff, 0xff, 0xff, 0xff, 0x01}},
		{"fixext16 truncated", []byte{0xd8, 0x01, 0x00}},
		{"ext8 without type", []byte{0xc7, 0x00}},
		{"field holding array32 of 4G", []byte{0x81, 0xa1, 'S', 0xdd, 0xff, 0xff, 0xff, 0xff}},
		{"length truncated", []byte{0xdd, 0x00, 0x00}},
		{"int64 truncated", []byte{0xd3, 0x00}},
		{"valid record truncated", valid[:len(valid)-1]},
		{"valid record with trailing byte", append(bytes.Clone(valid), 0xc0)},
		{"two values", []byte{0xc0, 0xc0}},
		{"reserved 0xc1", []byte{0xc1}},
		{"reserved 0xc1 in array", []byte{0x92, 0xc0, 0xc1}},
		{"100000 nested fixarrays", repeat([]byte{0x91}, 100000, 0xc0)},
		{"100000 nested fixmaps", repeat([]byte{0x81, 0xa0}, 100000, 0xc0)},
		{"513 nested arrays", repeat([]byte{0x91}, 513, 0xc0)},
		{"nested array32s each as long as the rest", nestedArray32s(64, 800)},
	}
}

// nestedArray32s returns depth array32 headers, each declaring as many
// elements as there are bytes after it, then filler nils. Each header fits
// the input on its own; together they declare depth times what is there, so
// a check of each header alone would let a decoder allocate that much.
func nestedArray32s(depth, filler int) []byte {
	b := make([]byte, 0, 5*depth+filler)
	for i := range depth {
		rest := 5*(depth-1-i) + filler
		b = append(b, 0xdd, byte(rest>>24), byte(rest>>16), byte(rest>>8), byte(rest))
	}
	return append(b, bytes.Repeat([]byte{0xc0}, filler)...)
}

func TestMsgpackMalformed(t *testing.T) {
	for _, tt := range forgedMsgpack(t) {
		for _, target := range targets {
			t.Run(tt.name+"/"+target.name, func(t *testing.T) {
				v := target.new()
				var err error
				n := allocated(func() { err = codec.Msgpack().Unmarshal(tt.data, v) })
				if !errors.Is(err, codec.ErrMalformed) {
					t.Errorf("Unmarshal(%.16x, %T) error = %v, want %v", tt.data, v, err, codec.ErrMalformed)
				}
				if n > 64<<10 {
					t.Errorf("Unmarshal(%.16x, %T) allocated %d bytes, want at most 64 KiB", tt.data, v, n)
				}
			})
		}
	}
}

func TestMsgpackBombAllocatesLittle(t *testing.T) {
	bomb := []byte{0xdd, 0xff, 0xff, 0xff, 0xff}
	tests := []struct {
		name string
		v    any
	}{
		{"[]any", new([]any)},
		{"map[string]any", new(map[string]any)},
		{"struct with []string", new(withStrings)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var err error
			n := allocated(func() { err = codec.Msgpack().Unmarshal(bomb, tt.v) })
			if !errors.Is(err, codec.ErrMalformed) {
				t.Errorf("Unmarshal(%x, %T) error = %v, want %v", bomb, tt.v, err, codec.ErrMalformed)
			}
			if n >= 1<<20 {
				t.Errorf("Unmarshal(%x, %T) allocated %d bytes, want < 1 MiB", bomb, tt.v, n)
			}
		})
	}
}

// TestMsgpackExtPayloadNotParsed covers inputs that pass the validator but
// put an extension where a map is expected. msgpack's DecodeMapLen skips the
// extension header and parses the unchecked payload as a map; unguarded, the
// first input makes the decoder allocate 64 GiB.
func TestMsgpackExtPayloadNotParsed(t *testing.T) {
	tests := []struct {
		name string
		data []byte
		v    any
	}{
		{
			"fixext4 hiding array32 in []map[string]any",
			[]byte{0x95, 0xd6, 0xff, 0x81, 0xa0, 0xdd, 0xff, 0xff, 0xff, 0xff, 0xc0},
			new([]map[string]any),
		},
		{
			"fixext4 hiding map32 in []map[string]string",
			[]byte{0x92, 0xd6, 0xff, 0xdf, 0x00, 0x0f, 0xff, 0xff},
			new([]map[string]string),
		},
		{
			"ext8 hiding map32 in map[string]any",
			[]byte{0xc7, 0x05, 0x01, 0xdf, 0xff, 0xff, 0xff, 0xff},
			new(map[string]any),
		},
		{
			"fixext1 map16 code reading the next value's bytes",
			[]byte{0x92, 0xd4, 0x01, 0xde, 0xcd, 0xff, 0xff},
			new([]map[string]any),
		},
		{
			"timestamp in a map field",
			mustMsgpack(t, map[string]any{"S": sampleRecord().At}),
			new(struct{ S map[string]int }),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var err error
			n := allocated(func() { err = codec.Msgpack().Unmarshal(tt.data, tt.v) })
			if !errors.Is(err, codec.ErrMalformed) {
				t.Errorf("Unmarshal(%x, %T) error = %v, want %v", tt.data, tt.v, err, codec.ErrMalformed)
			}
			if n > 64<<10 {
				t.Errorf("Unmarshal(%x, %T) allocated %d bytes, want at most 64 KiB", tt.data, tt.v, n)
			}
			// The same bytes are fine where the extension is expected.
			var raw msgpack.RawMessage
			if err := codec.Msgpack().Unmarshal(tt.data, &raw); err != nil {
				t.Errorf("Unmarshal(%x, *RawMessage) error: %v", tt.data, err)
			}
		})
	}
}

// TestMsgpackValid checks that the validator accepts every MessagePack
// code, at the edges of its length fields.
func TestMsgpackValid(t *testing.T) {
	many := func(n int, unit ...byte) []byte { return bytes.Repeat(unit, n) }
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	tests := []struct {
		name string
		data []byte
	}{
		{"positive fixint", []byte{0x7f}},
		{"negative fixint", []byte{0xe0}},
		{"nil false true", []byte{0x93, 0xc0, 0xc2, 0xc3}},
		{"empty fixmap", []byte{0x80}},
		{"empty fixarray", []byte{0x90}},
		{"empty fixstr", []byte{0xa0}},
		{"fixstr 31", cat([]byte{0xbf}, many(31, 'a'))},
		{"fixarray 15", cat([]byte{0x9f}, many(15, 0x01))},
		{"fixmap 15", cat([]byte{0x8f}, many(15, 0xa0, 0xc0))},
		{"str8", cat([]byte{0xd9, 0xff}, many(255, 'a'))},
		{"str16", cat([]byte{0xda, 0x01, 0x00}, many(256, 'a'))},
		{"str32", cat([]byte{0xdb, 0x00, 0x01, 0x00, 0x00}, many(1<<16, 'a'))},
		{"bin8 empty", []byte{0xc4, 0x00}},
		{"bin16", cat([]byte{0xc5, 0x00, 0x03}, many(3, 0xc1))},
		{"bin32", cat([]byte{0xc6, 0x00, 0x00, 0x00, 0x02}, many(2, 0xc1))},
		{"numbers", []byte{
			0x9a,
			0xcc, 0xff, 0xcd, 0xff, 0xff, 0xce, 0xff, 0xff, 0xff, 0xff,
			0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
			0xd0, 0x80, 0xd1, 0x80, 0x00, 0xd2, 0x80, 0x00, 0x00, 0x00,
			0xd3, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
			0xca, 0x3f, 0x80, 0x00, 0x00,
			0xcb, 0x3f, 0xf0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
		}},
		{"fixext1 to fixext16", cat(
			[]byte{0x95},
			[]byte{0xd4, 0x01, 0xc1},
			[]byte{0xd5, 0x01}, many(2, 0xc1),
			[]byte{0xd6, 0x01}, many(4, 0xc1),
			[]byte{0xd7, 0x01}, many(8, 0xc1),
			[]byte{0xd8, 0x01}, many(16, 0xc1),
		)},
		{"ext8 empty", []byte{0xc7, 0x00, 0x05}},
		{"ext8", cat([]byte{0xc7, 0x03, 0x05}, many(3, 0xdd))},
		{"ext16", cat([]byte{0xc8, 0x00, 0x03, 0x05}, many(3, 0xdd))},
		{"ext32", cat([]byte{0xc9, 0x00, 0x00, 0x00, 0x03, 0x05}, many(3, 0xdd))},
		{"array16", cat([]byte{0xdc, 0x00, 0x10}, many(16, 0xc0))},
		{"array32", cat([]byte{0xdd, 0x00, 0x01, 0x00, 0x00}, many(1<<16, 0xc0))},
		{"array32 empty", []byte{0xdd, 0x00, 0x00, 0x00, 0x00}},
		{"map16", cat([]byte{0xde, 0x00, 0x10}, many(16, 0xa0, 0xc0))},
		{"map32", cat([]byte{0xdf, 0x00, 0x00, 0x00, 0x01}, []byte{0xa1, 'k', 0x92, 0xc0, 0xc0})},
		{"512 nested arrays", repeat([]byte{0x91}, 512, 0xc0)},
		{"512 nested maps", repeat([]byte{0x81, 0xa0}, 512, 0xc0)},
		{"nesting returns to the top", cat(repeat([]byte{0x92}, 511, 0x90), many(511, 0x90))},
		{"record", mustMsgpack(t, sampleRecord())},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var raw msgpack.RawMessage
			if err := codec.Msgpack().Unmarshal(tt.data, &raw); err != nil {
				t.Fatalf("Unmarshal(%.16x, *RawMessage) error: %v", tt.data, err)
			}
			if !bytes.Equal(raw, tt.data) {
				t.Errorf("Unmarshal(%.16x, *RawMessage) = %.16x, want the input back", tt.data, []byte(raw))
			}
		})
	}
}

func TestMsgpackMatchesMarshal(t *testing.T) {
	// Maps have one key each: neither encoder sorts keys.
	r := sampleRecord()
	r.Counts = map[string]int{"a": 1}
	r.Nested = map[string][]string{"k": {"v"}}
	tests := []struct {
		name string
		v    any
	}{
		{"record", r},
		{"map", map[string]any{"a": 1}},
		{"nil", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want, err := msgpack.Marshal(tt.v)
			if err != nil {
				t.Fatalf("msgpack.Marshal(%T) error: %v", tt.v, err)
			}
			if got := mustMsgpack(t, tt.v); !bytes.Equal(got, want) {
				t.Errorf("Append(nil, %T) = %x, want %x", tt.v, got, want)
			}
		})
	}
}

type tagged struct {
	Plain    string
	JSONOnly string `json:"json_only"`
	Both     string `json:"json_name" msgpack:"mp_name"`
	Omitted  string `json:"omitted,omitempty"`
	Skipped  string `json:"-"`
}

func TestMsgpackJSONTagFallback(t *testing.T) {
	in := tagged{Plain: "p", JSONOnly: "j", Both: "b", Skipped: "s"}
	data := mustMsgpack(t, in)

	var m map[string]any
	if err := codec.Msgpack().Unmarshal(data, &m); err != nil {
		t.Fatalf("Unmarshal(%x, *map[string]any) error: %v", data, err)
	}
	want := map[string]any{"Plain": "p", "json_only": "j", "mp_name": "b"}
	if !reflect.DeepEqual(m, want) {
		t.Errorf("Unmarshal(Append(%+v)) = %v, want %v", in, m, want)
	}

	var got tagged
	if err := codec.Msgpack().Unmarshal(data, &got); err != nil {
		t.Fatalf("Unmarshal(%x, *tagged) error: %v", data, err)
	}
	in.Skipped = ""
	if got != in {
		t.Errorf("Unmarshal(Append(%+v)) = %+v, want %+v", in, got, in)
	}
}

type interned struct {
	Names []internedName
}

type internedName struct {
	Name string `msgpack:",intern"`
}

// internedNames returns each of n distinct names twice, so that the second
// copies are written as dictionary indices.
func internedNames(n int) interned {
	var v interned
	for range 2 {
		for i := range n {
			v.Names = append(v.Names, internedName{fmt.Sprintf("name-%d", i)})
		}
	}
	return v
}

func TestMsgpackIntern(t *testing.T) {
	in := internedNames(222)
	data := mustMsgpack(t, in)
	var got interned
	if err := codec.Msgpack().Unmarshal(data, &got); err != nil {
		t.Fatalf("Unmarshal(Append(222 interned names)) error: %v", err)
	}
	if !reflect.DeepEqual(got, in) {
		t.Errorf("Unmarshal(Append(222 interned names)) differs from the input")
	}
}

// TestMsgpackInternLimit pins down the one cost of guarding extension
// payloads: the intern option writes dictionary indices 222 and 223 as
// 1-byte extensions holding a map code, which Msgpack refuses.
func TestMsgpackInternLimit(t *testing.T) {
	data := mustMsgpack(t, internedNames(300))
	var got interned
	if err := codec.Msgpack().Unmarshal(data, &got); !errors.Is(err, codec.ErrMalformed) {
		t.Errorf("Unmarshal(Append(300 interned names)) error = %v, want %v", err, codec.ErrMalformed)
	}
}

// FuzzMsgpackUnmarshal checks that no input panics, that no input the
// validator accepts allocates more than a modest multiple of its size, and
// that whatever decodes into any re-encodes and decodes again.
func FuzzMsgpackUnmarshal(f *testing.F) {
	for _, tt := range forgedMsgpack(f) {
		if len(tt.data) < 4096 {
			f.Add(tt.data)
		}
	}
	for _, v := range []any{
		sampleRecord(), record{}, withStrings{S: []string{"a", ""}},
		map[string]any{"a": []any{1, "b", nil, 2.5, true}},
		[]map[string]any{{"t": sampleRecord().At}},
		[]byte{1, 2, 3}, "text", int64(-1), nil,
	} {
		f.Add(mustMsgpack(f, v))
	}
	f.Add([]byte{0x95, 0xd6, 0xff, 0x81, 0xa0, 0xdd, 0xff, 0xff, 0xff, 0xff, 0xc0})
	f.Add([]byte{0x92, 0xd4, 0x01, 0xde, 0xcd, 0xff, 0xff})
	f.Add([]byte{0x92, 0xc7, 0x00, 0x05, 0x81, 0xa0, 0xc0})

	c := codec.Msgpack()
	f.Fuzz(func(t *testing.T, data []byte) {
		limit := 1<<20 + 1024*uint64(len(data))
		for _, target := range targets {
			v := target.new()
			n := allocated(func() { _ = c.Unmarshal(data, v) })
			if n > limit {
				t.Errorf("Unmarshal(%.32x, %T) allocated %d bytes for %d input bytes, want at most %d", data, v, n, len(data), limit)
			}
		}
		var v any
		if err := c.Unmarshal(data, &v); err != nil {
			return
		}
		b, err := c.Append(nil, v)
		if err != nil {
			t.Fatalf("Append(nil, %#v) error: %v", v, err)
		}
		var again any
		if err := c.Unmarshal(b, &again); err != nil {
			t.Fatalf("Unmarshal(%x, *any) error: %v", b, err)
		}
	})
}
