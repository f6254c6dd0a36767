package cachemgr_test

// Fault tests: bad, corrupt or foreign data under a cache's keys
// (docs/reliability.md, group D).

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cachemgr/cachemgr"
	"github.com/cachemgr/cachemgr/codec"
	"github.com/cachemgr/cachemgr/compress"
	"github.com/cachemgr/cachemgr/internal/envelope"
	"github.com/cachemgr/cachemgr/internal/redistest"
)

// relOrder is another type than Product that shares some field names with
// it: what a cache of another type, or a later version of Product, sees.
type relOrder struct {
	ID    int     `json:"id"`
	Name  string  `json:"name"`
	Total float64 `json:"total"`
	Lines []int   `json:"lines"`
}

// TestReliabilityTypeConfusion (scenarios 39, 46, 54): a value of one type,
// in a valid envelope, read as another type through the same key: two
// processes whose caches of one name hold different types (a
// misconfiguration NewCache can only catch within one Manager, two
// services sharing a prefix, or a deploy that changed the type).
// The oracle: never another type's data, never a silently half-filled T;
// the entry is a counted miss, left for the process it belongs to.
func TestReliabilityTypeConfusion(t *testing.T) {
	s := redistest.Start(t)
	ctx := context.Background()
	for _, cd := range []struct {
		name string
		opt  cachemgr.Option
	}{{"msgpack", nil}, {"json", cachemgr.WithCodec(codec.JSON())}} {
		t.Run(cd.name, func(t *testing.T) {
			var opts []cachemgr.Option
			if cd.opt != nil {
				opts = append(opts, cd.opt)
			}
			m, _ := newManager(t, s, opts...)
			other, _ := newManager(t, s, opts...) // another process
			products := newCache[Product](t, m, "shared-"+cd.name)
			orders := newCache[relOrder](t, other, "shared-"+cd.name)
			if err := products.Set(ctx, "1", sampleProduct(1)); err != nil {
				t.Fatalf("Set(product) error = %v", err)
			}
			if v, err := orders.Get(ctx, "1"); !errors.Is(err, cachemgr.ErrMiss) {
				t.Errorf("Cache[relOrder].Get of a stored Product = %+v, %v; want ErrMiss, not a half-filled relOrder", v, err)
			}
			if st := other.Stats(); st.OtherShape != 1 {
				t.Errorf("Stats().OtherShape of the reader = %d, want 1", st.OtherShape)
			}
			v, err := orders.Fetch(ctx, "1", func(context.Context) (relOrder, error) { return relOrder{ID: 1, Name: "order"}, nil })
			if err != nil || v.Name != "order" {
				t.Errorf("Cache[relOrder].Fetch over a stored Product = %+v, %v; want the loader's order", v, err)
			}
			if p, err := products.Get(ctx, "1"); err != nil || p.Name != sampleProduct(1).Name {
				t.Errorf("Cache[Product].Get after the other shape read it = %+v, %v; want the Product, untouched", p, err)
			}
		})
	}
}

