package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cachemgr/cachemgr"
	"github.com/cachemgr/cachemgr/codec"
	"github.com/cachemgr/cachemgr/internal/keys"
	"github.com/cachemgr/cachemgr/internal/redistest"
	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// The "redis down" case makes go-redis log every failed dial; the
	// test asserts on the returned error instead.
	redis.SetLogger(discardPrintf{})
	// Every command closes its client and subscription: nothing may be
	// left running, except go-redis's own retry of a refused dial (the
	// "redis down" case), which sleeps a second and ends by itself.
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("github.com/redis/go-redis/v9/internal/pool.(*ConnPool).tryDial"))
}

type discardPrintf struct{}

func (discardPrintf) Printf(context.Context, string, ...any) {}

type product struct {
	ID    int64    `msgpack:"id" json:"id"`
	Name  string   `msgpack:"name" json:"name"`
	Notes []string `msgpack:"notes" json:"notes"`
}

// setup starts a redis-server for the test and returns a client, its URL
// and a Manager of prefix "shop" on it.
func setup(t *testing.T, opts ...cachemgr.Option) (*redis.Client, string, *cachemgr.Manager) {
	t.Helper()
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	m, err := cachemgr.New(rdb, append([]cachemgr.Option{cachemgr.WithPrefix("shop"), cachemgr.WithOpTimeout(5 * time.Second)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return rdb, "redis://" + srv.Addr(), m
}

func newCache[T any](t *testing.T, m *cachemgr.Manager, name string, opts ...cachemgr.CacheOption) *cachemgr.Cache[T] {
	t.Helper()
	c, err := cachemgr.NewCache[T](m, name, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func inspectorFor(rdb *redis.Client) inspector {
	return inspector{rdb: rdb, c: common{prefix: "shop", maxKey: 200, timeout: 5 * time.Second}, maxValue: 8 << 20, show: 4096, now: time.Now}
}

// TestKey writes entries with a real Manager and checks what key reads
// back from them.
func TestKey(t *testing.T) {
	rdb, _, m := setup(t)
	ctx := context.Background()
	products := newCache[product](t, m, "product", cachemgr.WithTTL(10*time.Minute))
	in := inspectorFor(rdb)

	if err := products.Set(ctx, "42", product{ID: 42, Name: "Compact Kettle"}, cachemgr.Tags("org:7", "cat:1")); err != nil {
		t.Fatal(err)
	}
	e, err := in.lookup(ctx, "product", "42")
	if err != nil {
		t.Fatalf("lookup(product, 42) error: %v", err)
	}
	wantKey := keys.New("shop", "product", 200).Key("42")
	if e.Key != wantKey || !e.Exists || !e.Readable || e.State != "fresh" || e.Codec != "msgpack" || e.Compression != "none" || e.Negative {
		t.Errorf("lookup(product, 42) = key %q, exists %t, readable %t, state %q, codec %q, compression %q, negative %t; want %q, true, true, fresh, msgpack, none, false",
			e.Key, e.Exists, e.Readable, e.State, e.Codec, e.Compression, e.Negative, wantKey)
	}
	if e.TTLMillis <= 0 || e.TTLMillis > (10*time.Minute+time.Minute).Milliseconds() || e.MemoryBytes <= 0 || e.StoredBytes <= 0 {
		t.Errorf("lookup(product, 42) = TTL %d ms, memory %d B, stored %d B; want a TTL up to 11m and sizes", e.TTLMillis, e.MemoryBytes, e.StoredBytes)
	}
	if until := time.Until(e.FreshUntil); until < 8*time.Minute || until > 12*time.Minute {
		t.Errorf("lookup(product, 42) fresh until %v, want about 10m from now (jitter 10%%)", e.FreshUntil)
	}
	if !strings.Contains(e.Value, `"name":"Compact Kettle"`) {
		t.Errorf("lookup(product, 42) value = %s, want the product as JSON", e.Value)
	}
	if len(e.Tags) != 2 || !e.Tags[0].Valid || !e.Tags[1].Valid || e.Stamp.IsZero() {
		t.Errorf("lookup(product, 42) tags = %+v, stamp %v; want cat:1 and org:7 valid", e.Tags, e.Stamp)
	}

	// An invalidation of one tag makes the entry unreadable, and key says
	// which tag did it.
	if err := m.InvalidateTags(ctx, "cat:1"); err != nil {
		t.Fatal(err)
	}
	e, err = in.lookup(ctx, "product", "42")
	if err != nil {
		t.Fatal(err)
	}
	if e.Readable || e.State != "unreadable" || !strings.Contains(e.Why, `tag "cat:1"`) || strings.Contains(e.Why, "org:7") {
		t.Errorf("after InvalidateTags(cat:1), lookup = readable %t, state %q, why %q; want unreadable because of cat:1 only", e.Readable, e.State, e.Why)
	}
	if _, err := products.Get(ctx, "42"); !errors.Is(err, cachemgr.ErrMiss) {
		t.Errorf("Get(42) after InvalidateTags = %v, want ErrMiss, as key predicted", err)
	}
}

func TestKeyStates(t *testing.T) {
	rdb, _, m := setup(t)
	ctx := context.Background()
	in := inspectorFor(rdb)
	products := newCache[product](t, m, "product")
	pages := newCache[[]product](t, m, "page")
	raw := newCache[string](t, m, "raw", cachemgr.WithCacheCodec(codec.Raw()))

	if _, err := products.Fetch(ctx, "404", func(context.Context) (product, error) {
		return product{}, fmt.Errorf("no product 404: %w", cachemgr.ErrNotFound)
	}); !errors.Is(err, cachemgr.ErrNotFound) {
		t.Fatal(err)
	}
	var page []product
	for i := range 100 {
		page = append(page, product{ID: int64(i), Name: "Compact Kettle", Notes: []string{"ships in recyclable packaging"}})
	}
	if err := pages.Set(ctx, "1", page); err != nil {
		t.Fatal(err)
	}
	if err := raw.Set(ctx, "hello", "hello, world"); err != nil {
		t.Fatal(err)
	}
	loaded, err := pages.Fetch(ctx, "slow", func(context.Context) ([]product, error) {
		time.Sleep(25 * time.Millisecond) // a load that takes time: the header records it
		return page[:1], nil
	})
	if err != nil || len(loaded) != 1 {
		t.Fatal(err)
	}
	if err := rdb.Set(ctx, keys.New("shop", "product", 200).Key("bad"), "not an envelope", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.HSet(ctx, keys.New("shop", "product", 200).Key("hash"), "f", "v").Err(); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		cache, key string
		check      func(e *entry) bool
		want       string
	}{
		{"product", "404", func(e *entry) bool { return e.Readable && e.State == "negative" && e.Negative && e.Value == "" },
			"readable negative entry without value"},
		{"page", "1", func(e *entry) bool {
			return e.Readable && e.State == "fresh" && e.Compression == "lz4" && e.RawBytes > e.StoredBytes && strings.HasPrefix(e.Value, "[{")
		}, "fresh lz4 entry, raw size above stored, decoded"},
		{"page", "slow", func(e *entry) bool { return e.LoadMillis >= 20 }, "load time of at least 20ms"},
		{"raw", "hello", func(e *entry) bool { return e.Readable && e.Codec == "raw" && e.Value == "hello, world" }, "raw text"},
		{"product", "bad", func(e *entry) bool {
			return e.Exists && !e.Readable && e.State == "unreadable" && strings.Contains(e.Why, "corrupt")
		}, "unreadable: corrupt"},
		{"product", "hash", func(e *entry) bool { return !e.Readable && e.State == "foreign" && strings.Contains(e.Why, "hash") }, "foreign hash"},
		{"product", "never", func(e *entry) bool {
			return !e.Exists && e.State == "absent" && e.TTLMillis == -2 && e.Marker == nil && e.Lease == nil
		}, "absent, no companions"},
	}
	for _, tt := range tests {
		t.Run(tt.cache+"/"+tt.key, func(t *testing.T) {
			e, err := in.lookup(ctx, tt.cache, tt.key)
			if err != nil {
				t.Fatalf("lookup(%s, %s) error: %v", tt.cache, tt.key, err)
			}
			if !tt.check(e) {
				b, _ := json.MarshalIndent(e, "", "  ")
				t.Errorf("lookup(%s, %s) = %s\nwant %s", tt.cache, tt.key, b, tt.want)
			}
		})
	}
}

// TestKeyStale writes an entry whose freshness ended an hour ago, with a
// Manager whose clock runs an hour behind.
func TestKeyStale(t *testing.T) {
	rdb, _, _ := setup(t)
	ctx := context.Background()
	behind, err := cachemgr.New(rdb, cachemgr.WithPrefix("shop"), cachemgr.WithOpTimeout(5*time.Second),
		cachemgr.WithClock(func() time.Time { return time.Now().Add(-time.Hour) }))
	if err != nil {
		t.Fatal(err)
	}
	defer behind.Close()
	products := newCache[product](t, behind, "product", cachemgr.WithTTL(time.Minute), cachemgr.WithStale(3*time.Hour))
	if err := products.Set(ctx, "old", product{ID: 1}); err != nil {
		t.Fatal(err)
	}
	e, err := inspectorFor(rdb).lookup(ctx, "product", "old")
	if err != nil {
		t.Fatal(err)
	}
	if !e.Readable || e.State != "stale" || time.Until(e.FreshUntil) > -50*time.Minute {
		t.Errorf("lookup(product, old) = readable %t, state %q, fresh until %v; want readable, stale, about 59m ago", e.Readable, e.State, e.FreshUntil)
	}
}

// TestKeyLoadInFlight inspects a key while a load holds its lease.
func TestKeyLoadInFlight(t *testing.T) {
	rdb, _, m := setup(t)
	ctx := context.Background()
	products := newCache[product](t, m, "product")
	started, release := make(chan struct{}), make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		products.Fetch(ctx, "7", func(context.Context) (product, error) {
			close(started)
			<-release
			return product{ID: 7}, nil
		})
	})
	<-started
	e, err := inspectorFor(rdb).lookup(ctx, "product", "7")
	close(release)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if e.Exists || e.Lease == nil || e.Lease.TTLMillis <= 0 || e.Marker == nil || !strings.Contains(e.Why, "lease") {
		t.Errorf("lookup(product, 7) during the load = exists %t, lease %+v, marker %+v, why %q; want absent with lease and marker", e.Exists, e.Lease, e.Marker, e.Why)
	}
	e, err = inspectorFor(rdb).lookup(ctx, "product", "7")
	if err != nil {
		t.Fatal(err)
	}
	if !e.Readable || e.Lease != nil {
		t.Errorf("lookup(product, 7) after the load = readable %t, lease %+v; want readable, lease released", e.Readable, e.Lease)
	}
}

// TestKeyVersioned follows a versioned cache across a Bump.
func TestKeyVersioned(t *testing.T) {
	rdb, _, m := setup(t)
	ctx := context.Background()
	in := inspectorFor(rdb)
	products := newCache[product](t, m, "vproduct", cachemgr.WithVersioned(true))
	if err := products.Set(ctx, "1", product{ID: 1}); err != nil {
		t.Fatal(err)
	}
	before, err := in.lookup(ctx, "vproduct", "1")
	if err != nil {
		t.Fatal(err)
	}
	if before.Version == "" || !before.Readable || !strings.Contains(before.Key, ":v"+before.Version+":") {
		t.Errorf("lookup(vproduct, 1) = version %q, readable %t, key %q; want the versioned key, readable", before.Version, before.Readable, before.Key)
	}
	if err := products.Bump(ctx); err != nil {
		t.Fatal(err)
	}
	after, err := in.lookup(ctx, "vproduct", "1")
	if err != nil {
		t.Fatal(err)
	}
	if after.Version == before.Version || after.Exists {
		t.Errorf("lookup(vproduct, 1) after Bump = version %q (was %q), exists %t; want a new version and no entry", after.Version, before.Version, after.Exists)
	}
}

// TestRunKey runs the command line, text and JSON, on a real server.
func TestRunKey(t *testing.T) {
	_, url, m := setup(t)
	ctx := context.Background()
	products := newCache[product](t, m, "product")
	if err := products.Set(ctx, "42", product{ID: 42, Name: "Compact Kettle"}, cachemgr.Tags("org:7")); err != nil {
		t.Fatal(err)
	}
	out := runOut(t, "key", "-redis", url, "-prefix", "shop", "product", "42")
	for _, want := range []string{
		"shop:product:{=42}", "fresh (readable: yes)", "msgpack (ID 1)", "\ncompression  ",
		"\nnegative  ", `"org:7" ok: last invalidated before`, "\nlease  ", `"name":"Compact Kettle"`, "B in memory",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("key output lacks %q\noutput:\n%s", want, out)
		}
	}
	var e entry
	out = runOut(t, "key", "-redis", url, "-prefix", "shop", "-json", "-raw", "shop:product:{=42}")
	if err := json.Unmarshal([]byte(out), &e); err != nil || !e.Readable || e.Codec != "msgpack" {
		t.Errorf("key -json -raw = %+v, %v; want a readable msgpack entry\noutput:\n%s", e, err, out)
	}
}

// TestScan checks the census of caches written by a real Manager.
func TestScan(t *testing.T) {
	rdb, url, m := setup(t)
	ctx := context.Background()
	items := newCache[product](t, m, "item", cachemgr.WithTTL(10*time.Minute))
	for i := range 40 {
		if err := items.Set(ctx, fmt.Sprint(i), product{ID: int64(i), Name: "Compact Kettle"}); err != nil {
			t.Fatal(err)
		}
	}
	big := product{ID: 1000, Name: strings.Repeat("a long description ", 400)}
	if err := items.Set(ctx, "big", big, cachemgr.TTL(time.Hour), cachemgr.Tags("big")); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		items.Fetch(ctx, fmt.Sprint("missing", i), func(context.Context) (product, error) { return product{}, cachemgr.ErrNotFound })
	}
	if err := items.Delete(ctx, "0"); err != nil { // leaves a marker
		t.Fatal(err)
	}
	v := newCache[product](t, m, "vitem", cachemgr.WithVersioned(true))
	for i := range 10 {
		if err := v.Set(ctx, fmt.Sprint(i), product{ID: int64(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := v.Bump(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		if err := v.Set(ctx, fmt.Sprint(i), product{ID: int64(i)}); err != nil {
			t.Fatal(err)
		}
	}

	s := scanner{rdb: rdb, c: common{prefix: "shop", maxKey: 200, timeout: 5 * time.Second}, sample: 1000, top: 3, maxValue: 8 << 20, now: time.Now}
	cs, err := s.scan(ctx, "item")
	if err != nil {
		t.Fatalf("scan(item) error: %v", err)
	}
	// 40 Set, 0 deleted, big, 3 negative.
	if !cs.Complete || cs.Current != 43 || cs.OldVersions != 0 || cs.Sampled != 43 || cs.Negative != 3 || cs.Tagged != 1 || cs.Compressed != 1 || cs.Unreadable != 0 {
		t.Errorf("scan(item) = %+v\nwant complete, 43 current and sampled, 3 negative, 1 tagged and compressed", cs)
	}
	if cs.Markers < 1 || cs.Fresh != 40 || cs.Codecs["msgpack"] != 43 {
		t.Errorf("scan(item) = %d markers, %d fresh, codecs %v; want at least 1, 40, msgpack 43", cs.Markers, cs.Fresh, cs.Codecs)
	}
	if len(cs.Biggest) != 3 || cs.Biggest[0].Key != keys.New("shop", "item", 200).Key("big") || cs.MemoryBytes <= 0 {
		t.Errorf("scan(item) biggest = %+v, memory %d; want 3 keys, big first, memory known", cs.Biggest, cs.MemoryBytes)
	}
	if !(0 < cs.TTLMin && cs.TTLMin <= cs.TTLMedian && cs.TTLMedian <= cs.TTLP90 && cs.TTLP90 <= cs.TTLMax) || cs.TTLMax < (50*time.Minute).Milliseconds() {
		t.Errorf("scan(item) TTLs = %d, %d, %d, %d ms; want ordered, max about 1h", cs.TTLMin, cs.TTLMedian, cs.TTLP90, cs.TTLMax)
	}

	cs, err = s.scan(ctx, "vitem")
	if err != nil {
		t.Fatal(err)
	}
	if cs.Version == "" || cs.Current != 4 || cs.OldVersions != 10 {
		t.Errorf("scan(vitem) = version %q, %d current, %d old; want a version, 4, 10", cs.Version, cs.Current, cs.OldVersions)
	}

	s.sample = 5
	if cs, err = s.scan(ctx, "item"); err != nil || cs.Sampled != 5 {
		t.Errorf("scan(item) with sample 5 = %d sampled, %v; want 5", cs.Sampled, err)
	}

	out := runOut(t, "scan", "-redis", url, "-prefix", "shop", "-top", "2", "item")
	for _, want := range []string{"43 reachable", "invalidation markers", "B (MEMORY USAGE)", "TTL left", "3 negative", "biggest", "{=big}"} {
		if !strings.Contains(out, want) {
			t.Errorf("scan output lacks %q\noutput:\n%s", want, out)
		}
	}
}

// syncBuffer is a bytes.Buffer safe for one writer and one reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestEvents follows the channel while a real Manager publishes.
func TestEvents(t *testing.T) {
	rdb, url, m := setup(t, cachemgr.WithEvents(true))
	ctx := context.Background()
	var out, filtered syncBuffer
	done, filterDone := make(chan error, 1), make(chan error, 1)
	go func() { done <- run(ctx, []string{"events", "-redis", url, "-prefix", "shop", "-n", "5"}, &out) }()
	// Of another cache's events, only the tag invalidation reaches it.
	go func() {
		filterDone <- run(ctx, []string{"events", "-redis", url, "-prefix", "shop", "-cache", "other", "-n", "1", "-json"}, &filtered)
	}()
	waitSubscribed(t, rdb, "shop:~events", 2)

	products := newCache[product](t, m, "product", cachemgr.WithVersioned(true))
	steps := []func() error{
		func() error { return products.Set(ctx, "42", product{ID: 42}) },
		func() error { return products.Delete(ctx, "42") },
		func() error { return m.InvalidateTags(ctx, "org:7") },
		func() error { return products.Bump(ctx) },
		func() error { return cachemgr.Publish(ctx, m, "prices", map[string]int{"sku": 7}) },
	}
	for i, step := range steps {
		if err := step(); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("events = %v, want nil after 5 events", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("events did not return after 5 events\noutput:\n%s", out.String())
	}
	select {
	case err := <-filterDone:
		var r received
		if err != nil || json.Unmarshal([]byte(filtered.String()), &r) != nil || r.Event == nil || r.Event.Kind != "tags" {
			t.Errorf("events -cache other -n 1 -json = %v, output %q; want the tags event as JSON", err, filtered.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("events -cache other did not return after 1 event\noutput:\n%s", filtered.String())
	}
	got := out.String()
	for _, want := range []string{
		"following shop:~events",
		`key     cache product: keys "42" changed`,
		`tags    InvalidateTags "org:7"`,
		"version cache product: Bump",
		`user    user event on topic "prices": {"sku":7}`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("events output lacks %q\noutput:\n%s", want, got)
		}
	}
	if n := strings.Count(got, "(from Manager "); n != 5 {
		t.Errorf("events printed %d events, want 5\noutput:\n%s", n, got)
	}
}

// waitSubscribed polls until the channel has n subscribers.
func waitSubscribed(t *testing.T, rdb *redis.Client, ch string, n int64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		subs, err := rdb.PubSubNumSub(context.Background(), ch).Result()
		if err == nil && subs[ch] >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d subscribers on %s after 30s, want %d (last error %v)", subs[ch], ch, n, err)
		}
		time.Sleep(5 * time.Millisecond) // polling the server, not waiting for time to pass
	}
}

func TestEventsInterrupted(t *testing.T) {
	rdb, url, _ := setup(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"events", "-redis", url}, io.Discard) }()
	waitSubscribed(t, rdb, "~events", 1)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("events after cancel = %v, want nil", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("events did not return after its ctx ended")
	}
}

func TestRunErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no command", nil, "no command"},
		{"unknown command", []string{"flush"}, "unknown command"},
		{"key without args", []string{"key"}, "want CACHE KEY"},
		{"key with raw and args", []string{"key", "-raw", "k", "c", "k"}, "-raw takes no"},
		{"key bad cache name", []string{"key", "a:b", "1"}, "colon"},
		{"key bad prefix", []string{"key", "-prefix", "{x}", "c", "1"}, "-prefix"},
		{"key bad show", []string{"key", "-show", "-1", "c", "1"}, "-show"},
		{"key bad redis", []string{"key", "-redis", "http://x", "c", "1"}, "-redis"},
		{"key redis down", []string{"key", "-redis", "redis://127.0.0.1:1", "c", "1"}, "ping"},
		{"scan without cache", []string{"scan"}, "want CACHE"},
		{"scan bad sample", []string{"scan", "-sample", "0", "c"}, "-sample"},
		{"scan bad maxkey", []string{"scan", "-maxkey", "0", "c"}, "-maxkey"},
		{"events extra arg", []string{"events", "x"}, "unexpected argument"},
		{"events bad n", []string{"events", "-n", "-1"}, "-n"},
		{"unknown flag", []string{"scan", "-nope", "c"}, "-nope"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := run(context.Background(), tt.args, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("run(%q) = %v, want an error containing %q", tt.args, err, tt.want)
			}
		})
	}
}

