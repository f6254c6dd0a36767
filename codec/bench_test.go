package codec_test

import (
	"bytes"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/cachemgr/cachemgr/codec"
)

type benchItem struct {
	SKU   string  `json:"sku"`
	Qty   int     `json:"qty"`
	Price float64 `json:"price"`
}

// benchUser encodes to about 1 KiB of msgpack.
type benchUser struct {
	ID        int64             `json:"id"`
	Name      string            `json:"name"`
	Email     string            `json:"email"`
	Active    bool              `json:"active"`
	CreatedAt time.Time         `json:"created_at"`
	Tags      []string          `json:"tags"`
	Attrs     map[string]string `json:"attrs"`
	Items     []benchItem       `json:"items"`
	Bio       string            `json:"bio"`
}

func newBenchUser() *benchUser {
	u := &benchUser{
		ID:        123456789,
		Name:      "Ada Lovelace",
		Email:     "ada@example.com",
		Active:    true,
		CreatedAt: time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.UTC),
		Attrs:     map[string]string{"plan": "pro", "region": "eu-west-1", "locale": "en-GB", "theme": "dark", "tz": "Europe/London"},
		Bio:       "Mathematician and writer, chiefly known for her work on Charles Babbage's proposed mechanical general-purpose computer, the Analytical Engine. She was the first to recognise that the machine had applications beyond pure calculation.",
	}
	for i := range 10 {
		u.Tags = append(u.Tags, fmt.Sprintf("tag-%02d", i))
	}
	for i := range 12 {
		u.Items = append(u.Items, benchItem{SKU: fmt.Sprintf("SKU-%06d", i*7919), Qty: i + 1, Price: float64(i) * 9.99})
	}
	return u
}

func BenchmarkMsgpackAppend(b *testing.B) {
	u := newBenchUser()
	b.Run("codec", func(b *testing.B) {
		c := codec.Msgpack()
		buf, err := c.Append(nil, u)
		if err != nil {
			b.Fatal(err)
		}
		b.SetBytes(int64(len(buf)))
		b.ReportAllocs()
		for b.Loop() {
			if buf, err = c.Append(buf[:0], u); err != nil {
				b.Fatal(err)
			}
		}
	})
	// The baseline is msgpack.Marshal with the same struct tags.
	b.Run("msgpack", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var buf bytes.Buffer
			enc := msgpack.GetEncoder()
			enc.Reset(&buf)
			enc.SetCustomStructTag("json")
			err := enc.Encode(u)
			msgpack.PutEncoder(enc)
			if err != nil {
				b.Fatal(err)
			}
		}
	})
}

// benchProduct is a catalogue record of 13 fields that encodes to about
// 1 KiB of msgpack. It has no struct tags, so plain msgpack.Unmarshal and
// the codec agree on the field names.
type benchProduct struct {
	ID          int64
	SKU         string
	Name        string
	Brand       string
	Description string
	Price       float64
	Currency    string
	Stock       int32
	Active      bool
	Tags        []string
	Attrs       map[string]string
	Parts       []benchPart
	UpdatedAt   time.Time
}

// benchPart is benchItem without struct tags.
type benchPart struct {
	SKU   string
	Qty   int
	Price float64
}

func newBenchProduct(i int) benchProduct {
	p := benchProduct{
		ID:          int64(100000 + i),
		SKU:         fmt.Sprintf("SKU-%07d-XL", i),
		Name:        "Compact travel frame, oak finish",
		Brand:       "Northwind",
		Description: strings.Repeat("Light steel frame with an oak finish, weatherproof and built for travel. ", 8),
		Price:       129.95 + float64(i),
		Currency:    "EUR",
		Stock:       int32(17 + i),
		Active:      i%3 != 0,
		Tags:        []string{"outdoor", "travel", "sale", "oak"},
		Attrs:       map[string]string{"colour": "natural", "size": "XL", "weight": "2.4kg"},
		UpdatedAt:   time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC),
	}
	for j := range 3 {
		p.Parts = append(p.Parts, benchPart{SKU: fmt.Sprintf("PART-%04d", j), Qty: j + 1, Price: 4.5 * float64(j+1)})
	}
	return p
}

