// Command compare runs the same cache workloads against cachemgr and the
// libraries a Go user would pick instead, on one real redis-server, and
// prints one table: ns/op, allocs/op, loader calls and time relative to
// cachemgr.
//
// It spawns redis-server on a free loopback port (or uses REDIS_URL, where
// it writes only keys with a per-run prefix and deletes them afterwards).
// It is a module of its own so that cachemgr never depends on its peers.
//
// Usage:
//
//	go run . [-markdown] [-benchtime 300ms] [-rounds 5] [-run regexp]
//
// -run matches "workload/library". The same benchmarks run under go test
// (go test -bench . -benchtime 300ms), where -cpuprofile works.
package main

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

func main() {
	testing.Init()
	markdown := flag.Bool("markdown", false, "print the table and notes as Markdown")
	benchtime := flag.String("benchtime", "300ms", "run time (or Nx count) of each benchmark")
	rounds := flag.Int("rounds", 5, "measure every row this many times, interleaved, and keep the median")
	run := flag.String("run", "", `run only rows whose "workload/library" matches this regexp`)
	flag.Parse()
	if err := flag.Set("test.benchtime", *benchtime); err != nil {
		fmt.Fprintln(os.Stderr, "compare: -benchtime:", err)
		os.Exit(2)
	}
	filter, err := regexp.Compile(*run)
	if err != nil {
		fmt.Fprintln(os.Stderr, "compare: -run:", err)
		os.Exit(2)
	}
	s, err := startServer()
	if err != nil {
		fmt.Fprintln(os.Stderr, "compare:", err)
		os.Exit(1)
	}
	if *rounds < 1 {
		fmt.Fprintln(os.Stderr, "compare: -rounds must be at least 1")
		os.Exit(2)
	}
	rows, err := measureAll(s, filter, *rounds, os.Stderr)
	if err != nil {
		s.close()
		fmt.Fprintln(os.Stderr, "compare:", err)
		os.Exit(1)
	}
	report(os.Stdout, s, rows, *benchtime, *rounds, *markdown)
	s.close()
}

// measureAll runs every workload on every library that has the API for it,
// rounds times, and keeps the median of each row. Rounds are interleaved,
// and each round starts the libraries at a different place in the list, so
// that a burst of noise on the machine does not land on one library only.
// Libraries other than cachemgr that lack the API get no row; their
// reasons are in the notes.
func measureAll(s *server, filter *regexp.Regexp, rounds int, progress io.Writer) ([]row, error) {
	ls := libs()
	// Which workloads each library runs, read from a probe instance.
	runsW := make([]map[string]bool, len(ls))
	for i, l := range ls {
		c, err := l.open(s, func(context.Context, string) (Item, error) { return item, nil })
		if err != nil {
			return nil, fmt.Errorf("open %s: %w", l.name, err)
		}
		runsW[i] = map[string]bool{}
		for _, w := range workloads() {
			runsW[i][w.name] = runs(l, c, w)
		}
		c.close()
	}
	var rows []row
	var results [][]testing.BenchmarkResult // per row, one per round
	for _, w := range workloads() {
		for i, l := range ls {
			if !filter.MatchString(w.name + "/" + l.name) {
				continue
			}
			r := row{workload: w.name, lib: l.name, stampede: w.stampede, libIndex: i}
			switch {
			case !runsW[i][w.name] && i == 0:
				r.na = l.na[w.name]
			case !runsW[i][w.name]:
				continue
			}
			rows = append(rows, r)
			results = append(results, nil)
		}
	}
	for round := range rounds {
		for _, w := range workloads() {
			// The rows of w, rotated by the round.
			var idx []int
			for j, r := range rows {
				if r.workload == w.name && r.na == "" {
					idx = append(idx, j)
				}
			}
			for k := range idx {
				j := idx[(k+round)%len(idx)]
				r := rows[j]
				fmt.Fprintf(progress, "round %d/%d  %-26s %-26s ", round+1, rounds, w.name, r.lib)
				res := testing.Benchmark(bench(s, ls[r.libIndex], w))
				if res.N == 0 {
					fmt.Fprintln(progress, "failed")
				} else {
					fmt.Fprintf(progress, "%s ns/op\n", formatNs(float64(res.T.Nanoseconds())/float64(res.N)))
				}
				results[j] = append(results[j], res)
			}
		}
	}
	for j := range rows {
		if rows[j].na == "" {
			rows[j].res, rows[j].spread, rows[j].failed = median(results[j])
		}
	}
	return rows, nil
}