// TestReliabilityForeignValues (scenarios 38, 39, 45, 46, 48): bytes the
// Manager did not write in the form it expects, put there by hand: every
// one is a counted miss that Fetch replaces with one load, never a panic
// or a wrong value.
func TestReliabilityForeignValues(t *testing.T) {
	s := redistest.Start(t)
	ctx := context.Background()
	m, rdb := newManager(t, s)
	c := newCache[Product](t, m, "foreign")
	valid := func(cd codec.Codec, v any) []byte {
		b, err := cd.Append(envelope.Append(nil, envelope.Header{Codec: cd.ID(), FreshUntil: time.Now().Add(time.Hour).UnixMilli(), Shape: cachemgr.Shape[Product]()}), v)
		if err != nil {
			t.Fatalf("encode %T: %v", v, err)
		}
		return b
	}
	msgpackOf := func(v any) []byte {
		b, err := codec.Msgpack().Append(nil, v)
		if err != nil {
			t.Fatalf("msgpack %T: %v", v, err)
		}
		return b
	}
	tests := []struct {
		name  string
		value []byte
	}{
		{"msgpack without envelope", msgpackOf(sampleProduct(1))},
		{"JSON text by hand", []byte(`{"id":1,"name":"by redis-cli"}`)},
		{"envelope naming raw codec for a struct", valid(codec.Raw(), []byte("raw bytes"))},
		{"envelope naming JSON, payload msgpack", append(envelope.Append(nil, envelope.Header{Codec: codec.JSONID, Shape: cachemgr.Shape[Product]()}), msgpackOf(sampleProduct(1))...)},
		{"envelope naming msgpack, payload JSON", append(envelope.Append(nil, envelope.Header{Codec: codec.MsgpackID, Shape: cachemgr.Shape[Product]()}), `{"id":1}`...)},
		{"msgpack of a field of another kind", valid(codec.Msgpack(), map[string]any{"id": "not a number", "name": 7})},
		{"JSON of a field of another kind", valid(codec.JSON(), map[string]any{"id": "not a number"})},
		{"negative entry with a payload", append(envelope.Append(nil, envelope.Header{Codec: codec.MsgpackID, Negative: true}), 1, 2, 3)},
		{"unknown compressor", append(envelope.Append(nil, envelope.Header{Codec: codec.MsgpackID, Compressor: 9, RawLen: 4, Shape: cachemgr.Shape[Product]()}), 1, 2, 3, 4)},
		{"future format version", func() []byte {
			b := valid(codec.Msgpack(), sampleProduct(1))
			b[1] = 3 << 4
			return b
		}()},
		{"msgpack with trailing bytes", append(valid(codec.Msgpack(), sampleProduct(1)), 0xc0)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := "test:foreign:{=" + tt.name + "}"
			if err := rdb.Set(ctx, key, tt.value, time.Minute).Err(); err != nil {
				t.Fatalf("raw SET error = %v", err)
			}
			before := m.Stats()
			if v, err := c.Get(ctx, tt.name); !errors.Is(err, cachemgr.ErrMiss) {
				t.Errorf("Get() = %+v, %v; want ErrMiss", v, err)
			}
			if got := m.Stats().DecodeErrors - before.DecodeErrors; got != 1 {
				t.Errorf("DecodeErrors grew by %d, want 1", got)
			}
			if err := rdb.Set(ctx, key, tt.value, time.Minute).Err(); err != nil {
				t.Fatalf("raw SET error = %v", err)
			}
			loads := 0
			v, err := c.Fetch(ctx, tt.name, func(context.Context) (Product, error) { loads++; return sampleProduct(2), nil })
			if err != nil || v.ID != 2 || loads != 1 {
				t.Errorf("Fetch() over foreign bytes = %d, %v with %d loads; want product 2 from one load", v.ID, err, loads)
			}
			if v, err := c.Get(ctx, tt.name); err != nil || v.ID != 2 {
				t.Errorf("Get() after Fetch = %d, %v; want the reloaded value", v.ID, err)
			}
		})
	}
	t.Run("JSON written, msgpack default reads it", func(t *testing.T) {
		old, _ := newManager(t, s, cachemgr.WithCodec(codec.JSON()))
		if err := newCache[Product](t, old, "foreign").Set(ctx, "codec", sampleProduct(5)); err != nil {
			t.Fatalf("Set() error = %v", err)
		}
		if v, err := c.Get(ctx, "codec"); err != nil || !equalProduct(v, sampleProduct(5)) {
			t.Errorf("Get() = %+v, %v; want the JSON-written value", v, err)
		}
	})
	t.Run("msgpack written, JSON Manager reads it", func(t *testing.T) {
		jm, _ := newManager(t, s, cachemgr.WithCodec(codec.JSON()))
		if err := c.Set(ctx, "codec2", sampleProduct(6)); err != nil {
			t.Fatalf("Set() error = %v", err)
		}
		if v, err := newCache[Product](t, jm, "foreign").Get(ctx, "codec2"); err != nil || !equalProduct(v, sampleProduct(6)) {
			t.Errorf("Get() = %+v, %v; want the msgpack-written value", v, err)
		}
	})
}

