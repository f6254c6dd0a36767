package coherence

import (
	"cmp"
	"fmt"
	"maps"
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
	c := &checker{
		rep:     &Report{Bounds: b, Stats: map[string]map[string]uint64{}},
		results: map[string]*Result{},
		raw:     map[rowKey][]update{},
		events:  map[eventKey]int64{},
		stalls:  map[string][][2]int64{},
		procs:   map[string]bool{},
	}
	for i := range recs {
		c.add(&recs[i])
	}
	c.rep.Span = time.Duration(c.last - c.first)
	c.rep.Processes = c.processes()
	c.indexUpdates()
	c.indexCovers()
	slices.SortStableFunc(c.reads, func(a, b *Record) int { return cmp.Compare(a.Start, b.Start) })
	for _, rd := range c.reads {
		c.judge(rd)
	}
	c.rep.Events, c.rep.DeliveryMax, c.rep.DeliveryP99 = c.delivery()
	c.rep.Strategies = c.strategies()
	return c.rep
}

// checker holds a history indexed for Check.
type checker struct {
	rep     *Report
	results map[string]*Result // by strategy
	raw     map[rowKey][]update
	updates map[rowKey]*rowUpdates
	// covers holds the claims of invalidations on each row, by end, and
	// prefixMax their running maximum of the version required.
	covers      map[rowKey][]cover
	prefixMax   map[rowKey][]int64
	invs, reads []*Record
	events      map[eventKey]int64    // first receipt of an event by a process
	stalls      map[string][][2]int64 // stalled subscriptions, by process
	procs       map[string]bool       // processes seen, and whether they have an L1 tier
	first, last int64                 // the earliest and latest time recorded so far
}

// update is one completed update of a row.
type update struct{ start, end, v int64 }

// result returns the result of strategy s, adding it when it is new.
func (c *checker) result(s string) *Result {
	r := c.results[s]
	if r == nil {
		r = &Result{Strategy: s}
		c.results[s] = r
	}
	return r
}

// add takes one record of the history in.
func (c *checker) add(r *Record) {
	c.observe(r)
	switch r.Kind {
	case KindRead:
		c.reads = append(c.reads, r)
	case KindUpdate:
		k := rowKey{r.Strategy, r.Key}
		c.raw[k] = append(c.raw[k], update{r.Start, r.End, r.Version})
	case KindInvalidate:
		c.addInvalidation(r)
	case KindEvent:
		c.addEvent(r)
	case KindStall:
		c.stalls[r.Proc] = append(c.stalls[r.Proc], [2]int64{r.Start, r.End})
	case KindFault:
		c.rep.Faults = append(c.rep.Faults, fmt.Sprintf("%s at %s for %s",
			r.Op, rel(r.Start, c.first), time.Duration(r.End-r.Start).Round(time.Millisecond)))
	case KindStats:
		c.rep.Stats[r.Proc] = r.Stats
	}
}

// observe widens the span of the history to r's times, and notes r's
// process.
func (c *checker) observe(r *Record) {
	c.widen(r.Start)
	c.widen(r.End)
	if r.Proc != "" && r.Kind != KindFault {
		c.procs[r.Proc] = c.procs[r.Proc] || r.L1
	}
}

// widen widens the span of the history to time t (0: none).
func (c *checker) widen(t int64) {
	if t != 0 && (c.first == 0 || t < c.first) {
		c.first = t
	}
	c.last = max(c.last, t)
}

// addEvent keeps the first time a process received an event.
func (c *checker) addEvent(r *Record) {
	k := eventKey{r.Proc, r.ID}
	if t, ok := c.events[k]; !ok || r.Start < t {
		c.events[k] = r.Start
	}
}

// addInvalidation counts an invalidation, and keeps it for the check when
// it returned nil.
func (c *checker) addInvalidation(r *Record) {
	if r.Err != "" {
		c.result(r.Strategy).Failed++
		return
	}
	c.result(r.Strategy).Invalidations++
	c.invs = append(c.invs, r)
}

