// Package benchpair runs paired benchmarks: two sides, A and a base,
// alternate in blocks inside one benchmark loop, so that both see the same
// machine load, and the ratio of their times is taken per iteration. On a
// shared machine, run with -count 6 or more and take the median and spread
// of the runs' ratios.
package benchpair

import (
	"runtime"
	"slices"
	"testing"
	"time"
)

// Result is what Run measured.
type Result struct {
	A, Base []time.Duration // each iteration's block time per side
	Ops     int             // operations in one block
}

// Run calls a and base alternately, one block each per iteration of b's
// loop, the side that goes first alternating too. A block is ops calls.
func Run(b *testing.B, ops int, a, base func()) Result {
	b.Helper()
	if ops < 1 {
		b.Fatalf("benchpair: %d ops per block", ops)
	}
	block := func(f func()) time.Duration {
		start := time.Now()
		for range ops {
			f()
		}
		return time.Since(start)
	}
	r := Result{Ops: ops}
	for i := 0; b.Loop(); i++ {
		if i%2 == 0 {
			r.A = append(r.A, block(a))
			r.Base = append(r.Base, block(base))
		} else {
			r.Base = append(r.Base, block(base))
			r.A = append(r.A, block(a))
		}
	}
	return r
}

// Ratio returns the median over the iterations of A's block time over the
// base's: a stall of the whole process in one block does not move it.
func (r Result) Ratio() float64 {
	ratios := make([]float64, len(r.A))
	for i := range r.A {
		ratios[i] = float64(r.A[i]) / float64(r.Base[i])
	}
	slices.Sort(ratios)
	return ratios[len(ratios)/2]
}

// Report reports, under the names given to the two sides, each side's mean
// and median time per operation, and the ratio (Ratio) of A to the base.
func (r Result) Report(b *testing.B, a, base string) {
	b.Helper()
	for _, s := range []struct {
		name string
		d    []time.Duration
	}{{a, r.A}, {base, r.Base}} {
		var sum time.Duration
		for _, d := range s.d {
			sum += d
		}
		b.ReportMetric(float64(sum.Nanoseconds())/float64(len(s.d)*r.Ops), s.name+"-ns/op")
		b.ReportMetric(float64(Median(s.d).Nanoseconds())/float64(r.Ops), s.name+"-median-ns/op")
	}
	b.ReportMetric(r.Ratio(), "ratio")
}

// ReportAllocs reports the bytes and allocations per operation of f, as
// name-B/op and name-allocs/op, counted over calls calls made outside the
// timed loop (after one warm-up call); f makes ops operations.
func ReportAllocs(b *testing.B, name string, calls, ops int, f func()) {
	b.Helper()
	f()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range calls {
		f()
	}
	runtime.ReadMemStats(&after)
	n := float64(calls * ops)
	b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/n, name+"-B/op")
	b.ReportMetric(float64(after.Mallocs-before.Mallocs)/n, name+"-allocs/op")
}

// Median returns the median of d.
func Median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}