// TestReliabilityForeignCompanionKeys (scenario 48): a key of the wrong
// RESP type where the Manager keeps a version or a tag stamp. Reads miss,
// Fetch answers from the loader, nothing panics, and writes report the
// error rather than succeed in a way nobody can read.
func TestReliabilityForeignCompanionKeys(t *testing.T) {
	s := redistest.Start(t)
	ctx := context.Background()
	m, rdb := newManager(t, s)
	load := func(context.Context) (string, error) { return "loaded", nil }

	vc := newCache[string](t, m, "wtv", cachemgr.WithVersioned(true))
	rdb.HSet(ctx, "test:wtv:~v", "f", "v")
	if v, err := vc.Get(ctx, "k"); !errors.Is(err, cachemgr.ErrMiss) {
		t.Errorf("Get() with a hash as version key = %q, %v; want ErrMiss", v, err)
	}
	if v, err := vc.Fetch(ctx, "k", load); err != nil || v != "loaded" {
		t.Errorf("Fetch() with a hash as version key = %q, %v; want the loader's value", v, err)
	}
	if err := vc.Bump(ctx); err != nil {
		t.Errorf("Bump() over a hash version key = %v, want it replaced", err)
	}
	if err := vc.Set(ctx, "k", "after bump"); err != nil {
		t.Errorf("Set() after Bump = %v", err)
	}
	if v, err := vc.Get(ctx, "k"); err != nil || v != "after bump" {
		t.Errorf("Get() after Bump = %q, %v", v, err)
	}

	tc := newCache[string](t, m, "wtt")
	rdb.HSet(ctx, "test:~tag:{tbad}", "f", "v")
	_ = tc.Set(ctx, "k", "v", cachemgr.Tags("bad")) // see TestReliabilityTagWriteFails
	if v, err := tc.Get(ctx, "k"); !errors.Is(err, cachemgr.ErrMiss) {
		t.Errorf("Get() of an entry whose tag stamp is a hash = %q, %v; want ErrMiss", v, err)
	}
	if v, err := tc.Fetch(ctx, "f", load, cachemgr.Tags("bad")); err != nil || v != "loaded" {
		t.Errorf("Fetch() with a hash as tag stamp = %q, %v; want the loader's value", v, err)
	}
	if err := m.InvalidateTags(ctx, "bad"); err == nil {
		t.Errorf("InvalidateTags() over a hash stamp = nil, want WRONGTYPE")
	}
}

