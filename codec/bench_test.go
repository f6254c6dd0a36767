package codec_test

import (
	"bytes"
	"fmt"
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

func BenchmarkMsgpackUnmarshal(b *testing.B) {
	data, err := codec.Msgpack().Append(nil, newBenchUser())
	if err != nil {
		b.Fatal(err)
	}
	b.Run("codec", func(b *testing.B) {
		c := codec.Msgpack()
		b.SetBytes(int64(len(data)))
		b.ReportAllocs()
		for b.Loop() {
			var u benchUser
			if err := c.Unmarshal(data, &u); err != nil {
				b.Fatal(err)
			}
		}
	})
	// The baseline is an unchecked pooled decoder with the same struct tags.
	b.Run("msgpack", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var u benchUser
			dec := msgpack.GetDecoder()
			dec.Reset(bytes.NewReader(data))
			dec.SetCustomStructTag("json")
			err := dec.Decode(&u)
			msgpack.PutDecoder(dec)
			if err != nil {
				b.Fatal(err)
			}
		}
	})
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
