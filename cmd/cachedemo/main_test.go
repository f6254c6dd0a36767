package main

import (
	"bytes"
	"context"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cachemgr/cachemgr"
	"github.com/cachemgr/cachemgr/codec"
)

func TestRun(t *testing.T) {
	var out bytes.Buffer
	// A steep skew over 100 keys leaves few misses after the warm-up, so
	// the check is about the cache, not about how busy the machine is.
	args := []string{"-requests", "400", "-warmup", "400", "-workers", "4", "-keys", "100", "-zipf", "1.5", "-latency", "2ms"}
	if err := run(context.Background(), args, &out); err != nil {
		t.Fatalf("run(%q) = %v, want nil\noutput:\n%s", args, err, &out)
	}
	got := out.String()
	for _, want := range []string{
		"embedded miniredis", "report", "without cache", "warm-up", "with cache",
		"with cache vs without: p50 ", ", p99 ", "half of the requests took under",
		"negative hits", "redis errors",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("run(%q) output lacks %q\noutput:\n%s", args, want, got)
		}
	}

	// Every phase made exactly the requests asked for.
	for _, name := range []string{"without cache", "warm-up", "with cache"} {
		if n := parseNumber(t, got, `(?m)^  `+name+` +([0-9,]+) `); n != 400 {
			t.Errorf("%s requests = %v, want 400\noutput:\n%s", name, n, got)
		}
	}
	hitRatio := parseNumber(t, got, `(?m)^  with cache +[0-9,]+ .* ([0-9.]+)% +[0-9,]+$`)
	calls := parseNumber(t, got, `(?m)^  with cache +[0-9,]+ .* ([0-9,]+)$`)
	baseCalls := parseNumber(t, got, `(?m)^  without cache +[0-9,]+ .* ([0-9,]+)$`)
	if hitRatio <= 50 {
		t.Errorf("with cache hit ratio = %v%%, want > 50%%\noutput:\n%s", hitRatio, got)
	}
	if baseCalls != 400 || calls >= baseCalls {
		t.Errorf("repository calls = %v with cache, %v without; want 400 without and fewer with\noutput:\n%s", calls, baseCalls, got)
	}
	if strings.Contains(got, "  errors ") {
		t.Errorf("run(%q) reported errors\noutput:\n%s", args, got)
	}
}

// TestExplain checks that the sentence names what sets the p99: loads
// while at least 1% of requests miss, hits below that.
func TestExplain(t *testing.T) {
	ms := func(n ...float64) []time.Duration {
		var out []time.Duration
		for _, x := range n {
			out = append(out, time.Duration(x*float64(time.Millisecond)))
		}
		return out
	}
	base := phase{name: "without cache", requests: 4, lat: ms(20, 20, 21, 22), loaderCalls: 4}
	warmup := phase{requests: 4, lat: ms(0.2, 25, 25, 30), stats: cachemgr.Stats{Hits: 1, Misses: 3}}
	tests := []struct {
		name           string
		warmup, cached phase
		want           []string
		not            []string
	}{
		{
			name:   "misses set the p99",
			warmup: warmup,
			cached: phase{requests: 4, lat: ms(0.2, 0.3, 0.4, 25), loadLat: ms(25), loaderCalls: 1,
				stats: cachemgr.Stats{Hits: 3, Misses: 1}},
			want: []string{"under 0.300ms instead of 20.000ms", "75.0% of them were hits", "called 1 times instead of 4",
				"The p99 is not a hit: 25.0% of requests still missed", "a median of 25.000ms",
				"25.000ms with the cache against 22.000ms without", "With the cache warm,",
				"reported apart (25.0% hits, p99 30.000ms)"},
			not: []string{"falls too", "machine is busy"},
		},
		{
			name:   "no warm-up",
			cached: phase{requests: 4, lat: ms(0.2, 0.3, 0.4, 0.5), stats: cachemgr.Stats{Hits: 4}},
			want:   []string{"With the cache, which started empty (-warmup 0), half"},
			not:    []string{"With the cache warm"},
		},
		{
			name:   "no misses",
			cached: phase{requests: 4, lat: ms(0.2, 0.3, 0.4, 0.5), stats: cachemgr.Stats{Hits: 4}},
			want:   []string{"100.0% of them were hits", "The p99 falls too (0.500ms against 22.000ms)"},
			not:    []string{"not a hit"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := explain(reportData{cfg: config{latency: 20 * time.Millisecond}, base: base, warmup: tt.warmup, cached: tt.cached})
			for _, w := range tt.want {
				if !strings.Contains(got, w) {
					t.Errorf("explain() = %q, want it to contain %q", got, w)
				}
			}
			for _, w := range tt.not {
				if strings.Contains(got, w) {
					t.Errorf("explain() = %q, want it without %q", got, w)
				}
			}
		})
	}
}

