package main

import (
	"context"
	"os"
	"os/exec"
	"testing"
)

// testServer is the redis-server that the tests and benchmarks of this
// package share; nil when none could be started.
var testServer *server

func TestMain(m *testing.M) {
	_, err := exec.LookPath("redis-server")
	if err == nil || os.Getenv("REDIS_URL") != "" {
		if testServer, err = startServer(); err != nil {
			os.Stderr.WriteString("compare: " + err.Error() + "\n")
			os.Exit(1)
		}
	}
	code := m.Run()
	if testServer != nil {
		testServer.close()
	}
	os.Exit(code)
}

// needServer skips tb when there is no Redis to run against.
func needServer(tb testing.TB) *server {
	tb.Helper()
	if testServer == nil {
		tb.Skip("no redis-server on PATH and no REDIS_URL")
	}
	return testServer
}

// TestRoundTrip checks that every library stores and reads back the Item
// through each tier it has, and that fetch loads once and then hits.
func TestRoundTrip(t *testing.T) {
	s := needServer(t)
	ctx := context.Background()
	for _, l := range libs() {
		t.Run(l.name, func(t *testing.T) {
			if err := s.reset(ctx); err != nil {
				t.Fatal(err)
			}
			loads := 0
			c, err := l.open(s, func(context.Context, string) (Item, error) {
				loads++
				return item, nil
			})
			if err != nil {
				t.Fatalf("open: %v", err)
			}
			defer c.close()
			if err := c.set(ctx, "rt", item); err != nil {
				t.Fatalf("set(rt) = %v", err)
			}
			for _, g := range []struct {
				tier string
				get  getFunc
			}{{"redis", c.get}, {"local", c.getLocal}} {
				if g.get == nil {
					continue
				}
				for range 2 { // the second read is served by a client-side cache
					v, err := g.get(ctx, "rt")
					if err != nil || v.Description != item.Description {
						t.Fatalf("get %s(rt) = ID %d, %v, want ID %d, nil", g.tier, v.ID, err, item.ID)
					}
				}
			}
			if c.fetch != nil {
				for i := range 2 {
					v, err := c.fetch(ctx, "rt-fetch")
					if err != nil || v.Description != item.Description {
						t.Fatalf("fetch #%d(rt-fetch) = ID %d, %v, want ID %d, nil", i+1, v.ID, err, item.ID)
					}
				}
				// eko/gocache writes back on a goroutine and can load again
				// when the second read falls between its SET landing and
				// the end of its pending-write window.
				if loads < 1 || loads > 2 {
					t.Errorf("fetch twice called the loader %d times, want 1 (2 at worst)", loads)
				}
			}
			keys := []string{"rt", "rt2", "rt3"}
			for _, k := range keys[1:] {
				if err := c.set(ctx, k, item); err != nil {
					t.Fatalf("set(%s) = %v", k, err)
				}
			}
			for _, b := range []batchFunc{c.batch, c.batchLocal} {
				if b == nil {
					continue
				}
				if n, err := b(ctx, keys); n != len(keys) || err != nil {
					t.Errorf("batch(%v) = %d, %v, want %d, nil", keys, n, err, len(keys))
				}
			}
		})
	}
}

// TestNotes checks that each library explains every workload it has no
// API for.
func TestNotes(t *testing.T) {
	s := needServer(t)
	for _, l := range libs() {
		c, err := l.open(s, func(context.Context, string) (Item, error) { return item, nil })
		if err != nil {
			t.Fatalf("open %s: %v", l.name, err)
		}
		for _, w := range workloads() {
			if _, explained := l.na[w.name]; !w.uses(c) && !explained {
				t.Errorf("%s has no API for %q and no note saying why", l.name, w.name)
			}
		}
		c.close()
	}
}
