package codectest

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cachemgr/cachemgr/codec"
	"github.com/cachemgr/cachemgr/compress"
	"github.com/cachemgr/cachemgr/internal/envelope"
	"github.com/cachemgr/cachemgr/internal/redistest"
)

type line struct {
	SKU      string  `json:"sku" msgpack:"sku"`
	Name     string  `json:"name" msgpack:"name"`
	Quantity int     `json:"quantity" msgpack:"quantity"`
	Price    float64 `json:"price" msgpack:"price"`
}

type order struct {
	ID       string    `json:"id" msgpack:"id"`
	Customer string    `json:"customer" msgpack:"customer"`
	Created  time.Time `json:"created" msgpack:"created"`
	Lines    []line    `json:"lines" msgpack:"lines"`
}

// sampleOrder returns an order of n lines; from about 20 lines on, its
// encodings pass the default compression threshold.
func sampleOrder(n int) order {
	o := order{ID: "ord_0001", Customer: "Ada Lovelace", Created: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)}
	for i := range n {
		o.Lines = append(o.Lines, line{SKU: fmt.Sprintf("SKU-%06d", i), Name: "Compact Kettle", Quantity: 1 + i%3, Price: 19.95})
	}
	return o
}

// quick keeps measurements short: the tests check the plumbing, not speed.
var quick = []Option{Ops(3), Runs(3)}

func TestMeasure(t *testing.T) {
	rep, err := Measure(context.Background(), sampleOrder(40), quick...)
	if err != nil {
		t.Fatalf("Measure() error: %v", err)
	}
	if rep.Type != "codectest.order" || rep.Runs != 3 || rep.Threshold != 1024 || rep.RoundTrips {
		t.Errorf("Measure() = type %q, %d runs, threshold %d, round trips %t; want codectest.order, 3, 1024, false",
			rep.Type, rep.Runs, rep.Threshold, rep.RoundTrips)
	}
	if len(rep.Skipped) != 1 || rep.Skipped[0].Codec != "raw" || !strings.Contains(rep.Skipped[0].Reason, "unsupported") {
		t.Errorf("Measure().Skipped = %+v, want raw, as it cannot encode a struct", rep.Skipped)
	}
	var got []string
	byName := map[string]Result{}
	for _, r := range rep.Results {
		name := r.Codec + "+" + r.Compression
		got = append(got, name)
		byName[name] = r
		for op, tm := range map[string]Timing{"encode": r.Encode, "decode": r.Decode} {
			if tm.Ops != 3 || !(tm.LowNsPerOp > 0 && tm.LowNsPerOp <= tm.NsPerOp && tm.NsPerOp <= tm.HighNsPerOp) {
				t.Errorf("%s %s = %+v, want 3 ops and 0 < low <= median <= high", name, op, tm)
			}
		}
		if r.RoundTrip.Ops != 0 || r.RoundTrip.NsPerOp != 0 {
			t.Errorf("%s round trip = %+v without Redis, want zero", name, r.RoundTrip)
		}
	}
	if want := "msgpack+lz4 msgpack+none json+lz4 json+none"; strings.Join(got, " ") != want {
		t.Fatalf("Measure() rows = %q, want %q", got, want)
	}
	for _, cd := range []string{"msgpack", "json"} {
		lz4, none := byName[cd+"+lz4"], byName[cd+"+none"]
		if !lz4.Compressed || lz4.StoredBytes >= none.StoredBytes || lz4.Ratio <= 1 {
			t.Errorf("%s+lz4 = %d B, compressed %t, ratio %.2f; want compressed, under none's %d B", cd, lz4.StoredBytes, lz4.Compressed, lz4.Ratio, none.StoredBytes)
		}
		if none.Compressed || none.StoredBytes != none.EncodedBytes+envelope.HeaderSize || none.Ratio != 1 {
			t.Errorf("%s+none = %d B stored, %d encoded, ratio %.2f; want encoded + the %d B header, ratio 1", cd, none.StoredBytes, none.EncodedBytes, none.Ratio, envelope.HeaderSize)
		}
		if lz4.EncodedBytes != none.EncodedBytes {
			t.Errorf("%s encoded = %d B with lz4, %d B with none; want the same", cd, lz4.EncodedBytes, none.EncodedBytes)
		}
	}
	if byName["msgpack+none"].EncodedBytes >= byName["json+none"].EncodedBytes {
		t.Errorf("msgpack encoded %d B, json %d B; want msgpack smaller", byName["msgpack+none"].EncodedBytes, byName["json+none"].EncodedBytes)
	}
}

