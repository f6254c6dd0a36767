package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/alicebob/miniredis/v2"
	"github.com/cachemgr/cachemgr/internal/envelope"
	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// The "redis down" case makes go-redis log every failed dial; the
	// test asserts on the returned error instead.
	redis.SetLogger(discardPrintf{})
	// A run closes its Managers, client and miniredis: nothing may be
	// left running.
	goleak.VerifyTestMain(m)
}

type discardPrintf struct{}

func (discardPrintf) Printf(context.Context, string, ...any) {}

// quick makes every measurement 2 operations in 2 runs: enough to check the
// plumbing, well under a second per run.
var quick = []string{"-ops", "2", "-runs", "2"}

// row is what the tests check of one output row, whatever the format.
// encoded is -1 when the format does not show it.
type row struct {
	payload, codec, compression string
	stored, encoded             int64
	compressed                  bool
	roundTrip                   float64 // µs; -1 when the format does not show it
}

func runOK(t *testing.T, args ...string) string {
	t.Helper()
	var out bytes.Buffer
	if err := run(context.Background(), args, &out); err != nil {
		t.Fatalf("run(%q) = %v, want nil\noutput:\n%s", args, err, &out)
	}
	return out.String()
}

// textPhrases say what the text measured: the Go type each payload
// decodes into, that raw cannot encode a struct, and how to read the marks.
var textPhrases = []string{
	"each time is the median of 2 runs of 2 ops per measurement",
	"unmarshal into a new\nvalue of the type below",
	"values of type main.product", "values of type main.order,", "values of type main.orderPage",
	"raw: not measured, it cannot encode main.product",
	"\"fastest\" marks a row only when it beat every other row run by run",
}

func TestRunFormats(t *testing.T) {
	// The text runs every sample; the other formats, the two quick ones.
	tests := []struct {
		format  string
		samples []string
		parse   func(t *testing.T, out string) []row
		want    []string // phrases in the output
	}{
		{"text", []string{"small", "medium", "large"}, parseText, textPhrases},
		{"csv", []string{"small", "medium"}, parseCSV, nil},
		{"json", []string{"small", "medium"}, parseJSON, nil},
	}
	for _, tt := range tests {
		t.Run(tt.format, func(t *testing.T) {
			out := runOK(t, append(quick, "-format", tt.format, "-samples", strings.Join(tt.samples, ","))...)
			rows := tt.parse(t, out)
			checkRows(t, rows, tt.samples, []string{"msgpack", "json"})
			if len(rows) != 4*len(tt.samples) {
				t.Errorf("run(-format %s) = %d rows, want %d", tt.format, len(rows), 4*len(tt.samples))
			}
			for _, cd := range []string{"msgpack", "json"} {
				lz4, none := find(t, rows, "medium", cd, "lz4"), find(t, rows, "medium", cd, "none")
				if lz4.stored >= none.stored {
					t.Errorf("medium/%s: lz4 stored %d B, want less than none's %d B", cd, lz4.stored, none.stored)
				}
			}
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("run(-format %s) output lacks %q", tt.format, w)
				}
			}
			// Two runs cannot tell a win from noise.
			if strings.Contains(out, "fastest encode") || strings.Contains(out, "fastest decode") ||
				strings.Contains(out, "fastest round trip") || strings.Contains(out, `"fastest": true`) {
				t.Errorf("run(-format %s) with 2 runs marked a row fastest, want no marks", tt.format)
			}
			if t.Failed() {
				t.Logf("output:\n%s", out)
			}
		})
	}
}

func TestRunInput(t *testing.T) {
	// About 3 KiB of repetitive JSON: over the default threshold, and
	// compressible.
	var items []map[string]any
	for i := range 30 {
		items = append(items, map[string]any{"id": i, "name": fmt.Sprintf("item %d", i), "tags": []string{"a", "b"}, "price": 9.99})
	}
	data, err := json.Marshal(map[string]any{"items": items, "page": 1, "next": nil})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "payload.json")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}

	rows := parseCSV(t, runOK(t, append(quick, "-format", "csv", "-input", path)...))
	checkRows(t, rows, []string{"payload.json as any"}, []string{"msgpack", "json"})
	checkRows(t, rows, []string{"payload.json as bytes"}, []string{"raw"})
	if got, want := find(t, rows, "payload.json as bytes", "raw", "none").stored, int64(len(data)+envelope.HeaderSize); got != want {
		t.Errorf("raw/none stored = %d B, want the file's %d B plus the header", got, want)
	}
	if got, limit := find(t, rows, "payload.json as bytes", "raw", "lz4").stored, int64(len(data)+envelope.HeaderSize); got >= limit {
		t.Errorf("raw/lz4 stored = %d B, want less than %d B", got, limit)
	}

	text := runOK(t, append(quick, "-input", path)...)
	for _, want := range []string{"values of type interface {}", "not into your type", "values of type []uint8", "raw: not measured, it cannot encode interface {}"} {
		if !strings.Contains(text, want) {
			t.Errorf("run(-input) text lacks %q\noutput:\n%s", want, text)
		}
	}
}

