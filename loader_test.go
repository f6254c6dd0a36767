package cachemgr_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cachemgr/cachemgr"
	"github.com/cachemgr/cachemgr/internal/redistest"
	"github.com/redis/go-redis/v9"
)

// batchSource is a counted batch loader over a map; missing keys are not
// found.
type batchSource struct {
	mu    sync.Mutex
	calls [][]string
	data  map[string]string
}

func (b *batchSource) load(_ context.Context, keys []string) (map[string]string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls = append(b.calls, slices.Clone(keys))
	out := map[string]string{}
	for _, k := range keys {
		if v, ok := b.data[k]; ok {
			out[k] = v
		}
	}
	return out, nil
}

func (b *batchSource) callCount() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.calls)
}

// TestNewCacheLoaderOptions: a loader of another type, or a nil one, is a
// clear error from NewCache; Load, LoadMany and Warm without a loader
// return ErrNoLoader (which is also ErrNilLoader).
func TestNewCacheLoaderOptions(t *testing.T) {
	m, _ := newManager(t, redistest.StartMini(t))
	ctx := context.Background()
	intLoader := func(context.Context, string) (int, error) { return 1, nil }
	tests := []struct {
		name string
		opt  cachemgr.CacheOption
	}{
		{"loader of another type", cachemgr.WithLoader(intLoader)},
		{"batch loader of another type", cachemgr.WithBatchLoader(func(context.Context, []string) (map[string]int, error) { return nil, nil })},
		{"nil loader", cachemgr.WithLoader[string](nil)},
		{"nil batch loader", cachemgr.WithBatchLoader[string](nil)},
	}
	for _, tt := range tests {
		if _, err := cachemgr.NewCache[string](m, "opts", tt.opt); !errors.Is(err, cachemgr.ErrInvalidOption) {
			t.Errorf("NewCache(%s) error = %v, want ErrInvalidOption", tt.name, err)
		}
	}
	c := newCache[string](t, m, "none")
	if _, err := c.Load(ctx, "k"); !errors.Is(err, cachemgr.ErrNoLoader) || !errors.Is(err, cachemgr.ErrNilLoader) {
		t.Errorf("Load() without a loader error = %v, want ErrNoLoader", err)
	}
	if _, _, err := c.LoadMany(ctx, []string{"k"}); !errors.Is(err, cachemgr.ErrNoLoader) {
		t.Errorf("LoadMany() without a loader error = %v, want ErrNoLoader", err)
	}
	if _, err := c.Warm(ctx, []string{"k"}, nil); !errors.Is(err, cachemgr.ErrNoLoader) {
		t.Errorf("Warm(nil) without a loader error = %v, want ErrNoLoader", err)
	}
}

// TestLoadWithEitherLoader: a cache with only a loader by key serves
// batches key by key; one with only a batch loader serves Load with a batch
// of one; both store what they load and cache not-found keys.
func TestLoadWithEitherLoader(t *testing.T) {
	redistest.Each(t, func(t *testing.T, s *redistest.Server) {
		m, _ := newManager(t, s)
		ctx := context.Background()
		data := map[string]string{"a": "A", "b": "B"}
		var byKey atomic.Int32
		one := newCache[string](t, m, "one", cachemgr.WithLoader(func(_ context.Context, k string) (string, error) {
			byKey.Add(1)
			if v, ok := data[k]; ok {
				return v, nil
			}
			return "", cachemgr.ErrNotFound
		}))
		src := &batchSource{data: data}
		many := newCache[string](t, m, "many", cachemgr.WithBatchLoader(src.load))
		for _, c := range []*cachemgr.Cache[string]{one, many} {
			if v, err := c.Load(ctx, "a"); v != "A" || err != nil {
				t.Errorf("%s: Load(a) = %q, %v; want A", c.Name(), v, err)
			}
			if _, err := c.Load(ctx, "zz"); !errors.Is(err, cachemgr.ErrNotFound) {
				t.Errorf("%s: Load(zz) error = %v, want ErrNotFound", c.Name(), err)
			}
			vals, errs, err := c.LoadMany(ctx, []string{"a", "b", "zz", "yy"})
			if err != nil || vals[0] != "A" || vals[1] != "B" || errs[0] != nil || errs[1] != nil ||
				!errors.Is(errs[2], cachemgr.ErrNotFound) || !errors.Is(errs[3], cachemgr.ErrNotFound) {
				t.Errorf("%s: LoadMany() = %q, %v, %v; want A B and two not found", c.Name(), vals, errs, err)
			}
			if v, err := c.Get(ctx, "b"); v != "B" || err != nil {
				t.Errorf("%s: Get(b) after LoadMany = %q, %v; want B stored", c.Name(), v, err)
			}
		}
		// one: Load a, Load zz, then b and yy by key (a, zz are cached).
		if n := byKey.Load(); n != 4 {
			t.Errorf("loader by key calls = %d, want 4", n)
		}
		want := [][]string{{"a"}, {"zz"}, {"b", "yy"}}
		if !slices.EqualFunc(src.calls, want, slices.Equal) {
			t.Errorf("batch loader calls = %q, want %q", src.calls, want)
		}
	})
}

