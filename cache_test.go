package cachemgr_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/cachemgr/cachemgr"
	"github.com/cachemgr/cachemgr/codec"
	"github.com/cachemgr/cachemgr/compress"
	"github.com/cachemgr/cachemgr/internal/envelope"
	"github.com/cachemgr/cachemgr/internal/redistest"
)

// Product is a representative cached entity.
type Product struct {
	ID       int               `json:"id"`
	Name     string            `json:"name"`
	Price    float64           `json:"price"`
	Tags     []string          `json:"tags"`
	Attrs    map[string]string `json:"attrs"`
	Parent   *Product          `json:"parent,omitempty"`
	Created  time.Time         `json:"created"`
	Payload  []byte            `json:"payload"`
	Variants []Variant         `json:"variants"`
}

// Variant is nested inside Product.
type Variant struct {
	SKU   string `json:"sku"`
	Stock int    `json:"stock"`
}

func sampleProduct(id int) Product {
	return Product{
		ID:       id,
		Name:     fmt.Sprintf("product %d", id),
		Price:    9.99,
		Tags:     []string{"a", "b"},
		Attrs:    map[string]string{"color": "red", "size": "L"},
		Parent:   &Product{ID: id * 10, Name: "parent", Created: time.Unix(1_700_000_000, 0).UTC()},
		Created:  time.Date(2026, 11, 25, 10, 30, 0, 123456789, time.UTC),
		Payload:  []byte{0, 1, 2, 255},
		Variants: []Variant{{"s1", 3}, {"s2", 0}},
	}
}

func equalProduct(a, b Product) bool {
	if !a.Created.Equal(b.Created) || (a.Parent == nil) != (b.Parent == nil) {
		return false
	}
	if a.Parent != nil && !equalProduct(*a.Parent, *b.Parent) {
		return false
	}
	a.Created, b.Created, a.Parent, b.Parent = time.Time{}, time.Time{}, nil, nil
	return reflect.DeepEqual(a, b)
}

func TestGetSetDelete(t *testing.T) {
	redistest.Each(t, func(t *testing.T, s *redistest.Server) {
		ctx := context.Background()
		m, _ := newManager(t, s)
		c := newCache[Product](t, m, "product")
		if _, err := c.Get(ctx, "1"); !errors.Is(err, cachemgr.ErrMiss) {
			t.Fatalf("Get(absent) error = %v, want ErrMiss", err)
		}
		want := sampleProduct(1)
		if err := c.Set(ctx, "1", want); err != nil {
			t.Fatalf("Set() error = %v", err)
		}
		got, err := c.Get(ctx, "1")
		if err != nil || !equalProduct(got, want) {
			t.Fatalf("Get(1) = %+v, %v; want %+v", got, err, want)
		}
		want.Name = "renamed"
		if err := c.Set(ctx, "1", want); err != nil {
			t.Fatalf("Set(overwrite) error = %v", err)
		}
		if got, _ := c.Get(ctx, "1"); got.Name != "renamed" {
			t.Errorf("Get after overwrite = %q, want %q", got.Name, "renamed")
		}
		if err := c.Delete(ctx, "1"); err != nil {
			t.Fatalf("Delete() error = %v", err)
		}
		if _, err := c.Get(ctx, "1"); !errors.Is(err, cachemgr.ErrMiss) {
			t.Errorf("Get after Delete error = %v, want ErrMiss", err)
		}
		st := m.Stats()
		if st.Hits != 2 || st.Misses != 2 {
			t.Errorf("Stats() hits=%d misses=%d, want 2 and 2", st.Hits, st.Misses)
		}
		if r := st.HitRatio(); r != 0.5 {
			t.Errorf("HitRatio() = %v, want 0.5", r)
		}
	})
}