// processes lists the processes seen, sorted, with " (L1)" after those
// with an L1 tier.
func (c *checker) processes() []string {
	var out []string
	for p, l1 := range c.procs {
		if l1 {
			p += " (L1)"
		}
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}

// indexUpdates orders each row's updates by end and by start, with the
// running maxima of the version.
func (c *checker) indexUpdates() {
	c.updates = map[rowKey]*rowUpdates{}
	for k, us := range c.raw {
		u := &rowUpdates{}
		u.byEnd, u.maxByEnd = runningMax(us, func(x update) int64 { return x.end })
		u.byStart, u.maxByStart = runningMax(us, func(x update) int64 { return x.start })
		c.updates[k] = u
	}
}

// runningMax sorts us by the time at returns, and returns those times in
// order with the running maximum of the version.
func runningMax(us []update, at func(update) int64) (times, maxes []int64) {
	slices.SortFunc(us, func(a, b update) int { return cmp.Compare(at(a), at(b)) })
	var m int64
	for _, x := range us {
		m = max(m, x.v)
		times = append(times, at(x))
		maxes = append(maxes, m)
	}
	return times, maxes
}

// indexCovers turns each invalidation into its claims on the rows it
// covers, ordered by end, with the running maximum of the version
// required.
func (c *checker) indexCovers() {
	c.covers = map[rowKey][]cover{}
	for _, inv := range c.invs {
		for _, key := range inv.Keys {
			k := rowKey{inv.Strategy, key}
			if req := newestBefore(c.updates[k], inv.Start, false); req > 0 {
				c.covers[k] = append(c.covers[k], cover{end: inv.End, req: req, inv: inv})
			}
		}
	}
	c.prefixMax = map[rowKey][]int64{}
	for k, cs := range c.covers {
		slices.SortFunc(cs, func(a, b cover) int { return cmp.Compare(a.end, b.end) })
		pm := make([]int64, len(cs))
		var m int64
		for i, cv := range cs {
			m = max(m, cv.req)
			pm[i] = m
		}
		c.prefixMax[k] = pm
	}
}

// judge checks one read and counts it in its strategy's result.
func (c *checker) judge(rd *Record) {
	res := c.result(rd.Strategy)
	switch {
	case rd.Err != "":
		res.Errors++
		return
	case rd.Version < 0:
		res.Misses++
		return
	}
	res.Reads++
	k := rowKey{rd.Strategy, rd.Key}
	if c.implausible(res, rd, k) {
		return
	}
	cs, pm := c.covers[k], c.prefixMax[k]
	j := sort.Search(len(cs), func(i int) bool { return cs[i].end >= rd.Start })
	if j == 0 {
		return
	}
	res.Checked++
	if pm[j-1] <= rd.Version {
		return
	}
	// The invalidations cs[i:j] returned before rd began and required a
	// newer version than it saw; cs[i] is the first of them.
	i := sort.Search(j, func(i int) bool { return pm[i] > rd.Version })
	c.judgeStale(res, rd, cs[i:j])
}

// implausible counts and reports read rd of row k when it got another
// row's value, or a version not written by the time it returned.
func (c *checker) implausible(res *Result, rd *Record, k rowKey) bool {
	if rd.Got != "" && rd.Got != rd.Key {
		res.WrongKey++
		res.add(0, fmt.Sprintf("wrong key: %s %s %q at %s got the value of %q",
			procName(rd), rd.Op, rd.Key, rel(rd.Start, c.first), rd.Got))
		return true
	}
	if possible := newestBefore(c.updates[k], rd.End, true); rd.Version > possible {
		res.Impossible++
		res.add(0, fmt.Sprintf("impossible: %s %s %q at %s saw v%d, newest written by then v%d",
			procName(rd), rd.Op, rd.Key, rel(rd.Start, c.first), rd.Version, possible))
		return true
	}
	return false
}

// judgeStale counts read rd, which saw a version older than the
// invalidations cs required (cs[0] the first to return): a violation,
// unless an L1 tier answered it within the bound and before the event.
func (c *checker) judgeStale(res *Result, rd *Record, cs []cover) {
	oldest := cs[0]
	staleness := time.Duration(rd.Start - oldest.end)
	v, kind := staleRead, "stale"
	if rd.L1 && rd.Tier == TierL1 {
		v, kind = c.judgeL1(rd, cs, staleness)
	}
	switch v {
	case toleratedL1:
		res.Tolerated++
		res.WorstTolerated = max(res.WorstTolerated, staleness)
		return
	case staleRead:
		res.Stale++
	case afterEvent:
		res.AfterEvent++
	case beyondBound:
		res.BeyondBound++
	}
	res.Worst = max(res.Worst, staleness)
	inv := oldest.inv
	res.add(staleness, fmt.Sprintf("%s: %s %s(%s) %q at %s saw v%d; %s by %s of v%d returned %v before",
		kind, procName(rd), rd.Op, rd.Tier, rd.Key, rel(rd.Start, c.first), rd.Version,
		inv.Op, inv.Proc, oldest.req, staleness.Round(time.Microsecond)))
}

// verdict is how Check counts a stale read.
type verdict uint8

const (
	staleRead   verdict = iota // not answered by an L1 tier: Stale
	afterEvent                 // by an L1 tier after the event: AfterEvent
	beyondBound                // by an L1 tier, beyond the bound: BeyondBound
	toleratedL1                // by an L1 tier within the bound: Tolerated
)

// judgeL1 judges read rd, answered by an L1 tier stale for staleness
// (see judgeStale), and describes a violation.
func (c *checker) judgeL1(rd *Record, cs []cover, staleness time.Duration) (verdict, string) {
	for _, cv := range cs {
		if cv.req > rd.Version && c.hasEvent(rd.Proc, cv.inv, rd.Start) {
			return afterEvent, fmt.Sprintf("stale after the event of %s by %s of v%d", cv.inv.Op, cv.inv.Proc, cv.req)
		}
	}
	bound := c.rep.Bounds.Delivery
	if c.stalled(rd.Proc, cs[0].end, rd.Start) {
		bound += c.rep.Bounds.Liveness
	}
	if staleness > bound {
		return beyondBound, fmt.Sprintf("stale beyond %v", bound)
	}
	return toleratedL1, ""
}

// hasEvent reports whether proc had received the event of invalidation
// inv before at, or made inv itself.
func (c *checker) hasEvent(proc string, inv *Record, at int64) bool {
	if inv.Proc == proc {
		return true // its own invalidation: its L1 is its to clear
	}
	t, ok := c.events[eventKey{proc, inv.ID}]
	return ok && inv.Sent > 0 && t < at
}

// stalled reports whether proc's subscription was stalled at some time
// between from and to.
func (c *checker) stalled(proc string, from, to int64) bool {
	for _, w := range c.stalls[proc] {
		if w[0] <= to && (w[1] == 0 || w[1] >= from) {
			return true
		}
	}
	return false
}

// delivery returns how many events other processes received after an
// invalidation that published one, and the maximum and 99th percentile of
// the time from the invalidation's return to their arrival.
func (c *checker) delivery() (n int, maxLat, p99 time.Duration) {
	var lat []time.Duration
	byID := map[int64]*Record{}
	for _, inv := range c.invs {
		byID[inv.ID] = inv
	}
	for k, t := range c.events {
		if inv := byID[k.id]; inv != nil && inv.Sent > 0 {
			lat = append(lat, time.Duration(t-inv.End))
		}
	}
	if len(lat) == 0 {
		return 0, 0, 0
	}
	slices.Sort(lat)
	return len(lat), lat[len(lat)-1], lat[(len(lat)-1)*99/100]
}

// strategies returns the results by strategy name, each with its five
// worst violations described.
func (c *checker) strategies() []*Result {
	var out []*Result
	for _, r := range c.results {
		slices.SortStableFunc(r.examples, func(a, b example) int { return cmp.Compare(b.staleness, a.staleness) })
		for _, e := range r.examples[:min(5, len(r.examples))] {
			r.Examples = append(r.Examples, e.text)
		}
		r.examples = nil
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b *Result) int { return strings.Compare(a.Strategy, b.Strategy) })
	return out
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
	r.writeTable(&sb)
	r.writeFailures(&sb)
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
	r.writeStats(&sb)
	return sb.String()
}