// TestLoadRefreshesWithLoader: a stale value that Load returns is
// refreshed in the background by the cache's loader.
func TestLoadRefreshesWithLoader(t *testing.T) {
	redistest.Each(t, func(t *testing.T, s *redistest.Server) {
		ctx := context.Background()
		var clk skewedClock
		m, _ := newManager(t, s, cachemgr.WithClock(clk.now))
		var version atomic.Int32
		c := newCache[string](t, m, "refresh", cachemgr.WithTTL(time.Hour), cachemgr.WithJitter(0), cachemgr.WithStale(time.Hour),
			cachemgr.WithLoader(func(context.Context, string) (string, error) {
				return fmt.Sprint("v", version.Add(1)), nil
			}))
		if v, err := c.Load(ctx, "k"); v != "v1" || err != nil {
			t.Fatalf("Load() = %q, %v; want v1", v, err)
		}
		clk.advance(time.Hour + time.Minute) // past fresh, inside the stale window
		if v, err := c.Load(ctx, "k"); v != "v1" || err != nil {
			t.Fatalf("Load(stale) = %q, %v; want v1 while it refreshes", v, err)
		}
		waitFor(t, "the refresh by the cache's loader", func() bool {
			v, _ := c.Get(ctx, "k")
			return v == "v2"
		})
		if st := c.Stats(); st.Refreshes != 1 || st.Loads != 2 {
			t.Errorf("Stats() = refreshes %d, loads %d; want 1 and 2", st.Refreshes, st.Loads)
		}
	})
}

// TestDoNotCache: a value the loader keeps out is returned to its caller
// and stored neither in Redis nor in the L1 tier, by key and in batches
// (all keys, or the keys named); it is still shared with the callers of the
// same load.
func TestDoNotCache(t *testing.T) {
	redistest.Each(t, func(t *testing.T, s *redistest.Server) {
		ctx := context.Background()
		m, rdb := newManager(t, s, cachemgr.WithL1(100))
		c := newCache[string](t, m, "nocache")
		v, err := c.Fetch(ctx, "k", func(ctx context.Context) (string, error) {
			cachemgr.EntryFrom(ctx).DoNotCache("ignored by a load by key: the value stays out")
			return "partial", nil
		})
		if v != "partial" || err != nil {
			t.Fatalf("Fetch() = %q, %v; want partial", v, err)
		}
		nf := func(ctx context.Context) (string, error) {
			cachemgr.EntryFrom(ctx).DoNotCache()
			return "", cachemgr.ErrNotFound
		}
		if _, err := c.Fetch(ctx, "gone", nf); !errors.Is(err, cachemgr.ErrNotFound) {
			t.Fatalf("Fetch(not found, not cached) error = %v", err)
		}
		vals, errs, err := c.FetchMany(ctx, []string{"a", "b", "c"}, func(ctx context.Context, keys []string) (map[string]string, error) {
			cachemgr.EntryFrom(ctx).DoNotCache("b")
			return map[string]string{"a": "A", "b": "B"}, nil // c: not found
		})
		if err != nil || !slices.Equal(vals, []string{"A", "B", ""}) || errs[0] != nil || errs[1] != nil || !errors.Is(errs[2], cachemgr.ErrNotFound) {
			t.Fatalf("FetchMany() = %q, %v, %v", vals, errs, err)
		}
		all, _, err := c.FetchMany(ctx, []string{"x", "y"}, func(ctx context.Context, keys []string) (map[string]string, error) {
			cachemgr.EntryFrom(ctx).DoNotCache()
			return map[string]string{"x": "X", "y": "Y"}, nil
		})
		if err != nil || !slices.Equal(all, []string{"X", "Y"}) {
			t.Fatalf("FetchMany(all kept out) = %q, %v", all, err)
		}
		for _, k := range []string{"k", "gone", "b", "x", "y"} {
			if _, err := c.Get(ctx, k); !errors.Is(err, cachemgr.ErrMiss) {
				t.Errorf("Get(%q) after a load that kept it out = %v, want ErrMiss", k, err)
			}
			if n := rdb.Exists(ctx, "test:nocache:{="+k+"}").Val(); n != 0 {
				t.Errorf("Redis holds %q after a load that kept it out", k)
			}
		}
		for _, k := range []string{"a", "c"} {
			for range 2 {
				if _, err := c.Get(ctx, k); err != nil && !errors.Is(err, cachemgr.ErrNotFound) {
					t.Errorf("Get(%q) = %v, want it cached", k, err)
				}
			}
		}
		// a and c are in the L1 tier too: filled by the batch's write-back,
		// or, where Redis's tracking echo of that write dropped the fill, by
		// the first Get; the second Get of each is an L1 hit at least. The
		// kept-out keys missed above, in L1 as in Redis.
		if st := c.Stats(); st.L1Hits < 2 {
			t.Errorf("L1 hits = %d, want at least 2: a and c", st.L1Hits)
		}
	})
}