func TestMeasureBelowThreshold(t *testing.T) {
	rep, err := Measure(context.Background(), sampleOrder(1), quick...)
	if err != nil {
		t.Fatalf("Measure() error: %v", err)
	}
	for _, r := range rep.Results {
		if r.Compressed {
			t.Errorf("%s+%s of %d B compressed, want not under the 1024 B threshold", r.Codec, r.Compression, r.EncodedBytes)
		}
	}
}

func TestMeasureBytes(t *testing.T) {
	data := []byte(strings.Repeat(`{"sku":"SKU-1","name":"Compact Kettle"},`, 50))
	rep, err := Measure(context.Background(), data, append(quick, Codecs(codec.Raw()))...)
	if err != nil {
		t.Fatalf("Measure([]byte) error: %v", err)
	}
	if len(rep.Results) != 2 || len(rep.Skipped) != 0 {
		t.Fatalf("Measure([]byte) = %d rows, skipped %+v; want raw+lz4 and raw+none", len(rep.Results), rep.Skipped)
	}
	if r := rep.Results[1]; r.StoredBytes != len(data)+envelope.HeaderSize {
		t.Errorf("raw+none stored = %d B, want the %d B plus the header", r.StoredBytes, len(data))
	}
}

// TestMeasureRedis measures on a real server, as the Redis option does for
// the user's own: round trips are timed, and no key is left behind.
func TestMeasureRedis(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	ctx := context.Background()
	rep, err := Measure(ctx, sampleOrder(40), append(quick, Redis(rdb), Codecs(codec.Msgpack()))...)
	if err != nil {
		t.Fatalf("Measure(Redis) error: %v", err)
	}
	if !rep.RoundTrips || len(rep.Results) != 2 {
		t.Fatalf("Measure(Redis) = round trips %t, %d rows; want true, 2", rep.RoundTrips, len(rep.Results))
	}
	for _, r := range rep.Results {
		if r.RoundTrip.Ops != 3 || r.RoundTrip.NsPerOp <= 0 {
			t.Errorf("%s+%s round trip = %+v, want 3 ops timed", r.Codec, r.Compression, r.RoundTrip)
		}
	}
	if n, err := rdb.DBSize(ctx).Result(); err != nil || n != 0 {
		t.Errorf("DBSIZE after Measure = %d, %v; want 0 keys", n, err)
	}
}

func TestMeasureErrors(t *testing.T) {
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name   string
		ctx    context.Context
		sample any
		opts   []Option
		want   error // nil: any error
	}{
		{"zero runs", context.Background(), 1, []Option{Runs(0)}, ErrInvalidOption},
		{"zero ops", context.Background(), 1, []Option{Ops(0)}, ErrInvalidOption},
		{"zero block time", context.Background(), 1, []Option{BlockTime(0)}, ErrInvalidOption},
		{"negative threshold", context.Background(), 1, []Option{Threshold(-1)}, ErrInvalidOption},
		{"no codecs", context.Background(), 1, []Option{Codecs()}, ErrInvalidOption},
		{"nil codec", context.Background(), 1, []Option{Codecs(nil)}, ErrInvalidOption},
		{"no compressors", context.Background(), 1, []Option{Compressors()}, ErrInvalidOption},
		{"nil compressor", context.Background(), 1, []Option{Compressors(nil)}, ErrInvalidOption},
		{"nil redis", context.Background(), 1, []Option{Redis(nil)}, ErrInvalidOption},
		{"nil option", context.Background(), 1, []Option{nil}, ErrInvalidOption},
		{"no codec encodes it", context.Background(), sampleOrder(1), []Option{Codecs(codec.Raw())}, codec.ErrUnsupportedType},
		{"cancelled", cancelled, sampleOrder(1), quick, context.Canceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep, err := Measure(tt.ctx, tt.sample, tt.opts...)
			if err == nil || !errors.Is(err, tt.want) {
				t.Errorf("Measure() = %v, %v; want an error matching %v", rep, err, tt.want)
			}
		})
	}
}

func TestInterval(t *testing.T) {
	tests := []struct {
		name           string
		xs             []float64
		wantLo, wantHi float64
	}{
		{"one run", []float64{7}, 7, 7},
		{"five runs: the extremes", []float64{5, 1, 4, 2, 3}, 1, 5},
		{"six runs: the extremes", []float64{6, 1, 5, 2, 4, 3}, 1, 6},
		{"ten runs: second from each end", []float64{10, 1, 9, 2, 8, 3, 7, 4, 6, 5}, 2, 9},
		{"twenty runs: sixth from each end", []float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20}, 6, 15},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if lo, hi := interval(tt.xs); lo != tt.wantLo || hi != tt.wantHi {
				t.Errorf("interval(%v) = %v, %v; want %v, %v", tt.xs, lo, hi, tt.wantLo, tt.wantHi)
			}
		})
	}
}

