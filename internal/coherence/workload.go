package coherence

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cachemgr/cachemgr"
	"github.com/cachemgr/cachemgr/compress"
	"github.com/redis/go-redis/v9"
)

// Strategies are the invalidation strategies, in the order a writer takes
// them. Each has a cache of its own, named after it, and its own rows.
var Strategies = []string{"delete", "set", "tags", "bump", "prefix"}

// Operations a reader picks from, Fetch twice as often as the others.
var readOps = []string{"Fetch", "Fetch", "Get", "GetMany", "FetchMany"}

// noticeTopic is the user-event topic on which a writer announces, after
// each invalidation returned, its ID: every receiver has by then applied
// the invalidation's own event, which travels on the same channel first.
const noticeTopic = "coherence"

// opTimeout bounds each Redis call of a child: generous, so that a busy
// machine does not turn slow replies into errors.
const opTimeout = 5 * time.Second

// groupSize is how many consecutive keys share a prefix ("g0-", "g1-"…),
// the unit InvalidatePrefix removes.
const groupSize = 4

// Spec describes one child process.
type Spec struct {
	Name      string
	Index     int    // distinct per process, for invalidation IDs
	CacheAddr string // the caches' Redis
	DBAddr    string // the database's Redis, never faulted
	L1        bool   // give the Manager an L1 tier
	// WriteBehind gives the caches WithWriteBehind: a Fetch miss returns
	// before its write-back lands.
	WriteBehind bool
	// WriterIDs are the indexes, among Writers writers in all, of this
	// process's writer goroutines: writer w owns the rows i with
	// i%Writers == w, so each row's updates are sequential.
	WriterIDs []int
	Writers   int
	Readers   int
	// ReadsPerInvalidation paces each writer: one invalidation per that
	// many key reads of this process.
	ReadsPerInvalidation int
	Keys                 int // rows per strategy
	Large                int // padding of every third row's value, in bytes
	Seed                 uint64
	History              string // path of the history file
}

// validate reports a Spec the workload cannot run.
func (s Spec) validate() error {
	switch {
	case s.Keys < 4 || s.Readers < 1:
		return fmt.Errorf("spec %q: %d keys and %d readers, want at least 4 and 1", s.Name, s.Keys, s.Readers)
	case s.Large < 32:
		return fmt.Errorf("spec %q: large values of %d bytes, want at least 32", s.Name, s.Large)
	}
	return s.validateWriters()
}

// validateWriters reports writers this Spec cannot run: without a pace,
// or with an ID that owns no row.
func (s Spec) validateWriters() error {
	if len(s.WriterIDs) > 0 && (s.Writers < 1 || s.ReadsPerInvalidation < 1) {
		return fmt.Errorf("spec %q: %d writers, one invalidation per %d reads, want both positive", s.Name, s.Writers, s.ReadsPerInvalidation)
	}
	for _, id := range s.WriterIDs {
		if id < 0 || id >= s.Writers || id >= s.Keys {
			return fmt.Errorf("spec %q: writer %d of %d with %d keys", s.Name, id, s.Writers, s.Keys)
		}
	}
	return nil
}

// Row is the cached value: a database row's version, and padding that
// makes some values large enough for reads to overlap events.
type Row struct {
	Key string
	V   int64
	Pad []byte
}

// KeyName returns the name of row i.
func KeyName(i int) string { return fmt.Sprintf("g%d-%02d", i/groupSize, i) }

// groupPrefix returns the prefix InvalidatePrefix uses for row i's group.
func groupPrefix(i int) string { return fmt.Sprintf("g%d-", i/groupSize) }

// dbKey returns where the database keeps the version of a row.
func dbKey(strategy, key string) string { return "row:" + strategy + ":" + key }

// padKey is where the database keeps the padding of large rows.
const padKey = "pad"

// tagOf returns the tag of a row of the "tags" cache.
func tagOf(key string) string { return "t:" + key }