// median returns the result with the median ns/op and the spread of all of
// them: (max - min) / median. Any failed round fails the row.
func median(rs []testing.BenchmarkResult) (testing.BenchmarkResult, float64, bool) {
	for _, r := range rs {
		if r.N == 0 {
			return r, 0, true
		}
	}
	nsop := func(r testing.BenchmarkResult) float64 { return float64(r.T.Nanoseconds()) / float64(r.N) }
	sorted := slices.SortedFunc(slices.Values(rs), func(a, b testing.BenchmarkResult) int {
		return cmp.Compare(nsop(a), nsop(b))
	})
	mid := sorted[len(sorted)/2]
	return mid, (nsop(sorted[len(sorted)-1]) - nsop(sorted[0])) / nsop(mid), false
}

// report prints the machine, the table, the versions and each library's
// setup.
func report(w io.Writer, s *server, rows []row, benchtime string, rounds int, markdown bool) {
	ls := libs()
	info := append(machine(s),
		fmt.Sprintf("benchtime %s per row, median of %d interleaved rounds (spread: (max-min)/median); parallel rows use %d goroutines per CPU; the stampede loader sleeps %v", benchtime, rounds, parallelism, stampedeDelay),
		"go-redis clients: ContextTimeoutEnabled: true (cachemgr's recommendation), other options default",
		fmt.Sprintf("value: the same Item struct everywhere, %d bytes as msgpack (sturdyc: JSON, its fixed record format)", itemSize()),
	)
	if markdown {
		for _, l := range info {
			fmt.Fprintf(w, "- %s\n", l)
		}
		fmt.Fprintln(w)
		writeMarkdown(w, rows)
		fmt.Fprintln(w)
		fmt.Fprintln(w, legend)
		fmt.Fprintln(w)
		fmt.Fprintln(w, "Versions:")
		fmt.Fprintln(w)
		for _, v := range versions(ls) {
			fmt.Fprintf(w, "- %s\n", v)
		}
		fmt.Fprintln(w)
		fmt.Fprintln(w, "Setup and rows a library has no API for:")
		fmt.Fprintln(w)
		for _, l := range ls {
			fmt.Fprintf(w, "- **%s**: %s.%s\n", l.name, l.setup, naNotes(l))
		}
		fmt.Fprintln(w)
		fmt.Fprintln(w, "Reproduce: `cd bench/compare && go run . -markdown`")
		return
	}
	for _, l := range info {
		fmt.Fprintln(w, l)
	}
	fmt.Fprintln(w)
	writeText(w, rows)
	fmt.Fprintln(w)
	fmt.Fprintln(w, strings.ReplaceAll(legend, "`", ""))
	fmt.Fprintln(w)
	fmt.Fprintln(w, "versions:")
	for _, v := range versions(ls) {
		fmt.Fprintln(w, "  "+v)
	}
	fmt.Fprintln(w)
	for _, l := range ls {
		fmt.Fprintf(w, "%s: %s.%s\n", l.name, l.setup, naNotes(l))
	}
}

// legend explains the columns.
const legend = "`ns/op` is wall time per op and `spread` its (max-min)/median over the rounds. `CPU ns/op` is this process's CPU time per op " +
	"(every thread, so background goroutines and GC count; redis-server does not): it ignores time spent waiting, though a busy machine inflates it too. " +
	"`vs cachemgr` is the library's number over cachemgr's in the same row group: below 1.00x the library is faster or cheaper. " +
	"`loader calls` is per stampede of 1,000 callers."

// naNotes lists the workloads l has no row for, with why.
func naNotes(l lib) string {
	var b []byte
	for _, w := range workloads() {
		if why, ok := l.na[w.name]; ok {
			b = fmt.Appendf(b, " No %s: %s.", w.name, why)
		}
	}
	return string(b)
}