// TestBatchLoaderPanic: a batch loader's panic fails every missing key
// with a *PanicError carrying the value and the stack, as a loader by key's
// does; the panic value is reachable with errors.Is when it is an error.
func TestBatchLoaderPanic(t *testing.T) {
	m, _ := newManager(t, redistest.StartMini(t))
	ctx := context.Background()
	c := newCache[string](t, m, "panic")
	boom := errors.New("boom")
	_, errs, err := c.FetchMany(ctx, []string{"a", "b"}, func(context.Context, []string) (map[string]string, error) {
		panic(boom)
	})
	if err != nil {
		t.Fatalf("FetchMany() error = %v", err)
	}
	for i, e := range errs {
		var pe *cachemgr.PanicError
		if !errors.As(e, &pe) || !errors.Is(e, cachemgr.ErrLoaderPanic) || !errors.Is(e, boom) || pe.Value != boom ||
			!strings.Contains(string(pe.Stack), "loader_test.go") {
			t.Errorf("FetchMany()[%d] error = %v, want a *PanicError of boom with the stack", i, e)
		}
	}
	_, err = c.Fetch(ctx, "c", func(context.Context) (string, error) { panic("not an error") })
	var pe *cachemgr.PanicError
	if !errors.As(err, &pe) || pe.Value != "not an error" || !errors.Is(err, cachemgr.ErrLoaderPanic) || !strings.Contains(err.Error(), "not an error") {
		t.Errorf("Fetch(panicking loader) error = %v, want a *PanicError", err)
	}
	if st := c.Stats(); st.Loads != 2 || st.LoadErrors != 2 {
		t.Errorf("Stats() loads %d, errors %d; want 2 and 2", st.Loads, st.LoadErrors)
	}
}

// TestBatchLoadEntry: a batch loader gets an Entry; its TTL and tags apply
// to every key it loads, and an InvalidateTags of those tags makes them
// unreadable.
func TestBatchLoadEntry(t *testing.T) {
	batchCases(t, func(t *testing.T, rdb redis.UniversalClient) {
		ctx := context.Background()
		m, err := cachemgr.New(rdb, testOptions()...)
		if err != nil {
			t.Fatalf("New() error = %v", err)
		}
		t.Cleanup(func() { m.Close() })
		c := newCache[string](t, m, "entry")
		_, _, err = c.FetchMany(ctx, []string{"a", "b"}, func(ctx context.Context, keys []string) (map[string]string, error) {
			e := cachemgr.EntryFrom(ctx)
			if e == nil {
				return nil, errors.New("no Entry in a batch loader")
			}
			e.SetTTL(42 * time.Minute)
			e.AddTags("batch")
			return map[string]string{"a": "A", "b": "B"}, nil
		})
		if err != nil {
			t.Fatalf("FetchMany() error = %v", err)
		}
		for _, k := range []string{"a", "b"} {
			if v, err := c.Get(ctx, k); err != nil {
				t.Errorf("Get(%q) after a tagged batch load = %q, %v; want it readable", k, v, err)
			}
			ttl := rdb.PTTL(ctx, "test:entry:{="+k+"}").Val()
			if ttl < 30*time.Minute || ttl > 50*time.Minute {
				t.Errorf("PTTL(%q) = %v, want about 42m (Entry.SetTTL, jitter 10%%)", k, ttl)
			}
		}
		if err := m.InvalidateTags(ctx, "batch"); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Get(ctx, "a"); !errors.Is(err, cachemgr.ErrMiss) {
			t.Errorf("Get(a) after InvalidateTags = %v, want ErrMiss", err)
		}
	})
}