// worker is a child process's state.
type worker struct {
	spec   Spec
	clk    *Clock
	hist   *Log
	m      *cachemgr.Manager
	db     *redis.Client
	caches map[string]*cachemgr.Cache[Row]
	large  []byte
	small  []byte

	stop     chan struct{}
	reads    atomic.Int64 // key reads that did not fail
	wake     chan struct{}
	progMu   sync.Mutex
	progress io.Writer
	reported int64
}

// RunChild runs the workload of spec until ctrl says "stop" or ends. It
// obeys the other lines of ctrl as they come: "stall" and "unstall" (the
// subscription's connections go silent, then are cut), "cut". It writes
// the number of key reads done so far to progress every 50 reads, the
// Manager's log to logw, and its history to spec.History.
func RunChild(spec Spec, ctrl io.Reader, progress, logw io.Writer) (err error) {
	if err := spec.validate(); err != nil {
		return err
	}
	hist, err := CreateLog(spec.History)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := hist.Close(); err == nil {
			err = cerr
		}
	}()
	w := newWorker(spec, hist, progress)
	dialer := newPubSubDialer()
	rdb := redis.NewClient(&redis.Options{
		Addr:                  spec.CacheAddr,
		Dialer:                dialer.DialContext,
		ContextTimeoutEnabled: true,
		DialTimeout:           time.Second,
		ReadTimeout:           opTimeout,
		WriteTimeout:          opTimeout,
		MaxRetries:            -1,
		PoolSize:              4 * spec.Readers,
	})
	defer rdb.Close()
	w.db = redis.NewClient(&redis.Options{Addr: spec.DBAddr, ContextTimeoutEnabled: true, ReadTimeout: opTimeout, WriteTimeout: opTimeout})
	defer w.db.Close()
	// The large rows keep their padding in the database too, so that a load
	// reads the version and then, for a while, the rest of the row: loads
	// overlap invalidations as real ones do.
	if err := w.db.Set(context.Background(), padKey, w.large, 0).Err(); err != nil {
		return fmt.Errorf("database: %w", err)
	}
	if w.m, err = cachemgr.New(rdb, managerOptions(spec, logw)...); err != nil {
		return err
	}
	defer w.m.Close()
	if err := w.newCaches(); err != nil {
		return err
	}
	if spec.L1 {
		defer cachemgr.Handle(w.m, noticeTopic, func(_ context.Context, id int64) {
			w.add(Record{Kind: KindEvent, ID: id, Start: w.clk.Now()})
		})()
	}
	return w.run(ctrl, dialer)
}

// newCaches makes the cache of each strategy, versioned for "bump".
func (w *worker) newCaches() error {
	for _, s := range Strategies {
		c, err := cachemgr.NewCache[Row](w.m, s, cachemgr.WithVersioned(s == "bump"), cachemgr.WithWriteBehind(w.spec.WriteBehind))
		if err != nil {
			return err
		}
		w.caches[s] = c
	}
	return nil
}

// newWorker returns the state of a child process that runs spec, with the
// padding of its rows.
func newWorker(spec Spec, hist *Log, progress io.Writer) *worker {
	w := &worker{
		spec:     spec,
		clk:      NewClock(),
		hist:     hist,
		caches:   map[string]*cachemgr.Cache[Row]{},
		stop:     make(chan struct{}),
		wake:     make(chan struct{}, 1),
		progress: progress,
	}
	pad := rand.New(rand.NewChaCha8([32]byte{}))
	w.large = make([]byte, spec.Large)
	for i := range w.large {
		w.large[i] = byte(pad.Uint32())
	}
	w.small = w.large[:min(len(w.large), 32)]
	return w
}

