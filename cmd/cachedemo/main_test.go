package main

import (
	"bytes"
	"context"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cachemgr/cachemgr/codec"
)

func TestRun(t *testing.T) {
	var out bytes.Buffer
	// At the default skew (1.1) the hit ratio after 300ms is about 70%,
	// bounded by how many of the 100 keys the run has not loaded yet, and
	// falls towards 50% when the machine is busy (go test -race ./... runs
	// packages in parallel). A steeper skew keeps the check about the cache.
	args := []string{"-duration", "300ms", "-baseline", "100ms", "-workers", "4", "-keys", "100", "-zipf", "1.5"}
	if err := run(context.Background(), args, &out); err != nil {
		t.Fatalf("run(%q) = %v, want nil\noutput:\n%s", args, err, &out)
	}
	got := out.String()
	for _, want := range []string{
		"embedded miniredis", "report", "throughput", "hit ratio", "loader calls",
		"negative hits", "redis errors", "without cache", "with cache", "p50 speedup",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("run(%q) output lacks %q\noutput:\n%s", args, want, got)
		}
	}

	hitRatio := parseNumber(t, got, `(?m)^  hit ratio +([0-9.]+)%$`)
	requests := parseNumber(t, got, `(?m)^  requests +([0-9,]+) in `)
	loaderCalls := parseNumber(t, got, `(?m)^  loader calls +([0-9,]+) `)
	if hitRatio <= 50 {
		t.Errorf("hit ratio = %v%%, want > 50%%\noutput:\n%s", hitRatio, got)
	}
	if loaderCalls >= requests {
		t.Errorf("loader calls = %v, want < requests (%v)\noutput:\n%s", loaderCalls, requests, got)
	}
	if strings.Contains(got, "  errors ") {
		t.Errorf("run(%q) reported errors\noutput:\n%s", args, got)
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
	args := []string{"-duration", "1m", "-baseline", "100ms", "-workers", "4", "-keys", "100"}
	start := time.Now()
	if err := run(ctx, args, &out); err != nil {
		t.Fatalf("run(%q) = %v, want nil\noutput:\n%s", args, err, &out)
	}
	if took := time.Since(start); took > 30*time.Second {
		t.Errorf("run(%q) took %v after the interrupt, want it to stop early", args, took)
	}
	for _, want := range []string{"interrupted", "hit ratio", "p50 speedup"} {
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
		{"zero duration", []string{"-duration", "0s"}},
		{"negative baseline", []string{"-baseline", "-1s"}},
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