// TestReliabilityForgedLengths (scenarios 40, 43): a few bytes behind a
// valid envelope that claim huge msgpack arrays, maps, strings or a huge
// decompressed size. Each is a miss, and decoding allocates a few MiB at
// most.
func TestReliabilityForgedLengths(t *testing.T) {
	s := redistest.Start(t)
	ctx := context.Background()
	m, rdb := newManager(t, s)
	env := envelope.Append(nil, envelope.Header{Codec: codec.MsgpackID})
	zeros := make([]byte, 64<<10)
	block, ok, err := compress.LZ4().Compress(nil, zeros)
	if err != nil || !ok {
		t.Fatalf("lz4 Compress(64 KiB of zeros) = %v, %v", ok, err)
	}
	lz4With := func(rawLen int, payload []byte) []byte {
		return append(envelope.Append(nil, envelope.Header{Codec: codec.MsgpackID, Compressor: compress.LZ4ID, RawLen: rawLen}), payload...)
	}
	anyCache := newCache[any](t, m, "forged-any")
	sliceCache := newCache[[]any](t, m, "forged-slice")
	mapCache := newCache[map[string]any](t, m, "forged-map")
	intsCache := newCache[[]int64](t, m, "forged-ints")
	strCache := newCache[string](t, m, "forged-str")
	get := map[string]func() error{
		"any":            func() error { _, err := anyCache.Get(ctx, "k"); return err },
		"[]any":          func() error { _, err := sliceCache.Get(ctx, "k"); return err },
		"map[string]any": func() error { _, err := mapCache.Get(ctx, "k"); return err },
		"[]int64":        func() error { _, err := intsCache.Get(ctx, "k"); return err },
		"string":         func() error { _, err := strCache.Get(ctx, "k"); return err },
	}
	key := map[string]string{"any": "forged-any", "[]any": "forged-slice", "map[string]any": "forged-map", "[]int64": "forged-ints", "string": "forged-str"}
	// The forged bytes must reach each type's decoder: they carry its shape.
	shape := map[string]uint32{"any": cachemgr.Shape[any](), "[]any": cachemgr.Shape[[]any](), "map[string]any": cachemgr.Shape[map[string]any](),
		"[]int64": cachemgr.Shape[[]int64](), "string": cachemgr.Shape[string]()}
	tests := []struct {
		name  string
		value []byte
		into  []string
	}{
		{"array32 of 4Mi", append(slices.Clone(env), 0xdd, 0x00, 0x40, 0x00, 0x00), []string{"any", "[]any", "[]int64"}},
		{"array32 of 64Mi", append(slices.Clone(env), 0xdd, 0x04, 0x00, 0x00, 0x00), []string{"any", "[]any", "[]int64"}},
		{"array32 of 4Gi", append(slices.Clone(env), 0xdd, 0xff, 0xff, 0xff, 0xff), []string{"any", "[]any", "[]int64"}},
		{"map32 of 4Mi", append(slices.Clone(env), 0xdf, 0x00, 0x40, 0x00, 0x00), []string{"any", "map[string]any"}},
		{"nested arrays", append(slices.Clone(env), 0x91, 0x91, 0xdd, 0x00, 0x40, 0x00, 0x00), []string{"any", "[]any"}},
		{"str32 of 1GiB", append(slices.Clone(env), 0xdb, 0x40, 0x00, 0x00, 0x00, 'x'), []string{"any", "string"}},
		{"bin32 of 1GiB", append(slices.Clone(env), 0xc6, 0x40, 0x00, 0x00, 0x00, 'x'), []string{"any", "string"}},
		{"ext32 of 1GiB", append(slices.Clone(env), 0xc9, 0x40, 0x00, 0x00, 0x00, 1, 'x'), []string{"any"}},
		{"lz4 claiming 4GiB", lz4With(1<<32-1, block), []string{"any", "string"}},
		{"64KiB zeros claiming 1GiB", lz4With(1<<30, block), []string{"any", "string"}},
		{"64KiB zeros claiming 8MiB", lz4With(8<<20, block), []string{"any", "string"}},
		{"64KiB zeros claiming 64KiB+1", lz4With(64<<10+1, block), []string{"any", "string"}},
	}
	for _, tt := range tests {
		for _, into := range tt.into {
			t.Run(tt.name+" into "+into, func(t *testing.T) {
				value := slices.Clone(tt.value)
				binary.BigEndian.PutUint32(value[12:16], shape[into])
				if err := rdb.Set(ctx, "test:"+key[into]+":{=k}", value, time.Minute).Err(); err != nil {
					t.Fatalf("raw SET error = %v", err)
				}
				var err error
				alloc := relAllocated(func() { err = get[into]() })
				if !errors.Is(err, cachemgr.ErrMiss) {
					t.Errorf("Get() = %v, want ErrMiss", err)
				}
				if alloc > 4<<20 {
					t.Errorf("Get() of %d forged bytes allocated %d MiB, want < 4", len(tt.value), alloc>>20)
				}
			})
		}
	}
}

