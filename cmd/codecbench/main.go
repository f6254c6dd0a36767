// Command codecbench answers "which codec and compression should I use for
// my payloads?" for cachemgr.
//
// It stores each payload through a cachemgr.Manager for every pair of codec
// (msgpack, json) and compression (lz4, none), and reports what each pair
// costs in Redis memory and in time. Without flags it runs on three
// built-in samples, generated from a fixed seed so that every run measures
// the same bytes: "small", a catalogue product of about 200 bytes as JSON;
// "medium", an order of about 2 KiB with a customer, lines, prices and
// timestamps; and "large", a page of such orders of about 64 KiB:
//
//	go run ./cmd/codecbench
//
// To measure your own payload, save a typical value as JSON and pass it with
// -input. It is decoded into an any (maps, slices, float64 numbers) and
// benchmarked as that with msgpack and json, and its bytes are also stored
// as they are with the raw codec, as a Cache[[]byte] using codec.Raw would:
//
//	go run ./cmd/codecbench -input payload.json -format csv
//
// Decoding into an any costs more than into your own struct type, so for
// the final choice between msgpack and json compare the built-in samples
// too, which decode into structs.
//
// It runs on an embedded miniredis by default; -redis redis://host:port
// measures against a real server, which gives realistic round-trip times.
// Keys are written under a prefix of their own, "codecbench-" and a random
// suffix, and deleted at the end.
//
// # Reading the table
//
// There is one row per payload, codec and compression:
//
//   - stored B: the length of the value in Redis, read back after a Set,
//     with the 16-byte header cachemgr puts before every payload. This is
//     the memory that the choice saves or costs, per key.
//   - ratio: the codec's output over the stored payload, header excluded.
//     1.00 means stored uncompressed: compression none, a payload under the
//     -threshold (default 1024 bytes, the library's default), or one lz4
//     could not shrink. msgpack writes map entries in Go's random map
//     order, so its lz4 sizes can differ by a few bytes between runs.
//   - encode ns/op and allocs: the codec's Append plus compression, as
//     Cache.Set does them before talking to Redis. decode ns/op and allocs:
//     decompression plus the codec's Unmarshal into a new value, as
//     Cache.Get does after. These are CPU costs per call, without Redis.
//   - round trip µs/op: one Cache.Set then one Cache.Get of the same key
//     against Redis, the full cost a caller sees. On the embedded miniredis
//     it includes loopback TCP and a Go server; compare rows with each
//     other rather than reading the numbers as production latency.
//   - best: "smallest" marks the smallest stored size of the payload (every
//     row that ties), "fastest" the fastest round trip.
//
// A raw row's decode gives back the bytes, not a decoded value: it is the
// right comparison only when the bytes are what you serve.
//
// Timings come from testing.Benchmark, so they are averages over many calls
// with allocations counted. Each measurement runs for -min (default
// 400ms), which keeps a run on the built-in samples under half a minute;
// -rounds N runs each exactly N times instead, for a quick look. Round
// trips that differ by a few percent are within the noise of one run.
//
// -format csv and -format json print the same rows for a spreadsheet or a
// script, with two more columns: the encoded size before compression, and
// whether the stored payload is compressed. The JSON form also records the
// settings and each payload's size as JSON.
package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"time"

	"github.com/cachemgr/cachemgr"
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
	format    string
	threshold int
	benchtime string         // for testing.Benchmark: a duration, or "Nx"
	redis     *redis.Options // nil: embedded miniredis
}

// parseFlags parses args. -h prints the usage to stdout and returns
// flag.ErrHelp.
func parseFlags(args []string, stdout io.Writer) (config, error) {
	fs := flag.NewFlagSet("codecbench", flag.ContinueOnError)
	// Errors are returned, not printed: main prints them once, on stderr.
	fs.SetOutput(io.Discard)
	var cfg config
	fs.StringVar(&cfg.input, "input", "", "JSON `file` to benchmark instead of the built-in samples")
	fs.StringVar(&cfg.format, "format", "text", "output format: text, csv or json")
	fs.IntVar(&cfg.threshold, "threshold", 1024, "compression threshold in bytes, as cachemgr.WithCompressThreshold")
	minTime := fs.Duration("min", 400*time.Millisecond, "time to run each measurement for")
	rounds := fs.Int("rounds", 0, "run each measurement exactly `n` times instead of for -min")
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
	case set["min"] && set["rounds"]:
		return config{}, errors.New("-min and -rounds: give one, not both")
	case *minTime <= 0:
		return config{}, fmt.Errorf("-min %v: want > 0", *minTime)
	case *rounds < 0 || set["rounds"] && *rounds == 0:
		return config{}, fmt.Errorf("-rounds %d: want at least 1", *rounds)
	}
	cfg.benchtime = minTime.String()
	if *rounds > 0 {
		cfg.benchtime = fmt.Sprintf("%dx", *rounds)
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

// run is the command; main only adds signal handling and the exit code.
func run(ctx context.Context, args []string, stdout io.Writer) error {
	cfg, err := parseFlags(args, stdout)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	payloads, err := loadPayloads(cfg.input)
	if err != nil {
		return err
	}
	restore, err := setBenchtime(cfg.benchtime)
	if err != nil {
		return err
	}
	defer restore()

	rdb, where, closeRedis, err := demoredis.Connect(ctx, cfg.redis, 0)
	if err != nil {
		return err
	}
	defer closeRedis()

	bn := &bench{
		rdb:       rdb,
		prefix:    "codecbench-" + strings.ToLower(rand.Text()[:10]),
		threshold: cfg.threshold,
		managers:  map[[2]string]*cachemgr.Manager{},
	}
	rows, err := measureAll(ctx, bn, payloads)
	bn.close()
	if cerr := bn.cleanup(ctx); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	markBest(rows)

	rep := report{
		Redis:     where,
		Threshold: cfg.threshold,
		Benchtime: cfg.benchtime,
		Results:   rows,
	}
	for _, p := range payloads {
		rep.Payloads = append(rep.Payloads, payloadInfo{Name: p.name, JSONBytes: p.jsonSize})
	}
	switch cfg.format {
	case "csv":
		return writeCSV(stdout, rows)
	case "json":
		return writeJSON(stdout, rep)
	}
	return writeText(stdout, rep)
}

// loadPayloads returns the built-in samples, or the JSON document in the
// file input.
func loadPayloads(input string) ([]payload, error) {
	if input == "" {
		return samples(), nil
	}
	data, err := os.ReadFile(input)
	if err != nil {
		return nil, fmt.Errorf("-input: %w", err)
	}
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		return nil, fmt.Errorf("-input %s: not JSON: %w", input, err)
	}
	return []payload{document(filepath.Base(input), data, v)}, nil
}

func measureAll(ctx context.Context, bn *bench, payloads []payload) ([]result, error) {
	var all []result
	for _, p := range payloads {
		rows, err := p.measure(ctx, bn)
		if err != nil {
			return nil, err
		}
		all = append(all, rows...)
	}
	return all, nil
}
