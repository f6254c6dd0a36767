// Command codecbench answers "which codec and compression should I use for
// my payloads?" for cachemgr.
//
// It stores each payload through a cachemgr.Manager with every pair of codec
// (msgpack, json; raw where the type is bytes) and compression (lz4, none),
// reads back what Redis holds, and times each pair. Without flags it runs on
// three built-in samples, Go structs generated from a fixed seed so that
// every run measures the same bytes: "small", a catalogue product of about
// 200 bytes as JSON; "medium", an order of about 2 KiB with a customer,
// lines, prices and timestamps; and "large", a page of 50 such orders, about
// 64 KiB:
//
//	go run ./cmd/codecbench
//
// -samples picks some of them, such as -samples small,medium.
//
// The answer depends on the Go type the values decode into, so the best
// measurement is of your own type, from a test of yours, with the codectest
// package this command is built on (see its documentation):
//
//	func BenchmarkProductCodecs(b *testing.B) { codectest.Run(b, sampleProduct()) }
//
// Without Go code at hand, -input measures a JSON document: it is decoded
// into an any (maps, slices, float64 numbers) and measured as that, which
// is slower to decode than a struct and favours msgpack less than your type
// would; the report says so. Its bytes are also measured as they are, with
// the raw codec, as a Cache[[]byte] that serves the JSON unchanged would
// store them:
//
//	go run ./cmd/codecbench -input payload.json -format csv
//
// It runs on an embedded miniredis by default; -redis redis://host:port
// measures against a real server, which gives realistic round-trip times.
// Keys are written under a prefix of their own, "codectest-" and a random
// suffix, and deleted at the end.
//
// # Reading the table
//
// There is one table per payload and one row per codec and compression:
//
//   - stored B: the length of the value in Redis, read back after a Set,
//     header included. This is the memory that the choice saves or costs,
//     per key.
//   - ratio: the codec's output over the stored payload, header excluded.
//     1.00 means stored uncompressed: compression none, a payload under the
//     -threshold (default 1024 bytes, the library's default), or one lz4
//     could not shrink. msgpack writes map entries in Go's random map
//     order, so its lz4 sizes can differ by a few bytes between runs.
//   - encode ns/op and allocs: the codec's Append plus compression, as
//     Cache.Set does them before talking to Redis. decode ns/op and allocs:
//     decompression plus the codec's Unmarshal into a new value of the
//     payload's type, as Cache.Get does after. CPU costs per call.
//   - round trip µs/op: one Cache.Set then one Cache.Get of the same key
//     against Redis, the full cost a caller sees. On the embedded miniredis
//     it includes loopback TCP and a Go server; compare rows with each
//     other rather than reading the numbers as production latency.
//   - best: "smallest" marks the smallest stored size (every row that
//     ties); "fastest encode", "fastest decode" and "fastest round trip"
//     mark a row only when it beat every other row run by run, by more
//     than the noise: the 95% confidence interval of the per-run ratio of
//     the two times lies wholly in its favour. No mark means the rows are
//     within the noise of each other (or there were fewer than 6 runs).
//
// Every time is the median of -runs runs (default 10), followed by the
// distance to the farther end of its 95% confidence interval, read off the
// sorted runs as benchstat does. The runs take turns between the rows, so
// a busy moment of the machine falls on all of them. Each run times each
// operation for about -min (default 10ms); -ops N times exactly N
// operations instead, for a quick look.
//
// -format csv and -format json print the same rows for a spreadsheet or a
// script, with the encoded size before compression, whether the stored
// payload is compressed, and the confidence interval of every time.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/cachemgr/cachemgr/codec"
	"github.com/cachemgr/cachemgr/codectest"
	"github.com/cachemgr/cachemgr/internal/demoredis"
	"github.com/redis/go-redis/v9"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	err := run(ctx, os.Args[1:], os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "codecbench:", err)
		os.Exit(1)
	}
}

// config is the parsed command line.
type config struct {
	input     string
	samples   []string // built-in samples to run; nil: all
	format    string
	threshold int
	runs      int
	block     time.Duration
	ops       int            // 0: sized by block
	redis     *redis.Options // nil: embedded miniredis
}