// TestReliabilityCorruptCompression (scenarios 41, 42, 44): values stored
// compressed, then damaged (bytes flipped, truncated, emptied); values of
// random bytes above the threshold; sizes around the threshold, written
// with one threshold and read with another. Damage is a miss, never a
// panic; every intact value round-trips whatever the reader's threshold.
func TestReliabilityCorruptCompression(t *testing.T) {
	s := redistest.Start(t)
	ctx := context.Background()
	m, rdb := newManager(t, s, cachemgr.WithCompressThreshold(1<<10))
	c := newCache[string](t, m, "z")
	text := strings.Repeat("compressible text ", 4096)
	if err := c.Set(ctx, "good", text); err != nil {
		t.Fatalf("Set() error = %v", err)
	}
	stored, err := rdb.Get(ctx, "test:z:{=good}").Bytes()
	if err != nil {
		t.Fatalf("raw GET error = %v", err)
	}
	if h, _, err := envelope.Parse(stored, 1<<30); err != nil || h.Compressor != compress.LZ4ID {
		t.Fatalf("stored value header = %+v, %v; want lz4-compressed", h, err)
	}
	damage := []struct {
		name string
		b    []byte
	}{
		{"truncated by one", stored[:len(stored)-1]},
		{"truncated to the header", stored[:envelope.HeaderSize]},
		{"body flipped", func() []byte {
			b := slices.Clone(stored)
			for i := envelope.HeaderSize; i < len(b); i += 7 {
				b[i] ^= 0xa5
			}
			return b
		}()},
		{"first token flipped", func() []byte {
			b := slices.Clone(stored)
			b[envelope.HeaderSize] ^= 0xff
			return b
		}()},
		{"raw length off by one", func() []byte {
			h, payload, _ := envelope.Parse(stored, 1<<30)
			h.RawLen++
			return append(envelope.Append(nil, h), payload...)
		}()},
	}
	for _, d := range damage {
		t.Run(d.name, func(t *testing.T) {
			if err := rdb.Set(ctx, "test:z:{=bad}", d.b, time.Minute).Err(); err != nil {
				t.Fatalf("raw SET error = %v", err)
			}
			if v, err := c.Get(ctx, "bad"); !errors.Is(err, cachemgr.ErrMiss) {
				t.Errorf("Get(damaged) = %d bytes, %v; want ErrMiss", len(v), err)
			}
		})
	}
	t.Run("incompressible 1MiB", func(t *testing.T) {
		want := randomString(1 << 20)
		if err := c.Set(ctx, "random", want); err != nil {
			t.Fatalf("Set() error = %v", err)
		}
		raw, _ := rdb.Get(ctx, "test:z:{=random}").Bytes()
		h, _, err := envelope.Parse(raw, 1<<30)
		if err != nil || h.Compressor != 0 || len(raw) < 1<<20 {
			t.Errorf("stored incompressible value: header %+v, %d bytes, %v; want stored raw, never empty", h, len(raw), err)
		}
		if got, err := c.Get(ctx, "random"); err != nil || got != want {
			t.Errorf("Get() = %d bytes, %v; want the 1 MiB written", len(got), err)
		}
	})
	t.Run("threshold boundary and change", func(t *testing.T) {
		reader, _ := newManager(t, s, cachemgr.WithCompressThreshold(4<<10))
		rc := newCache[string](t, reader, "z")
		// A msgpack string of n bytes encodes to n+3 (str16) or n+5 (str32).
		for _, n := range []int{1<<10 - 4, 1<<10 - 3, 1<<10 - 2, 4<<10 - 3, 4<<10 + 1} {
			want := strings.Repeat("b", n)
			key := fmt.Sprint("size", n)
			if err := c.Set(ctx, key, want); err != nil {
				t.Fatalf("Set(%d bytes) error = %v", n, err)
			}
			for name, cc := range map[string]*cachemgr.Cache[string]{"1KiB writer": c, "4KiB reader": rc} {
				if got, err := cc.Get(ctx, key); err != nil || got != want {
					t.Errorf("%s: Get(%d bytes) = %d bytes, %v", name, n, len(got), err)
				}
			}
		}
	})
}