// TestMark checks that only a difference larger than the noise, run by
// run, is called a win.
func TestMark(t *testing.T) {
	tm := func(runs ...float64) Timing { return Timing{NsPerOp: median(runs), runs: runs} }
	tests := []struct {
		name         string
		a, b         Timing
		wantA, wantB bool
	}{
		{"clear win", tm(100, 101, 99, 100, 102, 98), tm(150, 151, 149, 150, 152, 148), true, false},
		{"second wins", tm(300, 301, 299, 300, 302, 298), tm(100, 101, 99, 100, 102, 98), false, true},
		// The machine slowed down in runs 3 and 4 for both rows: a paired
		// comparison still sees a wins every run.
		{"shared slow runs", tm(100, 100, 400, 400, 100, 100), tm(120, 120, 480, 480, 120, 120), true, false},
		// b is faster in two runs of six: within the noise.
		{"mixed", tm(100, 100, 100, 100, 100, 100), tm(120, 90, 130, 95, 110, 140), false, false},
		{"too few runs to tell", tm(100, 100), tm(150, 150), false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep := &Report{Results: []Result{{StoredBytes: 10, Decode: tt.a}, {StoredBytes: 10, Decode: tt.b}}}
			rep.mark()
			if got := [2]bool{rep.Results[0].Decode.Fastest, rep.Results[1].Decode.Fastest}; got != [2]bool{tt.wantA, tt.wantB} {
				t.Errorf("mark() decode fastest = %v, want %v", got, [2]bool{tt.wantA, tt.wantB})
			}
			if !rep.Results[0].Smallest || !rep.Results[1].Smallest {
				t.Errorf("mark() smallest = %t, %t for a tie; want both", rep.Results[0].Smallest, rep.Results[1].Smallest)
			}
		})
	}
}

func TestWriteText(t *testing.T) {
	rep, err := Measure(context.Background(), sampleOrder(40), append(quick, Codecs(codec.Msgpack(), codec.Raw()))...)
	if err != nil {
		t.Fatalf("Measure() error: %v", err)
	}
	rep.Results[0].Decode.Fastest = true
	var b strings.Builder
	if err := rep.WriteText(&b); err != nil {
		t.Fatalf("WriteText() error: %v", err)
	}
	for _, want := range []string{
		"values of type codectest.order, median of 3 runs", "raw: not measured, it cannot encode codectest.order",
		"stored B", "decode ns/op", "fastest decode", "smallest", "beat every other row run by run",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("WriteText() lacks %q\noutput:\n%s", want, &b)
		}
	}
}

// countingCodec is msgpack, counting its calls.
type countingCodec struct {
	codec.Codec
	appends, unmarshals *atomic.Int64
}

func (c countingCodec) Append(dst []byte, v any) ([]byte, error) {
	c.appends.Add(1)
	return c.Codec.Append(dst, v)
}

func (c countingCodec) Unmarshal(data []byte, v any) error {
	c.unmarshals.Add(1)
	return c.Codec.Unmarshal(data, v)
}

// TestRun runs Run's sub-benchmarks the way go test -bench does, for a
// fixed number of rounds, and checks that they encoded and decoded.
func TestRun(t *testing.T) {
	f := flag.Lookup("test.benchtime")
	old := f.Value.String()
	if err := f.Value.Set("5x"); err != nil {
		t.Fatal(err)
	}
	defer f.Value.Set(old)

	cd := countingCodec{Codec: codec.Msgpack(), appends: new(atomic.Int64), unmarshals: new(atomic.Int64)}
	res := testing.Benchmark(func(b *testing.B) {
		Run(b, sampleOrder(40), Codecs(cd), Compressors(compress.LZ4()))
	})
	// Setting up costs an Append for the probe, one for the Set, one for
	// the check and an Unmarshal for the check; each sub-benchmark then
	// runs its operation at least 5 times.
	if a, u := cd.appends.Load(), cd.unmarshals.Load(); a < 3+5 || u < 1+5 {
		t.Errorf("Run() made %d Appends and %d Unmarshals, want at least 8 and 6 (result %v)", a, u, res)
	}
}