// managerOptions returns the options of a child's Manager, which logs
// warnings to logw.
func managerOptions(spec Spec, logw io.Writer) []cachemgr.Option {
	opts := []cachemgr.Option{
		cachemgr.WithPrefix("coh"),
		cachemgr.WithOpTimeout(opTimeout),
		cachemgr.WithCompressor(compress.None()),
		cachemgr.WithObserver(tierObserver{}),
		cachemgr.WithLogger(slog.New(slog.NewTextHandler(logw, &slog.HandlerOptions{Level: slog.LevelWarn}))),
		cachemgr.WithEvents(len(spec.WriterIDs) > 0),
	}
	if spec.L1 {
		opts = append(opts, cachemgr.WithL1(10_000))
	}
	return opts
}

// run runs the readers and writers while it obeys ctrl, then records the
// final progress and the Manager's statistics, and returns the first
// writer's error.
func (w *worker) run(ctrl io.Reader, dialer *pubSubDialer) (err error) {
	var wg sync.WaitGroup
	for i := range w.spec.Readers {
		wg.Go(func() { w.reader(i) })
	}
	werr := make(chan error, len(w.spec.WriterIDs))
	for _, id := range w.spec.WriterIDs {
		wg.Go(func() { werr <- w.writer(id) })
	}
	stallStart := w.obey(ctrl, dialer)
	close(w.stop)
	wg.Wait()
	if stallStart != 0 {
		w.add(Record{Kind: KindStall, Start: stallStart})
	}
	w.reportProgress(true)
	w.add(Record{Kind: KindStats, Stats: statsOf(w.m.Stats())})
	close(werr)
	for e := range werr {
		err = cmp.Or(err, e)
	}
	return err
}

// obey follows the lines of ctrl until "stop" or its end: "stall" and
// "unstall" (the subscription's connections go silent, then are cut, and
// the stall is recorded), "cut". It returns when a stall that has not
// ended began, or 0.
func (w *worker) obey(ctrl io.Reader, dialer *pubSubDialer) (stallStart int64) {
	sc := bufio.NewScanner(ctrl)
	for sc.Scan() {
		switch strings.TrimSpace(sc.Text()) {
		case "stop":
			return stallStart
		case "stall":
			if dialer.Stall() > 0 && stallStart == 0 {
				stallStart = w.clk.Now()
			}
		case "unstall":
			dialer.Cut()
			if stallStart != 0 {
				w.add(Record{Kind: KindStall, Start: stallStart, End: w.clk.Now()})
				stallStart = 0
			}
		case "cut":
			dialer.Cut()
		}
	}
	return stallStart
}

// statsOf returns the Manager statistics a child records, by name.
func statsOf(st cachemgr.Stats) map[string]uint64 {
	return map[string]uint64{
		"hits": st.Hits, "l1hits": st.L1Hits, "misses": st.Misses, "loads": st.Loads,
		"invalidated": st.Invalidated, "redisErrors": st.RedisErrors, "skipped": st.Skipped,
		"eventsSent": st.EventsSent, "eventsReceived": st.EventsReceived, "resyncs": st.Resyncs,
		"writeErrors": st.WriteErrors, "leaseWaits": st.LeaseWaits,
	}
}

// add stamps r with the process and appends it to the history.
func (w *worker) add(r Record) {
	r.Proc, r.L1 = w.spec.Name, w.spec.L1
	w.hist.Add(r)
}

func (w *worker) stopped() bool {
	select {
	case <-w.stop:
		return true
	default:
		return false
	}
}

// pad returns the padding of row i: large for every third row.
func (w *worker) pad(i int) []byte {
	if i%3 == 0 {
		return w.large
	}
	return w.small
}

// reportProgress writes the number of reads done, every 50 reads or when
// final.
func (w *worker) reportProgress(final bool) {
	n := w.reads.Load()
	w.progMu.Lock()
	defer w.progMu.Unlock()
	if n >= w.reported+50 || final && n != w.reported {
		w.reported = n
		fmt.Fprintf(w.progress, "%d\n", n)
	}
}