// TestReliabilityNilEmptyNotFound (scenario 47): a nil pointer, an empty
// string, a zero struct, nil and empty slices and a loader's "not found"
// each come back as themselves, and none is confused with a miss.
func TestReliabilityNilEmptyNotFound(t *testing.T) {
	s := redistest.Start(t)
	ctx := context.Background()
	for _, cd := range []struct {
		name string
		opts []cachemgr.Option
	}{{"msgpack", nil}, {"json", []cachemgr.Option{cachemgr.WithCodec(codec.JSON())}}} {
		t.Run(cd.name, func(t *testing.T) {
			m, _ := newManager(t, s, cd.opts...)
			ptrs := newCache[*Product](t, m, "nil-"+cd.name)
			strs := newCache[string](t, m, "empty-"+cd.name)
			structs := newCache[Product](t, m, "zero-"+cd.name)
			slicesC := newCache[[]int](t, m, "slice-"+cd.name)
			if err := ptrs.Set(ctx, "nil", nil); err != nil {
				t.Fatalf("Set(nil pointer) error = %v", err)
			}
			if v, err := ptrs.Get(ctx, "nil"); err != nil || v != nil {
				t.Errorf("Get(nil pointer) = %v, %v; want nil, nil", v, err)
			}
			loads := 0
			for range 2 {
				v, err := ptrs.Fetch(ctx, "nil-loaded", func(context.Context) (*Product, error) { loads++; return nil, nil })
				if err != nil || v != nil {
					t.Errorf("Fetch(loader returns nil) = %v, %v; want nil, nil", v, err)
				}
			}
			if loads != 1 {
				t.Errorf("loader returning nil called %d times, want 1 (nil is a value)", loads)
			}
			if err := strs.Set(ctx, "empty", ""); err != nil {
				t.Fatalf("Set(empty string) error = %v", err)
			}
			if v, err := strs.Get(ctx, "empty"); err != nil || v != "" {
				t.Errorf("Get(empty string) = %q, %v; want a hit", v, err)
			}
			if err := structs.Set(ctx, "zero", Product{}); err != nil {
				t.Fatalf("Set(zero struct) error = %v", err)
			}
			if v, err := structs.Get(ctx, "zero"); err != nil || !equalProduct(v, Product{}) {
				t.Errorf("Get(zero struct) = %+v, %v; want a hit", v, err)
			}
			for _, tt := range []struct {
				key  string
				v    []int
				want string
			}{{"nil", nil, "[]"}, {"empty", []int{}, "[]"}, {"one", []int{1}, "[1]"}} {
				if err := slicesC.Set(ctx, tt.key, tt.v); err != nil {
					t.Fatalf("Set(%v) error = %v", tt.v, err)
				}
				got, err := slicesC.Get(ctx, tt.key)
				if err != nil || fmt.Sprint(got) != tt.want || (got == nil) != (tt.v == nil) {
					t.Errorf("Get(%s slice) = %#v, %v; want %#v", tt.key, got, err, tt.v)
				}
			}
			_, err := strs.Fetch(ctx, "absent", func(context.Context) (string, error) {
				return "", fmt.Errorf("row 9: %w", cachemgr.ErrNotFound)
			})
			if !errors.Is(err, cachemgr.ErrNotFound) || errors.Is(err, cachemgr.ErrMiss) {
				t.Errorf("Fetch(not found) error = %v, want ErrNotFound", err)
			}
			if v, err := strs.Get(ctx, "absent"); !errors.Is(err, cachemgr.ErrNotFound) || errors.Is(err, cachemgr.ErrMiss) || v != "" {
				t.Errorf("Get(negative entry) = %q, %v; want ErrNotFound, distinct from a miss and from the empty string", v, err)
			}
		})
	}
}
