package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
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

// The tests run the command with -rounds 2: every measurement runs twice,
// enough to check the plumbing in well under a second per run. They do not
// run in parallel, since testing.Benchmark's run length is process-wide.

// row is what the tests check of one output row, whatever the format.
// encoded is -1 when the format does not show it.
type row struct {
	payload, codec, compression string
	stored, encoded             int64
	compressed                  bool
	smallest, fastest           bool
}

func runOK(t *testing.T, args ...string) string {
	t.Helper()
	var out bytes.Buffer
	if err := run(context.Background(), args, &out); err != nil {
		t.Fatalf("run(%q) = %v, want nil\noutput:\n%s", args, err, &out)
	}
	return out.String()
}

func TestRunFormats(t *testing.T) {
	tests := []struct {
		format string
		parse  func(t *testing.T, out string) []row
	}{
		{"text", parseText},
		{"csv", parseCSV},
		{"json", parseJSON},
	}
	for _, tt := range tests {
		t.Run(tt.format, func(t *testing.T) {
			out := runOK(t, "-rounds", "2", "-format", tt.format)
			rows := tt.parse(t, out)
			checkRows(t, rows, []string{"small", "medium", "large"}, []string{"msgpack", "json"})
			for _, cd := range []string{"msgpack", "json"} {
				lz4, none := find(t, rows, "large", cd, "lz4"), find(t, rows, "large", cd, "none")
				if lz4.stored >= none.stored {
					t.Errorf("large/%s: lz4 stored %d B, want less than none's %d B", cd, lz4.stored, none.stored)
				}
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

	out := runOK(t, "-rounds", "2", "-format", "csv", "-input", path)
	rows := parseCSV(t, out)
	checkRows(t, rows, []string{"payload.json"}, []string{"msgpack", "json", "raw"})
	if got, want := find(t, rows, "payload.json", "raw", "none").stored, int64(len(data)+envelope.HeaderSize); got != want {
		t.Errorf("raw/none stored = %d B, want the file's %d B plus the header", got, want)
	}
	if got, limit := find(t, rows, "payload.json", "raw", "lz4").stored, int64(len(data)+envelope.HeaderSize); got >= limit {
		t.Errorf("raw/lz4 stored = %d B, want less than %d B", got, limit)
	}
	if t.Failed() {
		t.Logf("output:\n%s", out)
	}
}

// TestRunRedis runs against a server of the test's own, as -redis would
// against a real one, and checks that nothing is left behind.
func TestRunRedis(t *testing.T) {
	mr := miniredis.RunT(t)
	args := []string{"-rounds", "2", "-format", "csv", "-redis", "redis://" + mr.Addr()}
	rows := parseCSV(t, runOK(t, args...))
	checkRows(t, rows, []string{"small", "medium", "large"}, []string{"msgpack", "json"})
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
		{"min and rounds", []string{"-min", "1s", "-rounds", "3"}, "not both"},
		{"zero rounds", []string{"-rounds", "0"}, "-rounds"},
		{"zero min", []string{"-min", "0s"}, "-min"},
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

func TestRunHelp(t *testing.T) {
	out := runOK(t, "-h")
	for _, want := range []string{"Usage: codecbench", "-input", "-format", "-rounds"} {
		if !strings.Contains(out, want) {
			t.Errorf("run(-h) output lacks %q\noutput:\n%s", want, out)
		}
	}
}

// TestRunRestoresBenchtime checks that the run length given to
// testing.Benchmark is put back, since it is process-wide.
func TestRunRestoresBenchtime(t *testing.T) {
	before := flag.Lookup("test.benchtime").Value.String()
	runOK(t, "-rounds", "2", "-input", writeTemp(t, `{"a":1}`))
	if after := flag.Lookup("test.benchtime").Value.String(); after != before {
		t.Errorf("test.benchtime after run = %q, want %q", after, before)
	}
}

func TestBenchmarkError(t *testing.T) {
	restore, err := setBenchtime("3x")
	if err != nil {
		t.Fatal(err)
	}
	defer restore()
	errOp := errors.New("op failed")
	calls := 0
	_, err = benchmark(context.Background(), func() error {
		calls++
		if calls == 2 {
			return errOp
		}
		return nil
	})
	if !errors.Is(err, errOp) {
		t.Errorf("benchmark(op failing on call 2) = %v, want %v", err, errOp)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := benchmark(ctx, func() error { return nil }); !errors.Is(err, context.Canceled) {
		t.Errorf("benchmark(cancelled ctx) = %v, want %v", err, context.Canceled)
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

func writeTemp(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "in.json")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// checkRows checks that rows hold one row per payload, codec and
// compression, with sizes consistent with each other and the best of each
// payload marked.
func checkRows(t *testing.T, rows []row, payloads, codecs []string) {
	t.Helper()
	if want := len(payloads) * len(codecs) * 2; len(rows) != want {
		t.Errorf("got %d rows, want %d", len(rows), want)
	}
	for _, p := range payloads {
		smallest, fastest := 0, 0
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
				}
				if r.smallest {
					smallest++
				}
				if r.fastest {
					fastest++
				}
			}
		}
		if smallest == 0 || fastest != 1 {
			t.Errorf("%s: %d rows marked smallest and %d fastest, want at least 1 and exactly 1", p, smallest, fastest)
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

var textHeaderRE = regexp.MustCompile(`^ *payload +codec +compression +stored B +ratio +encode ns/op +encode allocs +decode ns/op +decode allocs +round trip µs/op +best$`)

func parseText(t *testing.T, out string) []row {
	t.Helper()
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	header := -1
	for i, l := range lines {
		if textHeaderRE.MatchString(l) {
			header = i
			break
		}
	}
	if header < 0 {
		t.Fatalf("text output has no header row matching %s\noutput:\n%s", textHeaderRE, out)
	}
	var rows []row
	for _, l := range lines[header+1:] {
		f := strings.Fields(l)
		if len(f) < 10 {
			t.Fatalf("text row %q has %d fields, want at least 10", l, len(f))
		}
		best := strings.Join(f[10:], " ")
		rows = append(rows, row{
			payload: f[0], codec: f[1], compression: f[2],
			stored:     atoi(t, f[3]),
			encoded:    -1,
			compressed: f[4] != "1.00",
			smallest:   strings.Contains(best, "smallest"),
			fastest:    strings.Contains(best, "fastest"),
		})
	}
	return rows
}

func parseCSV(t *testing.T, out string) []row {
	t.Helper()
	recs, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if err != nil {
		t.Fatalf("CSV output does not parse: %v\noutput:\n%s", err, out)
	}
	wantHeader := []string{
		"payload", "codec", "compression", "encoded_bytes", "stored_bytes", "compressed", "ratio",
		"encode_ns_per_op", "encode_allocs_per_op", "decode_ns_per_op", "decode_allocs_per_op",
		"round_trip_us_per_op", "smallest", "fastest",
	}
	if len(recs) == 0 || !reflect.DeepEqual(recs[0], wantHeader) {
		t.Fatalf("CSV header = %q, want %q", recs[:min(len(recs), 1)], wantHeader)
	}
	var rows []row
	for _, r := range recs[1:] {
		for i, v := range r[6:12] {
			if _, err := strconv.ParseFloat(v, 64); err != nil {
				t.Errorf("CSV column %s = %q, want a number", wantHeader[6+i], v)
			}
		}
		rows = append(rows, row{
			payload: r[0], codec: r[1], compression: r[2],
			encoded:    atoi(t, r[3]),
			stored:     atoi(t, r[4]),
			compressed: r[5] == "true",
			smallest:   r[12] == "true",
			fastest:    r[13] == "true",
		})
	}
	return rows
}

func parseJSON(t *testing.T, out string) []row {
	t.Helper()
	var rep report
	dec := json.NewDecoder(strings.NewReader(out))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rep); err != nil {
		t.Fatalf("JSON output does not decode: %v\noutput:\n%s", err, out)
	}
	if rep.Threshold != 1024 || rep.Benchtime != "2x" || len(rep.Payloads) == 0 {
		t.Errorf("JSON report = threshold %d, benchtime %q, %d payloads; want 1024, \"2x\", some", rep.Threshold, rep.Benchtime, len(rep.Payloads))
	}
	var rows []row
	for _, r := range rep.Results {
		if r.EncodeNs <= 0 || r.DecodeNs <= 0 || r.RoundTripUs <= 0 {
			t.Errorf("%s/%s/%s: times %v ns, %v ns, %v µs, want all > 0", r.Payload, r.Codec, r.Compression, r.EncodeNs, r.DecodeNs, r.RoundTripUs)
		}
		rows = append(rows, row{
			payload: r.Payload, codec: r.Codec, compression: r.Compression,
			encoded:    int64(r.EncodedBytes),
			stored:     r.StoredBytes,
			compressed: r.Compressed,
			smallest:   r.Smallest,
			fastest:    r.Fastest,
		})
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
