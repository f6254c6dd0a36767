package cachemgr_test

// The soak test: long mixed traffic with restarts, every read checked
// against a model of the database (docs/reliability.md, "Found by the
// soak").

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cachemgr/cachemgr"
	"github.com/cachemgr/cachemgr/internal/redistest"
)

// TestSoak runs mixed Get/Fetch/Set/Delete/InvalidateTags/Bump traffic
// from 64 goroutines over two Managers for CACHEMGR_SOAK (for example
// CACHEMGR_SOAK=10m), restarting the server twice, and checks every read
// against a model of the database: no value of another key, no value older
// than the last invalidation that returned before the read began, no
// failed Fetch, and flat memory and goroutine counts.
//
//	CACHEMGR_SOAK=10m go test -race -run TestSoak -timeout 30m -v .
func TestSoak(t *testing.T) {
	env := os.Getenv("CACHEMGR_SOAK")
	if env == "" {
		t.Skip("set CACHEMGR_SOAK=10m to run the soak test")
	}
	dur, err := time.ParseDuration(env)
	if err != nil || dur <= 0 {
		t.Fatalf("CACHEMGR_SOAK=%q: want a duration such as 10m", env)
	}
	noLeaks(t)
	const (
		nkeys      = 256
		groups     = 16
		goroutines = 64
	)
	s := redistest.Start(t)
	var caches [2]*cachemgr.Cache[relItem]
	var managers [2]*cachemgr.Manager
	for i := range managers {
		managers[i] = managerOn(t, relClient(t, s.Addr(), nil), cachemgr.WithOpTimeout(relOp))
		caches[i] = newCache[relItem](t, managers[i], "soak", cachemgr.WithVersioned(true), cachemgr.WithTTL(30*time.Second))
	}
	var model struct {
		db     [nkeys]atomic.Int64           // the source of truth
		floors [nkeys]atomic.Int64           // what every read that starts now must reach
		why    [nkeys]atomic.Pointer[string] // the write that set the floor
		locks  [nkeys]sync.Mutex             // one writer per key at a time
	}
	begin := time.Now()
	raise := func(k int, v int64, op string) {
		for {
			cur := model.floors[k].Load()
			if v <= cur {
				return
			}
			if model.floors[k].CompareAndSwap(cur, v) {
				why := fmt.Sprintf("%s of version %d at %v", op, v, time.Since(begin).Round(time.Millisecond))
				model.why[k].Store(&why)
				return
			}
		}
	}
	tags := func(k int) []string { return []string{fmt.Sprint("row:", k), fmt.Sprint("group:", k%groups)} }
	var counts struct {
		gets, hits, fetches, sets, deletes, invalidations, bumps atomic.Int64
		writeErrs, getErrs                                       atomic.Int64
		fetchErrs, wrong, stale                                  atomic.Int64
	}
	var failMu sync.Mutex
	var failures []string
	fail := func(format string, args ...any) {
		failMu.Lock()
		defer failMu.Unlock()
		if len(failures) < 20 {
			failures = append(failures, fmt.Sprintf(format, args...))
		}
	}
	check := func(op string, k int, floor int64, v relItem) {
		key := strconv.Itoa(k)
		switch {
		case v.Key != key:
			counts.wrong.Add(1)
			fail("%s(%s) returned the value of %q", op, key, v.Key)
		case v.Version < floor:
			counts.stale.Add(1)
			why := "?"
			if p := model.why[k].Load(); p != nil {
				why = *p
			}
			fail("%v: %s(%s) returned version %d, older than version %d (floor now: %s)", time.Since(begin).Round(time.Millisecond), op, key, v.Version, floor, why)
		}
	}
	ctx := context.Background()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rnd := rand.New(rand.NewPCG(uint64(g), 42))
			for {
				select {
				case <-stop:
					return
				default:
				}
				i := rnd.IntN(2)
				c, m := caches[i], managers[i]
				k := rnd.IntN(nkeys)
				key := strconv.Itoa(k)
				// Per mille: reads dominate; invalidations are frequent
				// enough to race loads, rare enough to leave hits.
				switch op := rnd.IntN(1000); {
				case op < 450:
					floor := model.floors[k].Load()
					v, err := c.Fetch(ctx, key, func(ctx context.Context) (relItem, error) {
						cachemgr.EntryFrom(ctx).AddTags(tags(k)...)
						v := model.db[k].Load()
						time.Sleep(time.Duration(rnd.IntN(2000)) * time.Microsecond) // the database's own latency
						return relItem{Key: key, Version: v}, nil
					})
					counts.fetches.Add(1)
					if err != nil {
						counts.fetchErrs.Add(1)
						fail("%v: Fetch(%s) error = %v", time.Since(begin).Round(time.Millisecond), key, err)
						continue
					}
					check("Fetch", k, floor, v)
				case op < 750:
					floor := model.floors[k].Load()
					v, err := c.Get(ctx, key)
					counts.gets.Add(1)
					if err != nil {
						counts.getErrs.Add(1)
						continue
					}
					counts.hits.Add(1)
					check("Get", k, floor, v)
				case op < 850:
					model.locks[k].Lock()
					v := model.db[k].Add(1)
					if err := c.Set(ctx, key, relItem{Key: key, Version: v}, cachemgr.Tags(tags(k)...)); err != nil {
						counts.writeErrs.Add(1)
					} else {
						raise(k, v, "Set")
					}
					model.locks[k].Unlock()
					counts.sets.Add(1)
				case op < 920:
					model.locks[k].Lock()
					v := model.db[k].Add(1)
					if err := c.Delete(ctx, key); err != nil {
						counts.writeErrs.Add(1)
					} else {
						raise(k, v, "Delete")
					}
					model.locks[k].Unlock()
					counts.deletes.Add(1)
				case op < 970:
					model.locks[k].Lock()
					v := model.db[k].Add(1)
					if err := m.InvalidateTags(ctx, fmt.Sprint("row:", k)); err != nil {
						counts.writeErrs.Add(1)
					} else {
						raise(k, v, "InvalidateTags(row)")
					}
					model.locks[k].Unlock()
					counts.invalidations.Add(1)
				case op < 999:
					// A group: every member changes in the database, then
					// the group's tag is invalidated. Locks in key order.
					grp := k % groups
					var members []int
					for j := grp; j < nkeys; j += groups {
						members = append(members, j)
					}
					vs := make([]int64, len(members))
					for n, j := range members {
						model.locks[j].Lock()
						vs[n] = model.db[j].Add(1)
					}
					err := m.InvalidateTags(ctx, fmt.Sprint("group:", grp))
					for n, j := range members {
						if err == nil {
							raise(j, vs[n], "InvalidateTags(group)")
						}
						model.locks[j].Unlock()
					}
					if err != nil {
						counts.writeErrs.Add(1)
					}
					counts.invalidations.Add(1)
				default:
					var snap [nkeys]int64
					for j := range snap {
						snap[j] = model.db[j].Load()
					}
					if err := c.Bump(ctx); err != nil {
						counts.writeErrs.Add(1)
					} else {
						for j, v := range snap {
							raise(j, v, "Bump")
						}
					}
					counts.bumps.Add(1)
				}
			}
		}()
	}

	type sample struct {
		at         time.Duration
		heap       uint64
		goroutines int
	}
	var samples []sample
	every := max(dur/30, time.Second)
	restarts := []time.Duration{dur / 3, 2 * dur / 3}
	tick := time.NewTicker(every)
	for elapsed := time.Duration(0); elapsed < dur; elapsed = time.Since(begin) {
		<-tick.C
		if len(restarts) > 0 && time.Since(begin) >= restarts[0] {
			restarts = restarts[1:]
			s.Restart()
			t.Logf("%v: server restarted", time.Since(begin).Round(time.Second))
		}
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		samples = append(samples, sample{time.Since(begin).Round(time.Second), ms.HeapInuse, runtime.NumGoroutine()})
	}
	tick.Stop()
	close(stop)
	wg.Wait()

	total := counts.gets.Load() + counts.fetches.Load() + counts.sets.Load() + counts.deletes.Load() + counts.invalidations.Load() + counts.bumps.Load()
	t.Logf("%v: %d operations (%.0f/s): %d Fetch, %d Get (%d hits), %d Set, %d Delete, %d InvalidateTags, %d Bump; %d write errors, %d Get errors",
		dur, total, float64(total)/dur.Seconds(), counts.fetches.Load(), counts.gets.Load(), counts.hits.Load(), counts.sets.Load(),
		counts.deletes.Load(), counts.invalidations.Load(), counts.bumps.Load(), counts.writeErrs.Load(), counts.getErrs.Load())
	for i, m := range managers {
		t.Logf("Manager %d: %+v", i, m.Stats())
	}
	var heaps []string
	for _, sm := range samples {
		heaps = append(heaps, fmt.Sprintf("%v:%dMiB/%dg", sm.at, sm.heap>>20, sm.goroutines))
	}
	t.Logf("heap in use / goroutines after GC: %s", strings.Join(heaps, " "))
	if n := counts.fetchErrs.Load() + counts.wrong.Load() + counts.stale.Load(); n > 0 {
		t.Errorf("%d failed Fetches, %d values of another key, %d stale reads; first: %q",
			counts.fetchErrs.Load(), counts.wrong.Load(), counts.stale.Load(), failures)
	}
	if len(samples) >= 8 {
		// Flat: the median of the last quarter against that of the second
		// (the first may still be warming up). Medians, because a restart
		// briefly adds reconnecting goroutines.
		median := func(ss []sample) sample {
			hs := make([]uint64, len(ss))
			gs := make([]int, len(ss))
			for i, sm := range ss {
				hs[i], gs[i] = sm.heap, sm.goroutines
			}
			slices.Sort(hs)
			slices.Sort(gs)
			return sample{at: ss[len(ss)/2].at, heap: hs[len(hs)/2], goroutines: gs[len(gs)/2]}
		}
		q := len(samples) / 4
		early, late := median(samples[q:2*q]), median(samples[len(samples)-q:])
		if late.heap > early.heap*3/2+8<<20 {
			t.Errorf("heap in use grew from %d MiB (median around %v) to %d MiB (around %v)", early.heap>>20, early.at, late.heap>>20, late.at)
		}
		if late.goroutines > early.goroutines+4 {
			t.Errorf("goroutines grew from %d (median around %v) to %d (around %v)", early.goroutines, early.at, late.goroutines, late.at)
		}
	}
}