// reader reads until stopped. After a failed read it Fetches, which the
// loader answers while Redis is away, rather than spin on errors.
func (w *worker) reader(i int) {
	r := rand.New(rand.NewPCG(w.spec.Seed, uint64(i)))
	failed := false
	for !w.stopped() {
		ok, n := w.read(r, failed)
		failed = !ok
		w.reads.Add(int64(n))
		select {
		case w.wake <- struct{}{}:
		default:
		}
		w.reportProgress(false)
	}
}

// probe collects the tiers that answered one read.
type probe struct{ l1, redis atomic.Int32 }

type probeKey struct{}

// tierObserver tells each read, through its context, which tiers answered.
type tierObserver struct{}

func (tierObserver) Hit(ctx context.Context, _ string, l1, _ bool) {
	if p, ok := ctx.Value(probeKey{}).(*probe); ok {
		if l1 {
			p.l1.Add(1)
		} else {
			p.redis.Add(1)
		}
	}
}

func (tierObserver) Miss(context.Context, string) {}

func (tierObserver) Load(ctx context.Context, _ string) (context.Context, func(error)) {
	return ctx, func(error) {}
}

func (tierObserver) Error(context.Context, error) {}

// tier returns the tier of a value not loaded by the read itself.
func (p *probe) tier(single bool) string {
	switch {
	case p.l1.Load() > 0:
		return TierL1
	case p.redis.Load() > 0 || !single:
		return TierRedis
	}
	return TierJoin
}

// read does one read of one or more keys of a random strategy, and records
// each key. It reports whether no key failed, and how many did not.
func (w *worker) read(r *rand.Rand, mustFetch bool) (bool, int) {
	rd := w.pickRead(r, mustFetch)
	p := &probe{}
	ctx := context.WithValue(context.Background(), probeKey{}, p)
	opts := w.writeOptions(rd)
	var loaded sync.Map // keys this read's own loader produced
	start := w.clk.Now()
	vals, errs := w.do(ctx, rd, opts, &loaded)
	end := w.clk.Now()
	good := 0
	for j, k := range rd.keys {
		tier := p.tier(len(rd.keys) == 1)
		if _, ok := loaded.Load(k); ok {
			tier = TierLoad
		}
		rec := Record{Kind: KindRead, Strategy: rd.strategy, Key: k, Op: rd.op, Tier: tier, Start: start, End: end, Version: vals[j].V}
		if readOutcome(&rec, vals[j], errs[j]) {
			good++
		}
		w.add(rec)
	}
	return good == len(rd.keys), good
}

// readPlan is one read: its strategy, operation, and rows (by index and
// by key).
type readPlan struct {
	strategy, op string
	idx          []int
	keys         []string
}

// pickRead draws a read at random: Fetch of one key when mustFetch.
func (w *worker) pickRead(r *rand.Rand, mustFetch bool) readPlan {
	rd := readPlan{strategy: Strategies[r.IntN(len(Strategies))], op: readOps[r.IntN(len(readOps))]}
	if mustFetch {
		rd.op = "Fetch"
	}
	n := 1
	if strings.HasSuffix(rd.op, "Many") {
		n = 2 + r.IntN(3)
	}
	rd.idx = r.Perm(w.spec.Keys)[:n]
	if n == 1 && r.IntN(2) == 0 {
		// Half the single reads go to row 0, a large one: concurrent
		// Fetches of it share loads, and its reads last long enough to
		// overlap invalidations.
		rd.idx[0] = 0
	}
	rd.keys = make([]string, n)
	for j, i := range rd.idx {
		rd.keys[j] = KeyName(i)
	}
	return rd
}