func TestRatio(t *testing.T) {
	tests := []struct {
		before, after time.Duration
		want          string
	}{
		{20 * time.Millisecond, 10 * time.Millisecond, "2.0x faster"},
		{10 * time.Millisecond, 30 * time.Millisecond, "3.0x slower"},
		{0, time.Millisecond, "n/a"},
	}
	for _, tt := range tests {
		if got := ratio(tt.before, tt.after); got != tt.want {
			t.Errorf("ratio(%v, %v) = %q, want %q", tt.before, tt.after, got, tt.want)
		}
	}
}

// parseNumber returns the number that the first group of pattern matches
// in s, thousands separators removed.
func parseNumber(t *testing.T, s, pattern string) float64 {
	t.Helper()
	m := regexp.MustCompile(pattern).FindStringSubmatch(s)
	if m == nil {
		t.Fatalf("output does not match %s\noutput:\n%s", pattern, s)
	}
	n, err := strconv.ParseFloat(strings.ReplaceAll(m[1], ",", ""), 64)
	if err != nil {
		t.Fatalf("ParseFloat(%q) = %v", m[1], err)
	}
	return n
}

// TestRunInterrupted stands in for Ctrl-C: the run ends early, without an
// error, and still prints the report.
func TestRunInterrupted(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	var out bytes.Buffer
	args := []string{"-requests", "100000000", "-workers", "4", "-keys", "100", "-latency", "1ms"}
	start := time.Now()
	if err := run(ctx, args, &out); err != nil {
		t.Fatalf("run(%q) = %v, want nil\noutput:\n%s", args, err, &out)
	}
	if took := time.Since(start); took > 30*time.Second {
		t.Errorf("run(%q) took %v after the interrupt, want it to stop early", args, took)
	}
	for _, want := range []string{"interrupted", "without cache"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("run(%q) output lacks %q\noutput:\n%s", args, want, &out)
		}
	}
}

func TestRunBadFlags(t *testing.T) {
	tests := []struct {
		name string
		args []string
	}{
		{"no workers", []string{"-workers", "0"}},
		{"not a number", []string{"-workers", "many"}},
		{"no requests", []string{"-requests", "0"}},
		{"negative warmup", []string{"-warmup", "-1"}},
		{"negative latency", []string{"-latency", "-1ms"}},
		{"no keys", []string{"-keys", "0"}},
		{"zipf not above 1", []string{"-zipf", "1"}},
		{"zero ttl", []string{"-ttl", "0s"}},
		{"unknown flag", []string{"-nope"}},
		{"extra argument", []string{"extra"}},
		{"bad redis url", []string{"-redis", "http://127.0.0.1:6379"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			if err := run(context.Background(), tt.args, &out); err == nil {
				t.Errorf("run(%q) = nil, want an error\noutput:\n%s", tt.args, &out)
			}
		})
	}
}

func TestRunHelp(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"-h"}, &out); err != nil {
		t.Fatalf("run(-h) = %v, want nil", err)
	}
	if !strings.Contains(out.String(), "-workers") {
		t.Errorf("run(-h) output = %q, want the flag list", &out)
	}
}

// TestProductSize keeps the fake products the size the demo claims.
func TestProductSize(t *testing.T) {
	for _, id := range []int64{1, 42, 9999} {
		b, err := codec.Msgpack().Append(nil, makeProduct(id))
		if err != nil {
			t.Fatalf("Msgpack().Append(makeProduct(%d)) error: %v", id, err)
		}
		if len(b) < 300 || len(b) > 500 {
			t.Errorf("len(Msgpack().Append(makeProduct(%d))) = %d, want 300 to 500", id, len(b))
		}
	}
}