func TestRunHelp(t *testing.T) {
	for _, args := range [][]string{{"-h"}, {"key", "-h"}, {"scan", "-h"}, {"events", "-h"}} {
		var out bytes.Buffer
		if err := run(context.Background(), args, &out); err != nil || !strings.Contains(out.String(), "Usage") {
			t.Errorf("run(%q) = %v, output %q; want the usage", args, err, &out)
		}
	}
}

func runOut(t *testing.T, args ...string) string {
	t.Helper()
	var out bytes.Buffer
	if err := run(context.Background(), args, &out); err != nil {
		t.Fatalf("run(%q) = %v\noutput:\n%s", args, err, &out)
	}
	return out.String()
}

func TestEventText(t *testing.T) {
	at := time.Date(2025, 1, 2, 3, 4, 5, 600e6, time.UTC)
	tests := []struct {
		name string
		r    received
		want string
	}{
		{"key", received{At: at, Event: &event{Origin: "ABCDEFGHIJ", Kind: "key", Cache: "product", Keys: []string{"1", "2"}}},
			`03:04:05.600  key     cache product: keys "1", "2" changed (Set or Delete)  (from Manager ABCDEFGH)`},
		{"prefix", received{At: at, Event: &event{Origin: "X", Kind: "prefix", Cache: "product", Prefix: "eu:"}},
			`03:04:05.600  prefix  cache product: keys starting with "eu:" invalidated  (from Manager X)`},
		{"unknown kind", received{At: at, Event: &event{Origin: "X", Kind: "flush"}}, `unknown kind "flush"`},
		{"unparsable", received{At: at, Raw: "{oops"}, `03:04:05.600  unparsable payload "{oops"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.r.text(); !strings.Contains(got, tt.want) {
				t.Errorf("text() = %q, want it to contain %q", got, tt.want)
			}
		})
	}
}

// TestScanKind: scan tells every key cachemgr writes under a cache's base
// apart, so that none is counted as a key cachemgr did not write.
func TestScanKind(t *testing.T) {
	b := keys.New("shop", "item", 200)
	d := b.Key("42")
	for _, c := range []struct{ key, want string }{
		{d, "current"},
		{keys.Marker(d), "marker"},
		{keys.Lease(d), "lease"},
		{keys.Waiters(d), "waiters"},
		{b.Version(), "version"},
		{b.Base() + "stray", "other"},
	} {
		if got := kind(c.key, b.Base(), b.Base(), b.Version()); got != c.want {
			t.Errorf("kind(%q) = %q, want %q", c.key, got, c.want)
		}
	}
}