// writeFailures writes a line for each strategy with misses, read errors
// or failed invalidations.
func (r *Report) writeFailures(sb *strings.Builder) {
	for _, s := range r.Strategies {
		if s.Failed > 0 || s.Errors > 0 || s.Misses > 0 {
			fmt.Fprintf(sb, "%s: %d misses, %d read errors, %d failed invalidations\n", s.Strategy, s.Misses, s.Errors, s.Failed)
		}
	}
}

// writeStats writes each process's statistics, one line per process, in
// name order.
func (r *Report) writeStats(sb *strings.Builder) {
	for _, p := range slices.Sorted(maps.Keys(r.Stats)) {
		fmt.Fprintf(sb, "stats %s:", p)
		st := r.Stats[p]
		for _, n := range slices.Sorted(maps.Keys(st)) {
			fmt.Fprintf(sb, " %s=%d", n, st[n])
		}
		sb.WriteByte('\n')
	}
}

// writeTable writes the table of results, one row per strategy.
func (r *Report) writeTable(sb *strings.Builder) {
	tw := tabwriter.NewWriter(sb, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "strategy\treads\tchecked\tinvalidations\tstale\tL1 after event\tL1 beyond bound\twrong/impossible\tworst\tL1 tolerated\tworst tolerated\t")
	for _, s := range r.Strategies {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%v\t%d\t%v\t\n",
			s.Strategy, s.Reads, s.Checked, s.Invalidations, s.Stale, s.AfterEvent, s.BeyondBound,
			s.WrongKey+s.Impossible, s.Worst.Round(time.Microsecond), s.Tolerated, s.WorstTolerated.Round(time.Microsecond))
	}
	tw.Flush()
}