func TestCodecRoundTrips(t *testing.T) {
	s := redistest.StartMini(t)
	ctx := context.Background()
	for _, cd := range []codec.Codec{codec.Msgpack(), codec.JSON()} {
		t.Run(cd.Name(), func(t *testing.T) {
			m, _ := newManager(t, s, cachemgr.WithCodec(cd))
			products := newCache[Product](t, m, "p-"+cd.Name())
			want := sampleProduct(7)
			if err := products.Set(ctx, "7", want); err != nil {
				t.Fatalf("Set() error = %v", err)
			}
			if got, err := products.Get(ctx, "7"); err != nil || !equalProduct(got, want) {
				t.Errorf("Get() = %+v, %v; want %+v", got, err, want)
			}
			maps := newCache[map[string][]int](t, m, "m-"+cd.Name())
			wantMap := map[string][]int{"a": {1, 2}, "b": {}}
			if err := maps.Set(ctx, "k", wantMap); err != nil {
				t.Fatalf("Set(map) error = %v", err)
			}
			if got, err := maps.Get(ctx, "k"); err != nil || len(got) != 2 || !reflect.DeepEqual(got["a"], wantMap["a"]) {
				t.Errorf("Get(map) = %v, %v; want %v", got, err, wantMap)
			}
			times := newCache[time.Time](t, m, "t-"+cd.Name())
			now := time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC)
			if err := times.Set(ctx, "k", now); err != nil {
				t.Fatalf("Set(time) error = %v", err)
			}
			if got, err := times.Get(ctx, "k"); err != nil || !got.Equal(now) {
				t.Errorf("Get(time) = %v, %v; want %v", got, err, now)
			}
		})
	}
	t.Run("raw", func(t *testing.T) {
		m, _ := newManager(t, s)
		blobs := newCache[[]byte](t, m, "blob", cachemgr.WithCacheCodec(codec.Raw()))
		want := []byte("\x00raw\xffbytes")
		if err := blobs.Set(ctx, "k", want); err != nil {
			t.Fatalf("Set() error = %v", err)
		}
		if got, err := blobs.Get(ctx, "k"); err != nil || string(got) != string(want) {
			t.Errorf("Get() = %q, %v; want %q", got, err, want)
		}
	})
}

// TestCodecChangeNeedsNoFlush: values written with one codec still decode
// after the Manager's codec changes, because the envelope names the codec.
func TestCodecChangeNeedsNoFlush(t *testing.T) {
	s := redistest.StartMini(t)
	ctx := context.Background()
	old, _ := newManager(t, s, cachemgr.WithCodec(codec.JSON()))
	if err := newCache[Product](t, old, "p").Set(ctx, "1", sampleProduct(1)); err != nil {
		t.Fatalf("Set() error = %v", err)
	}
	cur, _ := newManager(t, s)
	got, err := newCache[Product](t, cur, "p").Get(ctx, "1")
	if err != nil || !equalProduct(got, sampleProduct(1)) {
		t.Errorf("Get() after codec change = %+v, %v; want the JSON-written value", got, err)
	}
}

func TestCompressionThreshold(t *testing.T) {
	s := redistest.StartMini(t)
	ctx := context.Background()
	tests := []struct {
		name           string
		value          string
		opts           []cachemgr.Option
		wantCompressed bool
	}{
		{"small stays raw", strings.Repeat("a", 100), nil, false},
		{"large compressible", strings.Repeat("abcd", 4096), nil, true},
		{"large incompressible", randomString(8192), nil, false},
		{"compression off", strings.Repeat("abcd", 4096), []cachemgr.Option{cachemgr.WithCompressor(compress.None())}, false},
		{"low threshold", strings.Repeat("ab", 64), []cachemgr.Option{cachemgr.WithCompressThreshold(16)}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, rdb := newManager(t, s, tt.opts...)
			c := newCache[string](t, m, "z")
			if err := c.Set(ctx, tt.name, tt.value); err != nil {
				t.Fatalf("Set() error = %v", err)
			}
			raw, err := rdb.Get(ctx, "test:z:{="+tt.name+"}").Bytes()
			if err != nil {
				t.Fatalf("raw GET error = %v", err)
			}
			h, _, err := envelope.Parse(raw, 1<<30)
			if err != nil {
				t.Fatalf("Parse(stored) error = %v", err)
			}
			if got := h.Compressor != 0; got != tt.wantCompressed {
				t.Errorf("stored compressed = %v (%d bytes for %d), want %v", got, len(raw), len(tt.value), tt.wantCompressed)
			}
			if tt.wantCompressed && len(raw) >= len(tt.value) {
				t.Errorf("compressed size %d >= raw %d", len(raw), len(tt.value))
			}
			if got, err := c.Get(ctx, tt.name); err != nil || got != tt.value {
				t.Errorf("Get() = %d bytes, %v; want the %d bytes written", len(got), err, len(tt.value))
			}
		})
	}
}

func randomString(n int) string {
	b := make([]byte, n)
	x := uint64(88172645463325252)
	for i := range b {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		b[i] = byte(x)
	}
	return string(b)
}