// TestRunRedis runs against a server of the test's own, as -redis would
// against a real one, and checks that nothing is left behind.
func TestRunRedis(t *testing.T) {
	mr := miniredis.RunT(t)
	args := append(quick, "-format", "csv", "-samples", "small", "-redis", "redis://"+mr.Addr())
	rows := parseCSV(t, runOK(t, args...))
	checkRows(t, rows, []string{"small"}, []string{"msgpack", "json"})
	if n := mr.CommandCount(); n == 0 {
		t.Errorf("run(%q) sent %d commands to the server, want some", args, n)
	}
	if keys := mr.Keys(); len(keys) > 0 {
		t.Errorf("after run(%q) the server holds %q, want no keys", args, keys)
	}
}

func TestRunErrors(t *testing.T) {
	dir := t.TempDir()
	notJSON := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(notJSON, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		want string // in the error text
	}{
		{"bad format", []string{"-format", "xml"}, "-format"},
		{"missing input", []string{"-input", filepath.Join(dir, "missing.json")}, "-input"},
		{"input is a directory", []string{"-input", dir}, "-input"},
		{"input not JSON", []string{"-input", notJSON}, "not JSON"},
		{"negative threshold", []string{"-threshold", "-1"}, "-threshold"},
		{"min and ops", []string{"-min", "1s", "-ops", "3"}, "not both"},
		{"zero ops", []string{"-ops", "0"}, "-ops"},
		{"zero runs", []string{"-runs", "0"}, "-runs"},
		{"zero min", []string{"-min", "0s"}, "-min"},
		{"unknown sample", []string{"-samples", "small,huge"}, "huge"},
		{"samples and input", []string{"-samples", "small", "-input", "x.json"}, "not both"},
		{"unknown flag", []string{"-fast"}, "-fast"},
		{"extra argument", []string{"payload.json"}, "unexpected argument"},
		{"bad redis URL", []string{"-redis", "http://example.com"}, "-redis"},
		{"redis down", []string{"-redis", "redis://127.0.0.1:1"}, "ping"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			err := run(context.Background(), tt.args, &out)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("run(%q) = %v, want an error containing %q", tt.args, err, tt.want)
			}
		})
	}
}

func TestRunCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var out bytes.Buffer
	if err := run(ctx, quick, &out); err == nil {
		t.Errorf("run(cancelled ctx) = nil, want an error\noutput:\n%s", &out)
	}
}

func TestRunHelp(t *testing.T) {
	out := runOK(t, "-h")
	for _, want := range []string{"Usage: codecbench", "-input", "-format", "-runs", "-ops"} {
		if !strings.Contains(out, want) {
			t.Errorf("run(-h) output lacks %q\noutput:\n%s", want, out)
		}
	}
}

func TestSamples(t *testing.T) {
	if a, b := newSampleGen(1).orderPage(5), newSampleGen(1).orderPage(5); !reflect.DeepEqual(a, b) {
		t.Errorf("orderPage(5) differs between two generators of seed 1")
	}
	tests := []struct {
		name     string
		min, max int
	}{
		{"small", 150, 300},
		{"medium", 1536, 3 << 10},
		{"large", 48 << 10, 80 << 10},
	}
	ps := samples()
	if len(ps) != len(tests) {
		t.Fatalf("samples() = %d payloads, want %d", len(ps), len(tests))
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := ps[i]
			if p.name != tt.name || p.jsonSize < tt.min || p.jsonSize > tt.max {
				t.Errorf("samples()[%d] = %s of %d B as JSON, want %s of %d to %d B", i, p.name, p.jsonSize, tt.name, tt.min, tt.max)
			}
		})
	}
}

// checkRows checks that rows hold one row per payload, codec and
// compression, with sizes consistent with each other.
func checkRows(t *testing.T, rows []row, payloads, codecs []string) {
	t.Helper()
	for _, p := range payloads {
		n := 0
		for _, r := range rows {
			if r.payload == p {
				n++
			}
		}
		if want := len(codecs) * 2; n != want {
			t.Errorf("%s: got %d rows, want %d", p, n, want)
		}
		for _, cd := range codecs {
			for _, cp := range []string{"lz4", "none"} {
				r := find(t, rows, p, cd, cp)
				switch {
				case r.stored <= envelope.HeaderSize:
					t.Errorf("%s/%s/%s: stored %d B, want more than the %d-byte header", p, cd, cp, r.stored, envelope.HeaderSize)
				case r.encoded >= 0 && !r.compressed && r.stored != r.encoded+envelope.HeaderSize:
					t.Errorf("%s/%s/%s: stored %d B uncompressed, want encoded %d B + header", p, cd, cp, r.stored, r.encoded)
				case r.encoded >= 0 && r.compressed && r.stored >= r.encoded+envelope.HeaderSize:
					t.Errorf("%s/%s/%s: stored %d B compressed, want less than encoded %d B + header", p, cd, cp, r.stored, r.encoded)
				case cp == "none" && r.compressed:
					t.Errorf("%s/%s/none: compressed", p, cd)
				case r.roundTrip == 0:
					t.Errorf("%s/%s/%s: round trip not measured", p, cd, cp)
				}
			}
		}
	}
}