// do runs read rd, its loads with opts, and stores in loaded the keys its
// own loader produced.
func (w *worker) do(ctx context.Context, rd readPlan, opts []cachemgr.WriteOption, loaded *sync.Map) ([]Row, []error) {
	c := w.caches[rd.strategy]
	vals := make([]Row, len(rd.keys))
	errs := make([]error, len(rd.keys))
	var err error
	switch rd.op {
	case "Fetch":
		vals[0], errs[0] = c.Fetch(ctx, rd.keys[0], func(ctx context.Context) (Row, error) {
			loaded.Store(rd.keys[0], true)
			return w.loadRow(ctx, rd.strategy, rd.idx[0])
		}, opts...)
	case "Get":
		vals[0], errs[0] = c.Get(ctx, rd.keys[0])
	case "GetMany":
		vals, errs, err = c.GetMany(ctx, rd.keys)
	case "FetchMany":
		vals, errs, err = c.FetchMany(ctx, rd.keys, func(ctx context.Context, missing []string) (map[string]Row, error) {
			return w.loadRows(ctx, rd, missing, loaded)
		}, opts...)
	}
	fill(errs, err)
	return vals, errs
}

// writeOptions returns the options of a read's loads: the rows' tags, for
// the "tags" strategy.
func (w *worker) writeOptions(rd readPlan) []cachemgr.WriteOption {
	if rd.strategy != "tags" {
		return nil
	}
	tags := make([]string, len(rd.keys))
	for j, k := range rd.keys {
		tags[j] = tagOf(k)
	}
	return []cachemgr.WriteOption{cachemgr.Tags(tags...)}
}

// loadRows loads the missing rows of read rd, for FetchMany, and stores
// their keys in loaded.
func (w *worker) loadRows(ctx context.Context, rd readPlan, missing []string, loaded *sync.Map) (map[string]Row, error) {
	out := map[string]Row{}
	for _, k := range missing {
		v, err := w.loadRow(ctx, rd.strategy, rd.idx[indexOf(rd.keys, k)])
		if err != nil {
			return nil, err
		}
		out[k] = v
		loaded.Store(k, true)
	}
	return out, nil
}

// readOutcome completes rec, the record of one key of a read that gave
// val and err, and reports whether the key did not fail (a miss does
// not).
func readOutcome(rec *Record, val Row, err error) bool {
	switch {
	case err == nil:
		if val.Key != rec.Key {
			rec.Got = cmp.Or(val.Key, "(empty)")
		}
		return true
	case errors.Is(err, cachemgr.ErrMiss):
		rec.Version, rec.Tier = -1, ""
		return true
	}
	rec.Version, rec.Tier, rec.Err = -1, "", err.Error()
	return false
}

// fill sets every nil entry of errs to err, when a batch failed as a whole.
func fill(errs []error, err error) {
	if err == nil {
		return
	}
	for i := range errs {
		if errs[i] == nil {
			errs[i] = err
		}
	}
}

func indexOf(keys []string, k string) int {
	for i, x := range keys {
		if x == k {
			return i
		}
	}
	return -1
}

// loadRow reads row i of strategy s from the database: its version, then
// the padding of a large row.
func (w *worker) loadRow(ctx context.Context, s string, i int) (Row, error) {
	k := KeyName(i)
	v, err := w.db.Get(ctx, dbKey(s, k)).Int64()
	if errors.Is(err, redis.Nil) {
		v, err = 0, nil
	}
	row := Row{Key: k, V: v, Pad: w.small}
	if err == nil && i%3 == 0 {
		row.Pad, err = w.db.Get(ctx, padKey).Bytes()
	}
	if err != nil {
		return Row{}, fmt.Errorf("database: %w", err)
	}
	return row, nil
}

// writer updates a row it owns, then invalidates it with the next
// strategy, once per ReadsPerInvalidation reads of this process, until
// stopped. A database failure ends it with an error: the database is
// never faulted, so that is a broken harness.
func (w *worker) writer(id int) error {
	r := rand.New(rand.NewPCG(w.spec.Seed, 1<<32+uint64(id)))
	owned := w.owned(id)
	ctx := context.Background()
	for n := 0; ; n++ {
		if !w.awaitReads(int64(n+1) * int64(w.spec.ReadsPerInvalidation)) {
			return nil
		}
		s := Strategies[n%len(Strategies)]
		i := owned[r.IntN(len(owned))]
		v, err := w.update(ctx, s, KeyName(i))
		if err != nil {
			return err
		}
		w.invalidateRecorded(ctx, int64(id+1)<<40|int64(n), s, i, v)
	}
}