// TestUndecodableValues: foreign bytes, truncated and forged envelopes are
// a counted miss, deleted, never a panic.
func TestUndecodableValues(t *testing.T) {
	redistest.Each(t, func(t *testing.T, s *redistest.Server) {
		ctx := context.Background()
		m, rdb := newManager(t, s)
		c := newCache[Product](t, m, "p")
		good, _ := newManager(t, s)
		if err := newCache[Product](t, good, "p").Set(ctx, "good", sampleProduct(1)); err != nil {
			t.Fatalf("Set() error = %v", err)
		}
		valid, err := rdb.Get(ctx, "test:p:{=good}").Bytes()
		if err != nil {
			t.Fatalf("raw GET error = %v", err)
		}
		shape := cachemgr.Shape[Product]()
		// claims a 2 GiB raw payload
		forgedLen := append(envelope.Append(nil, envelope.Header{Codec: codec.MsgpackID, Compressor: compress.LZ4ID, RawLen: 1<<31 - 1, Shape: shape}), valid[envelope.HeaderSize:]...)
		msgpackBomb := append(envelope.Append(nil, envelope.Header{Codec: codec.MsgpackID, Shape: shape}), 0xdd, 0xff, 0xff, 0xff, 0xff)
		lz4Bomb := append(envelope.Append(nil, envelope.Header{Codec: codec.MsgpackID, Compressor: compress.LZ4ID, RawLen: 1 << 20, Shape: shape}), 0xff, 0xff, 0xff)
		tests := []struct {
			name  string
			value []byte
		}{
			{"foreign json", []byte(`{"id":1,"name":"written by hand"}`)},
			{"empty", []byte{}},
			{"truncated", valid[:len(valid)/2]},
			{"header only truncated", valid[:10]},
			{"forged raw length", forgedLen},
			{"msgpack bomb", msgpackBomb},
			{"lz4 garbage", lz4Bomb},
			{"unknown codec", append(envelope.Append(nil, envelope.Header{Codec: 200, Shape: shape}), 1)},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				key := "test:p:{=" + tt.name + "}"
				if err := rdb.Set(ctx, key, tt.value, time.Minute).Err(); err != nil {
					t.Fatalf("raw SET error = %v", err)
				}
				before := m.Stats().DecodeErrors
				if _, err := c.Get(ctx, tt.name); !errors.Is(err, cachemgr.ErrMiss) {
					t.Errorf("Get() error = %v, want ErrMiss", err)
				}
				if got := m.Stats().DecodeErrors - before; got != 1 {
					t.Errorf("DecodeErrors grew by %d, want 1", got)
				}
				if n, _ := rdb.Exists(ctx, key).Result(); n != 0 {
					t.Errorf("undecodable key still exists after Get")
				}
			})
		}
	})
}

func TestWrongTypeIsMissNotDeleted(t *testing.T) {
	redistest.Each(t, func(t *testing.T, s *redistest.Server) {
		ctx := context.Background()
		m, rdb := newManager(t, s)
		c := newCache[string](t, m, "s")
		rdb.HSet(ctx, "test:s:{=h}", "f", "v")
		if _, err := c.Get(ctx, "h"); !errors.Is(err, cachemgr.ErrMiss) {
			t.Errorf("Get(hash key) error = %v, want ErrMiss", err)
		}
		if n, _ := rdb.Exists(ctx, "test:s:{=h}").Result(); n != 1 {
			t.Errorf("hash key was deleted; it is not ours")
		}
		got, err := c.Fetch(ctx, "h", func(context.Context) (string, error) { return "loaded", nil })
		if err != nil || got != "loaded" {
			t.Errorf("Fetch(hash key) = %q, %v; want loaded", got, err)
		}
	})
}

func TestValueTooLarge(t *testing.T) {
	m, rdb := newManager(t, redistest.StartMini(t), cachemgr.WithMaxValueSize(1024))
	c := newCache[string](t, m, "big")
	ctx := context.Background()
	err := c.Set(ctx, "k", randomString(2048))
	if !errors.Is(err, cachemgr.ErrTooLarge) {
		t.Fatalf("Set(2 KiB) error = %v, want ErrTooLarge", err)
	}
	if n, _ := rdb.DBSize(ctx).Result(); n != 0 {
		t.Errorf("DBSIZE after rejected Set = %d, want 0", n)
	}
	got, err := c.Fetch(ctx, "k", func(context.Context) (string, error) { return randomString(2048), nil })
	if err != nil || len(got) != 2048 {
		t.Errorf("Fetch(too large) = %d bytes, %v; want the value, uncached", len(got), err)
	}
	if st := m.Stats(); st.WriteErrors != 1 {
		t.Errorf("WriteErrors = %d, want 1", st.WriteErrors)
	}
}