// find returns the row of payload p, codec cd and compression cp.
func find(t *testing.T, rows []row, p, cd, cp string) row {
	t.Helper()
	var found []row
	for _, r := range rows {
		if r.payload == p && r.codec == cd && r.compression == cp {
			found = append(found, r)
		}
	}
	if len(found) != 1 {
		t.Fatalf("found %d rows for %s/%s/%s, want 1", len(found), p, cd, cp)
	}
	return found[0]
}

// parseText reads the tables: a line "name: about" starts a payload, and
// rows follow the header line of its table.
func parseText(t *testing.T, out string) []row {
	t.Helper()
	var rows []row
	payload, inTable := "", false
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		switch {
		case len(f) == 0:
			inTable = false
		case strings.HasPrefix(l, "small:"), strings.HasPrefix(l, "medium:"), strings.HasPrefix(l, "large:"):
			payload, _, _ = strings.Cut(l, ":")
		case f[0] == "codec" && f[1] == "compression":
			inTable = true
		case inTable && strings.HasPrefix(l, "times:"):
			inTable = false
		case inTable:
			// codec, compression, stored, ratio, encode ±, allocs, decode ±, allocs, round trip ±, best...
			if len(f) < 12 {
				t.Fatalf("text row %q has %d fields, want at least 12", l, len(f))
			}
			rt, err := strconv.ParseFloat(f[10], 64)
			if err != nil {
				t.Fatalf("round trip %q: %v", f[10], err)
			}
			rows = append(rows, row{
				payload: payload, codec: f[0], compression: f[1],
				stored: atoi(t, f[2]), encoded: -1, compressed: f[3] != "1.00", roundTrip: rt,
			})
		}
	}
	return rows
}

var csvHeaderWant = []string{
	"payload", "type", "codec", "compression", "encoded_bytes", "stored_bytes", "compressed", "ratio",
	"encode_ns_per_op", "encode_low_ns", "encode_high_ns", "encode_allocs_per_op",
	"decode_ns_per_op", "decode_low_ns", "decode_high_ns", "decode_allocs_per_op",
	"round_trip_us_per_op", "round_trip_low_us", "round_trip_high_us",
	"smallest", "fastest_encode", "fastest_decode", "fastest_round_trip",
}

func parseCSV(t *testing.T, out string) []row {
	t.Helper()
	recs, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if err != nil {
		t.Fatalf("CSV output does not parse: %v\noutput:\n%s", err, out)
	}
	if len(recs) == 0 || !reflect.DeepEqual(recs[0], csvHeaderWant) {
		t.Fatalf("CSV header = %q, want %q", recs[:min(len(recs), 1)], csvHeaderWant)
	}
	var rows []row
	for _, r := range recs[1:] {
		for i, v := range r[7:19] {
			if _, err := strconv.ParseFloat(v, 64); err != nil {
				t.Errorf("CSV column %s = %q, want a number", csvHeaderWant[7+i], v)
			}
		}
		rt, _ := strconv.ParseFloat(r[16], 64)
		rows = append(rows, row{
			payload: r[0], codec: r[2], compression: r[3],
			encoded:    atoi(t, r[4]),
			stored:     atoi(t, r[5]),
			compressed: r[6] == "true",
			roundTrip:  rt,
		})
	}
	return rows
}

func parseJSON(t *testing.T, out string) []row {
	t.Helper()
	var o output
	dec := json.NewDecoder(strings.NewReader(out))
	if err := dec.Decode(&o); err != nil {
		t.Fatalf("JSON output does not decode: %v\noutput:\n%s", err, out)
	}
	if o.Threshold != 1024 || o.Runs != 2 || o.PerRun != "2 ops" || len(o.Payloads) == 0 {
		t.Errorf("JSON output = threshold %d, %d runs of %q, %d payloads; want 1024, 2 runs of \"2 ops\", some", o.Threshold, o.Runs, o.PerRun, len(o.Payloads))
	}
	var rows []row
	for _, p := range o.Payloads {
		for _, r := range p.Report.Results {
			if r.Encode.NsPerOp <= 0 || r.Decode.NsPerOp <= 0 {
				t.Errorf("%s/%s/%s: times %v ns, %v ns, want both > 0", p.Name, r.Codec, r.Compression, r.Encode.NsPerOp, r.Decode.NsPerOp)
			}
			rows = append(rows, row{
				payload: p.Name, codec: r.Codec, compression: r.Compression,
				encoded:    int64(r.EncodedBytes),
				stored:     int64(r.StoredBytes),
				compressed: r.Compressed,
				roundTrip:  r.RoundTrip.NsPerOp,
			})
		}
	}
	return rows
}

func atoi(t *testing.T, s string) int64 {
	t.Helper()
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		t.Fatalf("ParseInt(%q) = %v", s, err)
	}
	return n
}