// owned returns the rows writer id updates.
func (w *worker) owned(id int) []int {
	var owned []int
	for i := range w.spec.Keys {
		if i%w.spec.Writers == id {
			owned = append(owned, i)
		}
	}
	return owned
}

// awaitReads waits until this process has done target key reads. It
// reports false when the worker stopped first.
func (w *worker) awaitReads(target int64) bool {
	for w.reads.Load() < target {
		select {
		case <-w.wake:
		case <-w.stop:
			return false
		}
	}
	return true
}

// update increments the database's version of row k of strategy s,
// records the update and returns the new version.
func (w *worker) update(ctx context.Context, s, k string) (int64, error) {
	t0 := w.clk.Now()
	v, err := w.db.Incr(ctx, dbKey(s, k)).Result()
	if err != nil {
		return 0, fmt.Errorf("update %s %s: %w", s, k, err)
	}
	w.add(Record{Kind: KindUpdate, Strategy: s, Key: k, Start: t0, End: w.clk.Now(), Version: v})
	return v, nil
}

// invalidateRecorded invalidates row i of strategy s, now at version v,
// records the invalidation as invID and, when it succeeded, publishes
// invID as a notice to the other processes.
func (w *worker) invalidateRecorded(ctx context.Context, invID int64, s string, i int, v int64) {
	start := w.clk.Now()
	op, covered, err := w.invalidate(ctx, s, i, v)
	rec := Record{Kind: KindInvalidate, Strategy: s, Op: op, Keys: covered, Start: start, End: w.clk.Now(), ID: invID}
	if err != nil {
		rec.Err = err.Error()
	} else {
		rec.Sent = publishes[op]
		// Best effort: a notice that is lost only leaves the
		// checker knowing less about who has the event.
		_ = cachemgr.Publish(ctx, w.m, noticeTopic, invID)
	}
	w.add(rec)
}

// publishes holds the number of invalidation events each call publishes
// when it returns nil, as the library documents them (WithEvents): the
// writers of a process run concurrently, so its event counter cannot say
// which call sent what.
var publishes = map[string]int{"Delete": 1, "Set": 1, "InvalidateTags": 1, "Bump": 1, "InvalidatePrefix": 0}

// invalidate invalidates row i of strategy s, now at version v, and
// returns the call's name and the keys it covers.
func (w *worker) invalidate(ctx context.Context, s string, i int, v int64) (string, []string, error) {
	c := w.caches[s]
	k := KeyName(i)
	switch s {
	case "delete":
		return "Delete", []string{k}, c.Delete(ctx, k)
	case "set":
		return "Set", []string{k}, c.Set(ctx, k, Row{Key: k, V: v, Pad: w.pad(i)})
	case "tags":
		return "InvalidateTags", []string{k}, w.m.InvalidateTags(ctx, tagOf(k))
	case "bump":
		return "Bump", w.keysWhere(func(int) bool { return true }), c.Bump(ctx)
	case "prefix":
		group := w.keysWhere(func(j int) bool { return j/groupSize == i/groupSize })
		_, err := c.InvalidatePrefix(ctx, groupPrefix(i))
		return "InvalidatePrefix", group, err
	}
	return "", nil, fmt.Errorf("unknown strategy %q", s)
}

// keysWhere returns the names of the rows i for which in(i) holds.
func (w *worker) keysWhere(in func(i int) bool) []string {
	var keys []string
	for j := range w.spec.Keys {
		if in(j) {
			keys = append(keys, KeyName(j))
		}
	}
	return keys
}