// parseFlags parses args. -h prints the usage to stdout and returns
// flag.ErrHelp.
func parseFlags(args []string, stdout io.Writer) (config, error) {
	fs := flag.NewFlagSet("codecbench", flag.ContinueOnError)
	// Errors are returned, not printed: main prints them once, on stderr.
	fs.SetOutput(io.Discard)
	var cfg config
	fs.StringVar(&cfg.input, "input", "", "JSON `file` to measure instead of the built-in samples")
	samples := fs.String("samples", "small,medium,large", "built-in samples to measure, comma-separated")
	fs.StringVar(&cfg.format, "format", "text", "output format: text, csv or json")
	fs.IntVar(&cfg.threshold, "threshold", 1024, "compression threshold in bytes, as cachemgr.WithCompressThreshold")
	fs.IntVar(&cfg.runs, "runs", 10, "times every measurement is repeated; the report gives the median and its confidence interval")
	fs.DurationVar(&cfg.block, "min", 10*time.Millisecond, "time each run spends on each measurement")
	fs.IntVar(&cfg.ops, "ops", 0, "time exactly `n` operations per run instead of -min")
	url := fs.String("redis", "", "Redis `URL`, such as redis://127.0.0.1:6379 (default: embedded miniredis)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(stdout, "Usage: codecbench [flags]\n\nFlags:\n")
			fs.SetOutput(stdout)
			fs.PrintDefaults()
		}
		return config{}, err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	switch {
	case fs.NArg() > 0:
		return config{}, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	case cfg.format != "text" && cfg.format != "csv" && cfg.format != "json":
		return config{}, fmt.Errorf("-format %q: want text, csv or json", cfg.format)
	case cfg.threshold < 0:
		return config{}, fmt.Errorf("-threshold %d: want >= 0", cfg.threshold)
	case cfg.runs < 1:
		return config{}, fmt.Errorf("-runs %d: want at least 1", cfg.runs)
	case set["min"] && set["ops"]:
		return config{}, errors.New("-min and -ops: give one, not both")
	case cfg.block <= 0:
		return config{}, fmt.Errorf("-min %v: want > 0", cfg.block)
	case cfg.ops < 0 || set["ops"] && cfg.ops == 0:
		return config{}, fmt.Errorf("-ops %d: want at least 1", cfg.ops)
	}
	for _, name := range strings.Split(*samples, ",") {
		if !slices.Contains(sampleNames, name) {
			return config{}, fmt.Errorf("-samples: unknown sample %q (want %s)", name, strings.Join(sampleNames, ", "))
		}
		cfg.samples = append(cfg.samples, name)
	}
	if set["samples"] && set["input"] {
		return config{}, errors.New("-samples and -input: give one, not both")
	}
	if *url != "" {
		opts, err := redis.ParseURL(*url)
		if err != nil {
			return config{}, fmt.Errorf("-redis: %w", err)
		}
		cfg.redis = opts
	}
	return cfg, nil
}

// payload is one value to measure.
type payload struct {
	name string
	// about says what the payload is, and how it is measured when that is
	// not the obvious way.
	about string
	// jsonSize is the size of the payload as JSON, to tell the reader what
	// "small" means.
	jsonSize int
	measure  func(ctx context.Context, opts []codectest.Option) (*codectest.Report, error)
}

// typed returns the payload v, measured as its own type T.
func typed[T any](name, about string, v T) payload {
	js, _ := json.Marshal(v) // the size is only informative
	return payload{
		name:     name,
		about:    about,
		jsonSize: len(js),
		measure: func(ctx context.Context, opts []codectest.Option) (*codectest.Report, error) {
			return codectest.Measure(ctx, v, opts...)
		},
	}
}

// run is the command; main only adds signal handling and the exit code.
func run(ctx context.Context, args []string, stdout io.Writer) error {
	cfg, err := parseFlags(args, stdout)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	payloads, err := loadPayloads(cfg.input, cfg.samples)
	if err != nil {
		return err
	}
	rdb, where, closeRedis, err := demoredis.Connect(ctx, cfg.redis, 0)
	if err != nil {
		return err
	}
	defer closeRedis()

	opts := []codectest.Option{codectest.Redis(rdb), codectest.Threshold(cfg.threshold), codectest.Runs(cfg.runs)}
	block := cfg.block.String()
	if cfg.ops > 0 {
		opts = append(opts, codectest.Ops(cfg.ops))
		block = fmt.Sprintf("%d ops", cfg.ops)
	} else {
		opts = append(opts, codectest.BlockTime(cfg.block))
	}
	out := output{Redis: where, Threshold: cfg.threshold, Runs: cfg.runs, PerRun: block}
	for _, p := range payloads {
		rep, err := p.measure(ctx, opts)
		if err != nil {
			return fmt.Errorf("%s: %w", p.name, err)
		}
		out.Payloads = append(out.Payloads, measured{Name: p.name, About: p.about, JSONBytes: p.jsonSize, Report: rep})
	}
	switch cfg.format {
	case "csv":
		return writeCSV(stdout, out)
	case "json":
		return writeJSON(stdout, out)
	}
	return writeText(stdout, out)
}

// loadPayloads returns the built-in samples called names, or the JSON
// document in the file input: as an any, and as its bytes.
func loadPayloads(input string, names []string) ([]payload, error) {
	if input == "" {
		var ps []payload
		for _, p := range samples() {
			if slices.Contains(names, p.name) {
				ps = append(ps, p)
			}
		}
		return ps, nil
	}
	data, err := os.ReadFile(input)
	if err != nil {
		return nil, fmt.Errorf("-input: %w", err)
	}
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		return nil, fmt.Errorf("-input %s: not JSON: %w", input, err)
	}
	base := filepath.Base(input)
	asAny := payload{
		name: base + " as any",
		about: "the document decoded into an any (map[string]any, []any, float64), not into your type: " +
			"decoding into a struct is faster, and msgpack gains more from it than json does, " +
			"so measure your own type with codectest.Run or codectest.Measure before you choose",
		jsonSize: len(data),
		measure: func(ctx context.Context, opts []codectest.Option) (*codectest.Report, error) {
			return codectest.Measure(ctx, v, opts...)
		},
	}
	asBytes := payload{
		name: base + " as bytes",
		about: "the file's bytes stored as they are (a Cache[[]byte] with codec.Raw): " +
			"only for serving the JSON unchanged; decoding it is then the caller's cost",
		jsonSize: len(data),
		measure: func(ctx context.Context, opts []codectest.Option) (*codectest.Report, error) {
			return codectest.Measure(ctx, data, append(opts, codectest.Codecs(codec.Raw()))...)
		},
	}
	return []payload{asAny, asBytes}, nil
}