func TestKeysWithSpecialCharacters(t *testing.T) {
	redistest.Each(t, func(t *testing.T, s *redistest.Server) {
		ctx := context.Background()
		m, rdb := newManager(t, s)
		c := newCache[string](t, m, "k")
		inputs := []string{"", " ", "*", "a*b", "?", "[x]", `\`, "{", "}", "{}", "}{", "a:b", "\r\n\x00", "\xff\xfe", strings.Repeat("long", 2560)}
		for i, k := range inputs {
			if err := c.Set(ctx, k, fmt.Sprint(i)); err != nil {
				t.Fatalf("Set(%.20q) error = %v", k, err)
			}
		}
		for i, k := range inputs {
			if got, err := c.Get(ctx, k); err != nil || got != fmt.Sprint(i) {
				t.Errorf("Get(%.20q) = %q, %v; want %q", k, got, err, fmt.Sprint(i))
			}
		}
		if n, _ := rdb.DBSize(ctx).Result(); n != int64(len(inputs)) {
			t.Errorf("DBSIZE = %d, want %d distinct keys", n, len(inputs))
		}
		for _, key := range rdb.Keys(ctx, "*").Val() {
			if len(key) > 100 {
				t.Errorf("Redis key of %d bytes, want long keys hashed", len(key))
			}
		}
	})
}

func TestTTLAndJitter(t *testing.T) {
	redistest.Each(t, func(t *testing.T, s *redistest.Server) {
		ctx := context.Background()
		m, rdb := newManager(t, s)
		tests := []struct {
			name     string
			cacheOpt []cachemgr.CacheOption
			callOpt  []cachemgr.WriteOption
			min, max time.Duration
		}{
			{"default", nil, nil, 54 * time.Second, 66 * time.Second},
			{"cache ttl no jitter", []cachemgr.CacheOption{cachemgr.WithTTL(10 * time.Second), cachemgr.WithJitter(0)}, nil, 9900 * time.Millisecond, 10 * time.Second},
			{"per-call ttl", []cachemgr.CacheOption{cachemgr.WithJitter(0.2)}, []cachemgr.WriteOption{cachemgr.TTL(time.Hour)}, 48 * time.Minute, 72 * time.Minute},
			{"sub-millisecond rounds up", []cachemgr.CacheOption{cachemgr.WithJitter(0)}, []cachemgr.WriteOption{cachemgr.TTL(500 * time.Microsecond)}, 0, time.Millisecond},
		}
		for i, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				c := newCache[int](t, m, fmt.Sprintf("ttl%d", i), tt.cacheOpt...)
				var seen []time.Duration
				for j := 0; j < 20; j++ {
					key := fmt.Sprint(j)
					if err := c.Set(ctx, key, j, tt.callOpt...); err != nil {
						t.Fatalf("Set() error = %v", err)
					}
					ttl, err := rdb.PTTL(ctx, fmt.Sprintf("test:ttl%d:{=%s}", i, key)).Result()
					if err != nil {
						t.Fatalf("PTTL error = %v", err)
					}
					if ttl == -2*time.Nanosecond {
						continue // a 1 ms TTL may have run out already
					}
					if ttl < tt.min || ttl > tt.max {
						t.Errorf("PTTL = %v, want within [%v, %v]", ttl, tt.min, tt.max)
					}
					seen = append(seen, ttl)
				}
				if tt.max-tt.min > time.Second && len(seen) > 1 && allEqual(seen) {
					t.Errorf("20 TTLs all %v: jitter not applied", seen[0])
				}
			})
		}
		c := newCache[int](t, m, "bad")
		for _, d := range []time.Duration{0, -5 * time.Second, -1, cachemgr.MaxTTL + time.Hour} {
			if err := c.Set(ctx, "k", 1, cachemgr.TTL(d)); !errors.Is(err, cachemgr.ErrInvalidTTL) {
				t.Errorf("Set(TTL(%v)) error = %v, want ErrInvalidTTL", d, err)
			}
		}
		if n, _ := rdb.Exists(ctx, "test:bad:{=k}").Result(); n != 0 {
			t.Errorf("a rejected TTL still wrote the key")
		}
	})
}

func allEqual(ds []time.Duration) bool {
	for _, d := range ds {
		if d != ds[0] {
			return false
		}
	}
	return true
}
