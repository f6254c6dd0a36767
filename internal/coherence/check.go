package coherence

import (
	"cmp"
	"fmt"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// Bounds are how stale a read answered by an L1 tier may be, before its
// process has received the invalidation's event.
type Bounds struct {
	// Delivery is how long after an invalidation returned its event may
	// take to reach the L1 tier of another process.
	Delivery time.Duration
	// Liveness is how long a process may go on trusting its L1 tier after
	// its subscription last showed signs of life. It is added to Delivery
	// for a read whose process had a stalled subscription in the window.
	Liveness time.Duration
}

// Result is the verdict for one strategy's cache.
type Result struct {
	Strategy string
	// Reads counts key reads that saw a value; Misses and Errors those
	// that did not.
	Reads, Misses, Errors int
	// Checked counts reads that began after at least one invalidation of
	// their key had returned: the reads the check says something about.
	Checked int
	// Invalidations counts the calls that returned nil, Failed the others
	// (which promise nothing and are not checked).
	Invalidations, Failed int
	// Stale counts reads not answered by an L1 tier (or in a process
	// without one) that saw a version older than an invalidation which
	// returned before they began.
	Stale int
	// AfterEvent counts L1 reads that were stale although their process
	// had already received the invalidation's event (or made the
	// invalidation itself).
	AfterEvent int
	// BeyondBound counts L1 reads, before the event, stale for longer than
	// the bound.
	BeyondBound int
	// Tolerated counts L1 reads stale within the bound, before the event.
	Tolerated int
	// WrongKey counts values that belonged to another key; Impossible
	// versions no update had produced by the time the read returned.
	WrongKey, Impossible int
	// Worst is the longest time from an invalidation's return to the start
	// of a read it should have kept from the old value; WorstTolerated the
	// same among tolerated L1 reads.
	Worst, WorstTolerated time.Duration
	// Examples describes the worst violations, at most five.
	Examples []string

	examples []example
}

type example struct {
	staleness time.Duration
	text      string
}

// Violations returns the number of reads that broke the guarantee.
func (r *Result) Violations() int {
	return r.Stale + r.AfterEvent + r.BeyondBound + r.WrongKey + r.Impossible
}

// Report is the outcome of [Check].
type Report struct {
	Bounds     Bounds
	Strategies []*Result // by name
	// Span is the time from the first record to the last.
	Span time.Duration
	// Events counts notices received by other processes after an
	// invalidation that published an event; DeliveryMax and DeliveryP99
	// are how long after the invalidation returned they arrived.
	Events                   int
	DeliveryMax, DeliveryP99 time.Duration
	// Faults describes the injected faults, in order.
	Faults []string
	// Stats holds each process's Manager statistics, by process.
	Stats map[string]map[string]uint64
	// Processes lists the processes seen, with " (L1)" after those with
	// an L1 tier.
	Processes []string
}

// Violations returns the number of violating reads over all strategies.
func (r *Report) Violations() int {
	n := 0
	for _, s := range r.Strategies {
		n += s.Violations()
	}
	return n
}

// Strategy returns the result for strategy name, or nil.
func (r *Report) Strategy(name string) *Result {
	for _, s := range r.Strategies {
		if s.Strategy == name {
			return s
		}
	}
	return nil
}

type rowKey struct{ strategy, key string }

type eventKey struct {
	proc string
	id   int64
}

// cover is one invalidation's claim on one key: reads beginning after end
// must see at least version req.
type cover struct {
	end int64
	req int64
	inv *Record
}

// updates of one row, ordered by End and by Start (one writer owns a row,
// so both orders agree), with running maxima of the version.
type rowUpdates struct {
	byEnd, byStart       []int64
	maxByEnd, maxByStart []int64
}

// Check judges a merged history. A read of key k that began after an
// invalidation covering k returned must see at least the newest version of
// k whose update had completed before that invalidation began. A read
// answered by a process's L1 tier may instead be stale for at most
// b.Delivery after the invalidation returned (b.Liveness more if that
// process's subscription was stalled meanwhile), and not at all once the
// process had received the invalidation's event. Failed invalidations and
// reads that saw no value are not judged.
func Check(recs []Record, b Bounds) *Report {
	rep := &Report{Bounds: b, Stats: map[string]map[string]uint64{}}
	results := map[string]*Result{}
	result := func(s string) *Result {
		r := results[s]
		if r == nil {
			r = &Result{Strategy: s}
			results[s] = r
		}
		return r
	}
	updates := map[rowKey]*rowUpdates{}
	type upd struct{ start, end, v int64 }
	raw := map[rowKey][]upd{}
	var invs, reads []*Record
	events := map[eventKey]int64{}
	stalls := map[string][][2]int64{}
	procs := map[string]bool{}
	var first, last int64
	for i := range recs {
		r := &recs[i]
		for _, t := range []int64{r.Start, r.End} {
			if t != 0 && (first == 0 || t < first) {
				first = t
			}
			last = max(last, t)
		}
		if r.Proc != "" && r.Kind != KindFault {
			procs[r.Proc] = procs[r.Proc] || r.L1
		}
		switch r.Kind {
		case KindRead:
			reads = append(reads, r)
		case KindUpdate:
			k := rowKey{r.Strategy, r.Key}
			raw[k] = append(raw[k], upd{r.Start, r.End, r.Version})
		case KindInvalidate:
			if r.Err != "" {
				result(r.Strategy).Failed++
				continue
			}
			result(r.Strategy).Invalidations++
			invs = append(invs, r)
		case KindEvent:
			k := eventKey{r.Proc, r.ID}
			if t, ok := events[k]; !ok || r.Start < t {
				events[k] = r.Start
			}
		case KindStall:
			stalls[r.Proc] = append(stalls[r.Proc], [2]int64{r.Start, r.End})
		case KindFault:
			rep.Faults = append(rep.Faults, fmt.Sprintf("%s at %s for %s",
				r.Op, rel(r.Start, first), time.Duration(r.End-r.Start).Round(time.Millisecond)))
		case KindStats:
			rep.Stats[r.Proc] = r.Stats
		}
	}
	rep.Span = time.Duration(last - first)
	for p, l1 := range procs {
		if l1 {
			p += " (L1)"
		}
		rep.Processes = append(rep.Processes, p)
	}
	slices.Sort(rep.Processes)

	for k, us := range raw {
		u := &rowUpdates{}
		slices.SortFunc(us, func(a, b upd) int { return cmp.Compare(a.end, b.end) })
		var m int64
		for _, x := range us {
			m = max(m, x.v)
			u.byEnd = append(u.byEnd, x.end)
			u.maxByEnd = append(u.maxByEnd, m)
		}
		slices.SortFunc(us, func(a, b upd) int { return cmp.Compare(a.start, b.start) })
		m = 0
		for _, x := range us {
			m = max(m, x.v)
			u.byStart = append(u.byStart, x.start)
			u.maxByStart = append(u.maxByStart, m)
		}
		updates[k] = u
	}

	covers := map[rowKey][]cover{}
	for _, inv := range invs {
		for _, key := range inv.Keys {
			k := rowKey{inv.Strategy, key}
			req := newestBefore(updates[k], inv.Start, false)
			if req > 0 {
				covers[k] = append(covers[k], cover{end: inv.End, req: req, inv: inv})
			}
		}
	}
	prefixMax := map[rowKey][]int64{}
	for k, cs := range covers {
		slices.SortFunc(cs, func(a, b cover) int { return cmp.Compare(a.end, b.end) })
		pm := make([]int64, len(cs))
		var m int64
		for i, c := range cs {
			m = max(m, c.req)
			pm[i] = m
		}
		prefixMax[k] = pm
	}

	hasEvent := func(proc string, inv *Record, at int64) bool {
		if inv.Proc == proc {
			return true // its own invalidation: its L1 is its to clear
		}
		t, ok := events[eventKey{proc, inv.ID}]
		return ok && inv.Sent > 0 && t < at
	}
	stalled := func(proc string, from, to int64) bool {
		for _, w := range stalls[proc] {
			if w[0] <= to && (w[1] == 0 || w[1] >= from) {
				return true
			}
		}
		return false
	}

	slices.SortStableFunc(reads, func(a, b *Record) int { return cmp.Compare(a.Start, b.Start) })
	for _, rd := range reads {
		res := result(rd.Strategy)
		switch {
		case rd.Err != "":
			res.Errors++
			continue
		case rd.Version < 0:
			res.Misses++
			continue
		}
		res.Reads++
		k := rowKey{rd.Strategy, rd.Key}
		if rd.Got != "" && rd.Got != rd.Key {
			res.WrongKey++
			res.add(0, fmt.Sprintf("wrong key: %s %s %q at %s got the value of %q",
				procName(rd), rd.Op, rd.Key, rel(rd.Start, first), rd.Got))
			continue
		}
		if possible := newestBefore(updates[k], rd.End, true); rd.Version > possible {
			res.Impossible++
			res.add(0, fmt.Sprintf("impossible: %s %s %q at %s saw v%d, newest written by then v%d",
				procName(rd), rd.Op, rd.Key, rel(rd.Start, first), rd.Version, possible))
			continue
		}
		cs, pm := covers[k], prefixMax[k]
		j := sort.Search(len(cs), func(i int) bool { return cs[i].end >= rd.Start })
		if j == 0 {
			continue
		}
		res.Checked++
		if pm[j-1] <= rd.Version {
			continue
		}
		i := sort.Search(j, func(i int) bool { return pm[i] > rd.Version })
		oldest := cs[i]
		staleness := time.Duration(rd.Start - oldest.end)
		kind := ""
		switch {
		case !rd.L1 || rd.Tier != TierL1:
			res.Stale++
			kind = "stale"
		default:
			for _, c := range cs[i:j] {
				if c.req > rd.Version && hasEvent(rd.Proc, c.inv, rd.Start) {
					kind = fmt.Sprintf("stale after the event of %s by %s of v%d", c.inv.Op, c.inv.Proc, c.req)
					break
				}
			}
			bound := b.Delivery
			if stalled(rd.Proc, oldest.end, rd.Start) {
				bound += b.Liveness
			}
			switch {
			case kind != "":
				res.AfterEvent++
			case staleness > bound:
				res.BeyondBound++
				kind = fmt.Sprintf("stale beyond %v", bound)
			default:
				res.Tolerated++
				res.WorstTolerated = max(res.WorstTolerated, staleness)
				continue
			}
		}
		res.Worst = max(res.Worst, staleness)
		inv := oldest.inv
		res.add(staleness, fmt.Sprintf("%s: %s %s(%s) %q at %s saw v%d; %s by %s of v%d returned %v before",
			kind, procName(rd), rd.Op, rd.Tier, rd.Key, rel(rd.Start, first), rd.Version,
			inv.Op, inv.Proc, oldest.req, staleness.Round(time.Microsecond)))
	}

	var lat []time.Duration
	byID := map[int64]*Record{}
	for _, inv := range invs {
		byID[inv.ID] = inv
	}
	for k, t := range events {
		if inv := byID[k.id]; inv != nil && inv.Sent > 0 {
			lat = append(lat, time.Duration(t-inv.End))
		}
	}
	slices.Sort(lat)
	rep.Events = len(lat)
	if len(lat) > 0 {
		rep.DeliveryMax = lat[len(lat)-1]
		rep.DeliveryP99 = lat[(len(lat)-1)*99/100]
	}

	for _, r := range results {
		slices.SortStableFunc(r.examples, func(a, b example) int { return cmp.Compare(b.staleness, a.staleness) })
		for _, e := range r.examples[:min(5, len(r.examples))] {
			r.Examples = append(r.Examples, e.text)
		}
		r.examples = nil
		rep.Strategies = append(rep.Strategies, r)
	}
	slices.SortFunc(rep.Strategies, func(a, b *Result) int { return strings.Compare(a.Strategy, b.Strategy) })
	return rep
}

// add keeps a violation's description.
func (r *Result) add(staleness time.Duration, text string) {
	r.examples = append(r.examples, example{staleness, text})
}

// newestBefore returns the newest version of a row whose update had ended
// (or, with started, begun) before t; 0 if none.
func newestBefore(u *rowUpdates, t int64, started bool) int64 {
	if u == nil {
		return 0
	}
	times, maxes := u.byEnd, u.maxByEnd
	if started {
		times, maxes = u.byStart, u.maxByStart
	}
	n := sort.Search(len(times), func(i int) bool { return times[i] >= t })
	if n == 0 {
		return 0
	}
	return maxes[n-1]
}

func procName(r *Record) string {
	if r.L1 {
		return r.Proc + "(L1)"
	}
	return r.Proc
}

// rel formats t as an offset from the start of the run.
func rel(t, first int64) string {
	return "+" + time.Duration(t-first).Round(time.Microsecond).String()
}

// String formats the report as a table with one row per strategy, followed
// by the faults, event delivery, the worst violations and each process's
// statistics.
func (r *Report) String() string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "coherence: %d processes %v over %v; L1 bounds: delivery %v, liveness %v\n",
		len(r.Processes), r.Processes, r.Span.Round(time.Millisecond), r.Bounds.Delivery, r.Bounds.Liveness)
	tw := tabwriter.NewWriter(&sb, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "strategy\treads\tchecked\tinvalidations\tstale\tL1 after event\tL1 beyond bound\twrong/impossible\tworst\tL1 tolerated\tworst tolerated\t")
	for _, s := range r.Strategies {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%v\t%d\t%v\t\n",
			s.Strategy, s.Reads, s.Checked, s.Invalidations, s.Stale, s.AfterEvent, s.BeyondBound,
			s.WrongKey+s.Impossible, s.Worst.Round(time.Microsecond), s.Tolerated, s.WorstTolerated.Round(time.Microsecond))
	}
	tw.Flush()
	for _, s := range r.Strategies {
		if s.Failed > 0 || s.Errors > 0 || s.Misses > 0 {
			fmt.Fprintf(&sb, "%s: %d misses, %d read errors, %d failed invalidations\n", s.Strategy, s.Misses, s.Errors, s.Failed)
		}
	}
	fmt.Fprintf(&sb, "events: %d received by other processes, delivery max %v, p99 %v\n",
		r.Events, r.DeliveryMax.Round(time.Microsecond), r.DeliveryP99.Round(time.Microsecond))
	for _, f := range r.Faults {
		fmt.Fprintf(&sb, "fault: %s\n", f)
	}
	for _, s := range r.Strategies {
		for _, e := range s.Examples {
			fmt.Fprintf(&sb, "%s: %s\n", s.Strategy, e)
		}
	}
	procs := make([]string, 0, len(r.Stats))
	for p := range r.Stats {
		procs = append(procs, p)
	}
	slices.Sort(procs)
	for _, p := range procs {
		st := r.Stats[p]
		names := make([]string, 0, len(st))
		for n := range st {
			names = append(names, n)
		}
		slices.Sort(names)
		fmt.Fprintf(&sb, "stats %s:", p)
		for _, n := range names {
			fmt.Fprintf(&sb, " %s=%d", n, st[n])
		}
		sb.WriteByte('\n')
	}
	return sb.String()
}
