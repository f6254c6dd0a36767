package cachemgr_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/cachemgr/cachemgr"
	"github.com/cachemgr/cachemgr/internal/redistest"
	"github.com/redis/go-redis/v9"
)

// batchCases runs fn on a single node (real and miniredis) and on a real
// 3-master Cluster.
func batchCases(t *testing.T, fn func(t *testing.T, rdb redis.UniversalClient)) {
	redistest.Each(t, func(t *testing.T, s *redistest.Server) { fn(t, s.Client(t)) })
	t.Run("cluster", func(t *testing.T) { fn(t, redistest.StartCluster(t, 3).Client(t)) })
}

func TestFetchMany(t *testing.T) {
	batchCases(t, func(t *testing.T, rdb redis.UniversalClient) {
		ctx := context.Background()
		m, err := cachemgr.New(rdb, testOptions()...)
		if err != nil {
			t.Fatalf("New() error = %v", err)
		}
		t.Cleanup(func() { m.Close() })
		for _, versioned := range []bool{false, true} {
			t.Run(fmt.Sprint("versioned=", versioned), func(t *testing.T) {
				c := newCache[string](t, m, fmt.Sprint("batch", versioned), cachemgr.WithVersioned(versioned))
				c.Set(ctx, "hit1", "cached 1")
				c.Set(ctx, "hit2", "cached 2", cachemgr.Tags("t"))
				c.Fetch(ctx, "neg", func(context.Context) (string, error) { return "", cachemgr.ErrNotFound })
				keys := []string{"miss1", "hit1", "neg", "miss2", "hit2", "gone", "miss1"}
				var calls [][]string
				loadMany := func(_ context.Context, missing []string) (map[string]string, error) {
					calls = append(calls, slices.Clone(missing))
					out := map[string]string{}
					for _, k := range missing {
						if k != "gone" {
							out[k] = "loaded " + k
						}
					}
					return out, nil
				}
				vals, errs, err := c.FetchMany(ctx, keys, loadMany)
				if err != nil {
					t.Fatalf("FetchMany() error = %v", err)
				}
				if len(calls) != 1 || !slices.Equal(calls[0], []string{"miss1", "miss2", "gone"}) {
					t.Errorf("loadMany calls = %q, want one call with [miss1 miss2 gone]", calls)
				}
				want := []string{"loaded miss1", "cached 1", "", "loaded miss2", "cached 2", "", "loaded miss1"}
				wantNotFound := []bool{false, false, true, false, false, true, false}
				for i := range keys {
					if vals[i] != want[i] || errors.Is(errs[i], cachemgr.ErrNotFound) != wantNotFound[i] || (!wantNotFound[i] && errs[i] != nil) {
						t.Errorf("FetchMany()[%d] (%s) = %q, %v; want %q (not found %v)", i, keys[i], vals[i], errs[i], want[i], wantNotFound[i])
					}
				}
				// Everything is cached now, the absent key as a negative entry.
				calls = nil
				vals, errs, _ = c.FetchMany(ctx, keys, loadMany)
				if len(calls) != 0 {
					t.Errorf("second FetchMany loaded %q, want nothing", calls)
				}
				if !errors.Is(errs[5], cachemgr.ErrNotFound) || errs[0] != nil {
					t.Errorf("second FetchMany errors = %v, want the negative entry for gone and hits", errs)
				}
				got, gerrs, err := c.GetMany(ctx, keys)
				if err != nil || !slices.Equal(got, vals) {
					t.Errorf("GetMany() = %q, %v; want %q", got, err, vals)
				}
				if !errors.Is(gerrs[2], cachemgr.ErrNotFound) || gerrs[0] != nil {
					t.Errorf("GetMany() errors = %v", gerrs)
				}
				// A tag invalidation shows in the batch read too.
				if err := m.InvalidateTags(ctx, "t"); err != nil {
					t.Fatalf("InvalidateTags() error = %v", err)
				}
				if _, gerrs, _ := c.GetMany(ctx, []string{"hit2"}); !errors.Is(gerrs[0], cachemgr.ErrMiss) {
					t.Errorf("GetMany(hit2) after InvalidateTags = %v, want ErrMiss", gerrs[0])
				}
			})
		}
	})
}

func TestFetchManyLoaderError(t *testing.T) {
	m, _ := newManager(t, redistest.StartMini(t))
	c := newCache[string](t, m, "b")
	ctx := context.Background()
	c.Set(ctx, "a", "A")
	boom := errors.New("db down")
	vals, errs, err := c.FetchMany(ctx, []string{"a", "b"}, func(context.Context, []string) (map[string]string, error) { return nil, boom })
	if err != nil || vals[0] != "A" || errs[0] != nil || !errors.Is(errs[1], boom) {
		t.Errorf("FetchMany() with failing loader = %q, %v, %v; want the hit and the loader error", vals, errs, err)
	}
	if _, _, err := c.FetchMany(ctx, []string{"x"}, nil); !errors.Is(err, cachemgr.ErrNilLoader) {
		t.Errorf("FetchMany(nil loader) error = %v, want ErrNilLoader", err)
	}
}

func TestFetchManyDeleteDuringLoad(t *testing.T) {
	m, _ := newManager(t, redistest.StartMini(t))
	c := newCache[string](t, m, "b")
	ctx := context.Background()
	_, _, err := c.FetchMany(ctx, []string{"k"}, func(context.Context, []string) (map[string]string, error) {
		if err := c.Delete(ctx, "k"); err != nil {
			t.Fatalf("Delete() error = %v", err)
		}
		return map[string]string{"k": "old"}, nil
	})
	if err != nil {
		t.Fatalf("FetchMany() error = %v", err)
	}
	if v, err := c.Get(ctx, "k"); !errors.Is(err, cachemgr.ErrMiss) {
		t.Errorf("Get after Delete during batch load = %q, %v; want ErrMiss", v, err)
	}
}

// BenchmarkFetchManyHits compares FetchMany of 100 cached keys with 100
// sequential Fetch hits in the same run.
func BenchmarkFetchManyHits(b *testing.B) {
	ctx := context.Background()
	c := newBenchCache(b, benchServer(b).Client(b))
	v := newBenchValue(1 << 10)
	keys := make([]string, 100)
	for i := range keys {
		keys[i] = fmt.Sprint("k", i)
		if err := c.Set(ctx, keys[i], v); err != nil {
			b.Fatal(err)
		}
	}
	load := func(context.Context) (benchValue, error) { return v, nil }
	loadMany := func(context.Context, []string) (map[string]benchValue, error) {
		return nil, errors.New("unexpected load")
	}
	b.Run("100xFetch", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			for _, k := range keys {
				if _, err := c.Fetch(ctx, k, load); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
	b.Run("FetchMany100", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, _, err := c.FetchMany(ctx, keys, loadMany); err != nil {
				b.Fatal(err)
			}
		}
	})
}