// paired runs a and base alternately, in blocks of block calls, inside one
// benchmark loop, so that both see the same machine load. It reports each
// side's time per call; the ratio of a's time to base's as the median over
// the pairs of blocks, which a pause of the whole process in one block does
// not move; and each side's allocations per call, counted apart from the
// timed loop on one P so that other goroutines do not add to them.
func paired(b *testing.B, block int, a, base func()) {
	var ta, tb time.Duration
	var ratios []float64
	timeBlock := func(f func()) time.Duration {
		start := time.Now()
		for range block {
			f()
		}
		return time.Since(start)
	}
	ops := 0
	for i := 0; b.Loop(); i++ {
		var da, db time.Duration
		if i%2 == 0 {
			da = timeBlock(a)
			db = timeBlock(base)
		} else {
			db = timeBlock(base)
			da = timeBlock(a)
		}
		ta, tb, ops = ta+da, tb+db, ops+block
		ratios = append(ratios, float64(da)/float64(db))
	}
	slices.Sort(ratios)
	b.ReportMetric(float64(ta.Nanoseconds())/float64(ops), "codec-ns/op")
	b.ReportMetric(float64(tb.Nanoseconds())/float64(ops), "msgpack-ns/op")
	b.ReportMetric(ratios[len(ratios)/2], "ratio")
	for _, s := range []struct {
		name string
		f    func()
	}{{"codec", a}, {"msgpack", base}} {
		bytes, allocs := allocsPerCall(s.f)
		b.ReportMetric(bytes, s.name+"-B/op")
		b.ReportMetric(allocs, s.name+"-allocs/op")
	}
}

// allocsPerCall returns the bytes and allocations of one call of f,
// averaged over 100 calls made with GOMAXPROCS 1, as testing.AllocsPerRun
// counts them.
func allocsPerCall(f func()) (bytes, allocs float64) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	const runs = 100
	f()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range runs {
		f()
	}
	runtime.ReadMemStats(&after)
	return float64(after.TotalAlloc-before.TotalAlloc) / runs, float64(after.Mallocs-before.Mallocs) / runs
}

// BenchmarkMsgpackUnmarshal compares the codec's Unmarshal, which checks its
// input, with plain msgpack.Unmarshal of the same bytes, in one loop.
func BenchmarkMsgpackUnmarshal(b *testing.B) {
	products := make([]benchProduct, 50)
	for i := range products {
		products[i] = newBenchProduct(i)
	}
	tests := []struct {
		name  string
		v     any
		new   func() any
		block int
	}{
		{"product", products[0], func() any { return new(benchProduct) }, 8},
		{"products50", products, func() any { return new([]benchProduct) }, 1},
	}
	for _, tt := range tests {
		b.Run(tt.name, func(b *testing.B) {
			c := codec.Msgpack()
			data, err := c.Append(nil, tt.v)
			if err != nil {
				b.Fatal(err)
			}
			paired(b, tt.block,
				func() {
					if err := c.Unmarshal(data, tt.new()); err != nil {
						b.Fatal(err)
					}
				},
				func() {
					if err := msgpack.Unmarshal(data, tt.new()); err != nil {
						b.Fatal(err)
					}
				})
		})
	}
}

func BenchmarkJSONAppend(b *testing.B) {
	u := newBenchUser()
	c := codec.JSON()
	buf, err := c.Append(nil, u)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		if buf, err = c.Append(buf[:0], u); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkJSONUnmarshal(b *testing.B) {
	c := codec.JSON()
	data, err := c.Append(nil, newBenchUser())
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		var u benchUser
		if err := c.Unmarshal(data, &u); err != nil {
			b.Fatal(err)
		}
	}
}
