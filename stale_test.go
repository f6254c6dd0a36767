package cachemgr_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cachemgr/cachemgr"
	"github.com/cachemgr/cachemgr/internal/redistest"
	"github.com/redis/go-redis/v9"
)

// staleRace is a workload for guarantee 3: readers Fetch keys whose loader
// reads a fake database (and dawdles, so loads overlap invalidations);
// writers bump a key's version in the database and then invalidate. A read
// that starts after an invalidation returned must see at least the version
// written before it.
type staleRace struct {
	db     [8]atomic.Int64 // the source of truth: a version per key
	floors [8]atomic.Int64 // per key, the version every later read must reach
}

func (r *staleRace) raise(i int, v int64) {
	for {
		cur := r.floors[i].Load()
		if v <= cur || r.floors[i].CompareAndSwap(cur, v) {
			return
		}
	}
}

// staleReadsPerReader sizes the workload by count, not by time, so a
// loaded machine runs the same test as a quiet one, only slower.
const staleReadsPerReader = 150

// run makes 8 readers fetch staleReadsPerReader keys each while 2 writers
// invalidate keys until the readers are done, and returns the reads that
// saw a version below their floor.
func (r *staleRace) run(fetch func(i int) (int64, error), invalidate func(i int) error) (reads, stale int64, err error) {
	var readers, writers sync.WaitGroup
	var firstErr atomic.Pointer[error]
	var done atomic.Bool
	var nReads, nStale atomic.Int64
	for g := 0; g < 8; g++ {
		readers.Add(1)
		go func() {
			defer readers.Done()
			rnd := rand.New(rand.NewPCG(uint64(g), 1))
			for range staleReadsPerReader {
				i := rnd.IntN(len(r.db))
				floor := r.floors[i].Load()
				v, err := fetch(i)
				if err != nil {
					firstErr.CompareAndSwap(nil, &err)
					return
				}
				nReads.Add(1)
				if v < floor {
					nStale.Add(1)
				}
			}
		}()
	}
	for g := 0; g < 2; g++ {
		writers.Add(1)
		go func() {
			defer writers.Done()
			rnd := rand.New(rand.NewPCG(uint64(g), 2))
			// Bounded too, in case a reader hangs; the readers' count ends
			// the run.
			for n := 0; n < 100_000 && !done.Load(); n++ {
				i := rnd.IntN(len(r.db))
				v := r.db[i].Add(1)
				if err := invalidate(i); err != nil {
					firstErr.CompareAndSwap(nil, &err)
					return
				}
				r.raise(i, v)
				time.Sleep(time.Duration(rnd.IntN(500)) * time.Microsecond)
			}
		}()
	}
	readers.Wait()
	done.Store(true)
	writers.Wait()
	if p := firstErr.Load(); p != nil {
		err = *p
	}
	return nReads.Load(), nStale.Load(), err
}

// load reads key i from the database the slow way.
func (r *staleRace) load(i int) int64 {
	v := r.db[i].Load()
	time.Sleep(time.Duration(rand.IntN(1500)) * time.Microsecond)
	return v
}

// TestNoStaleSetRace proves guarantee 3 under concurrency for Delete,
// InvalidateTags and Bump, and shows the same workload finds stale reads in
// a naive cache-aside (GET, load, SET; DEL to invalidate).
func TestNoStaleSetRace(t *testing.T) {
	redistest.Each(t, func(t *testing.T, s *redistest.Server) {
		tests := []struct {
			name       string
			versioned  bool
			invalidate func(ctx context.Context, m *cachemgr.Manager, c *cachemgr.Cache[int64], r *staleRace, i int) error
		}{
			{"delete", false, func(ctx context.Context, _ *cachemgr.Manager, c *cachemgr.Cache[int64], _ *staleRace, i int) error {
				return c.Delete(ctx, fmt.Sprint(i))
			}},
			{"tags", false, func(ctx context.Context, m *cachemgr.Manager, _ *cachemgr.Cache[int64], _ *staleRace, i int) error {
				return m.InvalidateTags(ctx, fmt.Sprint("row:", i))
			}},
			{"bump", true, func(ctx context.Context, _ *cachemgr.Manager, c *cachemgr.Cache[int64], r *staleRace, i int) error {
				// Every key is invalidated: every key's current version
				// becomes its floor once Bump returns.
				var now [8]int64
				for j := range r.db {
					now[j] = r.db[j].Load()
				}
				if err := c.Bump(ctx); err != nil {
					return err
				}
				for j, v := range now {
					r.raise(j, v)
				}
				return nil
			}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				ctx := context.Background()
				m, _ := newManager(t, s)
				c := newCache[int64](t, m, "race-"+tt.name, cachemgr.WithVersioned(tt.versioned))
				var r staleRace
				reads, stale, err := r.run(func(i int) (int64, error) {
					return c.Fetch(ctx, fmt.Sprint(i), func(ctx context.Context) (int64, error) {
						cachemgr.EntryFrom(ctx).AddTags(fmt.Sprint("row:", i))
						return r.load(i), nil
					})
				}, func(i int) error { return tt.invalidate(ctx, m, c, &r, i) })
				if err != nil {
					t.Fatalf("workload error = %v", err)
				}
				if stale != 0 {
					t.Errorf("%d of %d reads were stale after an invalidation", stale, reads)
				}
				if want := int64(8 * staleReadsPerReader); reads != want {
					t.Errorf("%d reads, want %d", reads, want)
				}
				t.Logf("%s: %d reads, %d stale, stats %+v", tt.name, reads, stale, m.Stats())
			})
		}
		t.Run("naive cache-aside finds the race", func(t *testing.T) {
			ctx := context.Background()
			rdb := s.Client(t)
			var r staleRace
			reads, stale, err := r.run(func(i int) (int64, error) {
				key := fmt.Sprint("naive:", i)
				v, err := rdb.Get(ctx, key).Int64()
				if err == nil {
					return v, nil
				}
				if !errors.Is(err, redis.Nil) {
					return 0, err
				}
				v = r.load(i)
				return v, rdb.Set(ctx, key, v, time.Minute).Err()
			}, func(i int) error { return rdb.Del(ctx, fmt.Sprint("naive:", i)).Err() })
			if err != nil {
				t.Fatalf("workload error = %v", err)
			}
			t.Logf("naive: %d reads, %d stale", reads, stale)
			if stale == 0 {
				t.Errorf("the naive write path served no stale read in %d reads: the workload no longer exercises the race", reads)
			}
		})
	})
}
