package cachemgr_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cachemgr/cachemgr"
	"github.com/cachemgr/cachemgr/internal/benchpair"
	"github.com/cachemgr/cachemgr/internal/redistest"
	"github.com/redis/go-redis/v9"
)

// replicaSet is a master and its replicas, all redis-server processes
// started by the test.
type replicaSet struct {
	master   *redistest.Server
	replicas []*redistest.Server
}

// startReplicaSet starts a master and n replicas of it, and waits until
// every replica has synced. It skips the test without a redis-server.
func startReplicaSet(t testing.TB, n int) *replicaSet {
	t.Helper()
	rs := &replicaSet{master: redistest.Start(t)}
	host, port, err := net.SplitHostPort(rs.master.Addr())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for range n {
		r := redistest.Start(t)
		if err := r.Do(ctx, "REPLICAOF", host, port).Err(); err != nil {
			t.Fatalf("REPLICAOF on %s: %v", r.Addr(), err)
		}
		rs.replicas = append(rs.replicas, r)
	}
	// Setting up, not the subject: a generous bound for a loaded machine.
	deadline := time.Now().Add(60 * time.Second)
	for _, r := range rs.replicas {
		for !strings.Contains(r.Do(ctx, "INFO", "replication").String(), "master_link_status:up") {
			if time.Now().After(deadline) {
				t.Fatalf("replica %s did not sync with %s", r.Addr(), rs.master.Addr())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	// A replica that has just synced is sent the write stream only after
	// its first acknowledgement, which it sends once a second: until then
	// WAIT does not count it. Wait for all of them to acknowledge a write.
	conn := rs.master.Client(t).Conn()
	defer conn.Close()
	if err := conn.Set(ctx, "replicaset:ready", 1, 0).Err(); err != nil {
		t.Fatal(err)
	}
	if got, err := conn.Wait(ctx, n, 60*time.Second).Result(); err != nil || got != int64(n) {
		t.Fatalf("WAIT %d after sync = %d, %v", n, got, err)
	}
	return rs
}

// replicaClient returns a client whose connections go to the replicas in
// turn (as a Sentinel ReplicaOnly client spreads them), with at least one
// connection to each from the start and the oldest idle connection used
// first, so that even one caller's reads reach them all.
func (rs *replicaSet) replicaClient(t testing.TB) *redis.Client {
	t.Helper()
	var next atomic.Uint64
	return rs.replicas[0].ClientWith(t, func(o *redis.Options) {
		o.Dialer = func(ctx context.Context, network, _ string) (net.Conn, error) {
			addr := rs.replicas[(next.Add(1)-1)%uint64(len(rs.replicas))].Addr()
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		}
		o.PoolFIFO = true
		o.MinIdleConns = len(rs.replicas)
	})
}

// gets returns how many GETs s has run, from INFO commandstats.
func gets(t testing.TB, s *redistest.Server) int {
	t.Helper()
	info, err := s.Do(context.Background(), "INFO", "commandstats").Text()
	if err != nil {
		t.Fatalf("INFO commandstats on %s: %v", s.Addr(), err)
	}
	m := regexp.MustCompile(`cmdstat_get:calls=(\d+)`).FindStringSubmatch(info)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// replicaLag is the lag bound the tests give WithReplicaReads: generous,
// since a loaded machine can stall a replica for a while; the bound the
// docs state is measured by BenchmarkReplicationLag.
const replicaLag = 4 * time.Second

// masterClient returns a client of rs's master whose ReadTimeout leaves
// room for a WAIT of replicaLag.
func (rs *replicaSet) masterClient(t testing.TB) *redis.Client {
	t.Helper()
	return rs.master.ClientWith(t, func(o *redis.Options) { o.ReadTimeout = 3 * replicaLag })
}

// newReplicaManager returns a Manager on rs's master that reads hits from
// its replicas.
func newReplicaManager(t testing.TB, rs *replicaSet, opts ...cachemgr.Option) *cachemgr.Manager {
	t.Helper()
	opts = append([]cachemgr.Option{
		cachemgr.WithReplicaReads(rs.replicaClient(t), len(rs.replicas), replicaLag),
		cachemgr.WithWriteTimeout(2 * replicaLag),
	}, opts...)
	m, err := cachemgr.New(rs.masterClient(t), testOptions(opts...)...)
	if err != nil {
		t.Fatalf("New() error = %v", err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// TestReplicaReadsServeHits: hits are read from both replicas and none
// from the master; a miss is asked of the master too.
func TestReplicaReadsServeHits(t *testing.T) {
	rs := startReplicaSet(t, 2)
	m := newReplicaManager(t, rs)
	c := newCache[string](t, m, "rep")
	ctx := context.Background()
	const keys, rounds = 20, 10
	for k := range keys {
		// Set returns once both replicas hold the value (WAIT).
		if err := c.Set(ctx, fmt.Sprint(k), fmt.Sprint("v", k)); err != nil {
			t.Fatalf("Set(%d) error = %v", k, err)
		}
	}
	before := []int{gets(t, rs.master), gets(t, rs.replicas[0]), gets(t, rs.replicas[1])}
	for range rounds {
		for k := range keys {
			if got, err := c.Get(ctx, fmt.Sprint(k)); err != nil || got != fmt.Sprint("v", k) {
				t.Fatalf("Get(%d) = %q, %v, want v%d", k, got, err, k)
			}
		}
	}
	after := []int{gets(t, rs.master), gets(t, rs.replicas[0]), gets(t, rs.replicas[1])}
	if after[0] != before[0] {
		t.Errorf("master ran %d GETs for %d hits, want 0", after[0]-before[0], keys*rounds)
	}
	for i := range rs.replicas {
		if after[i+1] == before[i+1] {
			t.Errorf("replica %d ran no GET for %d hits", i, keys*rounds)
		}
	}
	if served := after[1] + after[2] - before[1] - before[2]; served != keys*rounds {
		t.Errorf("replicas ran %d GETs for %d hits, want one each", served, keys*rounds)
	}
	if hits := m.Stats().Hits; hits != keys*rounds {
		t.Errorf("Stats().Hits = %d, want %d", hits, keys*rounds)
	}

	// A miss on the replica is asked of the master, which decides.
	if _, err := c.Get(ctx, "absent"); !errors.Is(err, cachemgr.ErrMiss) {
		t.Errorf("Get(absent) error = %v, want ErrMiss", err)
	}
	if n := gets(t, rs.master) - after[0]; n != 1 {
		t.Errorf("master ran %d GETs for a miss, want 1", n)
	}
}

// TestReplicaReadsNeverStale: writers Set and Delete keys while readers
// Fetch and Get them through replica reads; every read must return a value
// at least as new as the last write that returned before the read began,
// and each writer reads its key back right after its write returns.
// The source of truth is a counter per key; each key has one writer, so
// its writes land in order.
func TestReplicaReadsNeverStale(t *testing.T) {
	rs := startReplicaSet(t, 2)
	m := newReplicaManager(t, rs)
	c := newCache[int64](t, m, "truth", cachemgr.WithTTL(time.Hour))
	ctx := context.Background()
	const (
		keys     = 8
		writers  = 2
		writes   = 150 // per writer
		readers  = 4
		reads    = 600 // per reader
		deleteEv = 3   // every third write is a Delete
	)
	var source, committed [keys]atomic.Int64
	replicaGets := gets(t, rs.replicas[0]) + gets(t, rs.replicas[1])
	var stale, hits, lagged atomic.Int64
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range writes {
				k := w + writers*(i%(keys/writers)) // keys of writer w only
				v := source[k].Add(1)
				var err error
				if i%deleteEv == 0 {
					err = c.Delete(ctx, strconv.Itoa(k))
				} else {
					err = c.Set(ctx, strconv.Itoa(k), v)
				}
				if errors.Is(err, cachemgr.ErrReplicaLag) {
					// Not acknowledged: promised nothing, kept for retry.
					lagged.Add(1)
					continue
				}
				if err != nil {
					t.Errorf("write %d of key %d: %v", i, k, err)
					return
				}
				committed[k].Store(v)
				// The sharpest read: right after the write returned,
				// through a replica.
				got, err := c.Get(ctx, strconv.Itoa(k))
				switch {
				case errors.Is(err, cachemgr.ErrMiss):
				case err != nil:
					t.Errorf("read-back of key %d: %v", k, err)
				case got < v:
					stale.Add(1)
					t.Errorf("key %d read back %d right after write %d returned", k, got, v)
				}
			}
		})
	}
	for r := range readers {
		wg.Go(func() {
			rnd := rand.New(rand.NewPCG(uint64(r), 1))
			for range reads {
				k := rnd.IntN(keys)
				floor := committed[k].Load()
				var got int64
				var err error
				if rnd.IntN(2) == 0 {
					got, err = c.Fetch(ctx, strconv.Itoa(k), func(context.Context) (int64, error) { return source[k].Load(), nil })
				} else if got, err = c.Get(ctx, strconv.Itoa(k)); errors.Is(err, cachemgr.ErrMiss) {
					continue
				}
				if err != nil {
					t.Errorf("read of key %d: %v", k, err)
					return
				}
				hits.Add(1)
				if got < floor {
					stale.Add(1)
					t.Errorf("key %d read %d after write %d had returned", k, got, floor)
				}
			}
		})
	}
	wg.Wait()
	if n := stale.Load(); n > 0 {
		t.Fatalf("%d stale reads of %d", n, hits.Load())
	}
	if n := lagged.Load(); n > writers*writes/2 {
		t.Fatalf("%d of %d writes not acknowledged by the replicas within %v", n, writers*writes, replicaLag)
	}
	served := gets(t, rs.replicas[0]) + gets(t, rs.replicas[1]) - replicaGets
	if served < readers*reads/4 {
		t.Errorf("replicas ran %d GETs for %d reads, want most of the hits there", served, readers*reads)
	}
	t.Logf("%d reads checked, %d GETs on replicas, %d writes not acknowledged in time", hits.Load(), served, lagged.Load())
}

// TestReplicaLagKeepsInvalidation: with a replica that cannot acknowledge
// (stopped), Delete returns ErrReplicaLag, even when its script had to be
// sent again; this process stops serving the key at once, and the delete
// lands once the replica is back.
func TestReplicaLagKeepsInvalidation(t *testing.T) {
	rs := startReplicaSet(t, 2)
	// Long enough for a loaded machine's healthy replicas to acknowledge
	// the Set; the stopped one never will.
	const lag = time.Second
	m, err := cachemgr.New(rs.masterClient(t), testOptions(
		cachemgr.WithReplicaReads(rs.replicaClient(t), 2, lag),
		cachemgr.WithWriteTimeout(3*lag))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	c := newCache[string](t, m, "lag")
	ctx := context.Background()
	if err := c.Set(ctx, "k", "old"); err != nil {
		t.Fatalf("Set() error = %v", err)
	}
	// Delete's script is sent again after NOSCRIPT: the WAIT must follow
	// it, not only the refused EVALSHA (which wrote nothing to wait for).
	if err := rs.master.Do(ctx, "SCRIPT", "FLUSH").Err(); err != nil {
		t.Fatal(err)
	}
	rs.replicas[1].Pause()
	err = c.Delete(ctx, "k")
	if !errors.Is(err, cachemgr.ErrReplicaLag) || !errors.Is(err, cachemgr.ErrUnavailable) {
		t.Fatalf("Delete() with a stopped replica error = %v, want ErrReplicaLag and ErrUnavailable", err)
	}
	if got, err := c.Get(ctx, "k"); !errors.Is(err, cachemgr.ErrMiss) {
		t.Errorf("Get() after a Delete the replicas did not acknowledge = %q, %v, want ErrMiss", got, err)
	}
	if n := m.Stats().InvalidationsPending; n != 1 {
		t.Errorf("InvalidationsPending = %d, want 1", n)
	}
	rs.replicas[1].Resume()
	// The retry loop backs off up to 1s between attempts: a generous bound.
	deadline := time.Now().Add(30 * time.Second)
	for m.Stats().InvalidationsPending != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the kept Delete did not land after the replica resumed")
		}
		time.Sleep(20 * time.Millisecond)
	}
	for i, r := range append([]*redistest.Server{rs.master}, rs.replicas...) {
		if n, err := r.Do(ctx, "EXISTS", "test:lag:{=k}").Int(); err != nil || n != 0 {
			t.Errorf("server %d: EXISTS of the deleted key = %d, %v, want 0", i, n, err)
		}
	}
}

// TestReplicaSetupsRefused: a Cluster client that sends read-only commands
// to replicas is refused, since version and tag-stamp reads would go there
// too; so is WithReplicaReads on anything but a *redis.Client, or with a
// lag the write timeout or ReadTimeout cannot wait for.
func TestReplicaSetupsRefused(t *testing.T) {
	addrs := []string{"127.0.0.1:1"} // never dialled: New makes no call
	plain := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", ReadTimeout: time.Second})
	t.Cleanup(func() { plain.Close() })
	replica := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	t.Cleanup(func() { replica.Close() })
	tests := []struct {
		name   string
		client redis.UniversalClient
		opts   []cachemgr.Option
	}{
		{"cluster ReadOnly", redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs, ReadOnly: true}), nil},
		{"cluster RouteByLatency", redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs, RouteByLatency: true}), nil},
		{"cluster RouteRandomly", redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs, RouteRandomly: true}), nil},
		{"replica reads on a cluster", redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs}), []cachemgr.Option{cachemgr.WithReplicaReads(replica, 1, 100*time.Millisecond)}},
		{"replica reads on a ring", redis.NewRing(&redis.RingOptions{Addrs: map[string]string{"a": "127.0.0.1:1"}}), []cachemgr.Option{cachemgr.WithReplicaReads(replica, 1, 100*time.Millisecond)}},
		{"nil replica client", plain, []cachemgr.Option{cachemgr.WithReplicaReads(nil, 1, 100*time.Millisecond)}},
		{"no replicas", plain, []cachemgr.Option{cachemgr.WithReplicaReads(replica, 0, 100*time.Millisecond)}},
		{"no lag", plain, []cachemgr.Option{cachemgr.WithReplicaReads(replica, 1, 0)}},
		{"lag over the write timeout", plain, []cachemgr.Option{cachemgr.WithReplicaReads(replica, 1, 500*time.Millisecond), cachemgr.WithWriteTimeout(500 * time.Millisecond)}},
		{"lag over ReadTimeout", plain, []cachemgr.Option{cachemgr.WithReplicaReads(replica, 1, time.Second), cachemgr.WithWriteTimeout(5 * time.Second)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Cleanup(func() { tt.client.Close() })
			m, err := cachemgr.New(tt.client, tt.opts...)
			if !errors.Is(err, cachemgr.ErrInvalidOption) {
				if m != nil {
					m.Close()
				}
				t.Fatalf("New() error = %v, want ErrInvalidOption", err)
			}
		})
	}
	// The same cluster client without replica routing is accepted.
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs})
	t.Cleanup(func() { cc.Close() })
	m, err := cachemgr.New(cc, cachemgr.WithLogger(quiet))
	if err != nil {
		t.Fatalf("New(cluster client) error = %v", err)
	}
	m.Close()
}

// BenchmarkReplicaHits compares the hit throughput of 32 callers reading
// through two replicas (WithReplicaReads) with that of 32 callers reading
// from the master alone, in the same run: blocks of each (32 callers, 20
// hits each) alternate inside one benchmark loop, so both see the same
// machine (benchpair). It reports each side's time per block ("-ns/op",
// "-median-ns/op": divide by 640 for a hit), the median ratio of their
// block times ("ratio": replica over master; below 1 is faster), and each
// side's B/op and allocs/op per hit (measured after the loop, untimed).
// ns/op covers both sides.
func BenchmarkReplicaHits(b *testing.B) {
	const callers, perCaller, keys = 32, 20, 64
	ctx := context.Background()
	rs := startReplicaSet(b, 2)
	value := strings.Repeat("v", 1<<10)
	side := func(opts ...cachemgr.Option) func() {
		m, err := cachemgr.New(rs.masterClient(b), append([]cachemgr.Option{cachemgr.WithPrefix("bench"), cachemgr.WithLogger(quiet),
			// A loaded machine stalls now and then; the measure is speed.
			cachemgr.WithOpTimeout(time.Second), cachemgr.WithWriteTimeout(2 * replicaLag)}, opts...)...)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { m.Close() })
		c, err := cachemgr.NewCache[string](m, "hits", cachemgr.WithTTL(time.Hour))
		if err != nil {
			b.Fatal(err)
		}
		for k := range keys {
			if err := c.Set(ctx, strconv.Itoa(k), value); err != nil {
				b.Fatal(err)
			}
		}
		return func() {
			var wg sync.WaitGroup
			for g := range callers {
				wg.Go(func() {
					for i := range perCaller {
						if _, err := c.Get(ctx, strconv.Itoa((g*perCaller+i)%keys)); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
		}
	}
	replica := side(cachemgr.WithReplicaReads(rs.replicaClient(b), 2, replicaLag))
	master := side()
	const hits = callers * perCaller
	benchpair.Run(b, 1, replica, master).Report(b, "replica", "master")
	benchpair.ReportAllocs(b, "replica", 1, hits, replica)
	benchpair.ReportAllocs(b, "master", 1, hits, master)
}

// BenchmarkReplicationLag measures how long two replicas take to apply a
// write of 1 KiB: each op is a SET on the master and a WAIT for both
// replicas on the same connection, and the WAIT's time is the lag. It
// reports its median, 99th percentile and maximum.
func BenchmarkReplicationLag(b *testing.B) {
	ctx := context.Background()
	rs := startReplicaSet(b, 2)
	conn := rs.master.Client(b).Conn()
	b.Cleanup(func() { conn.Close() })
	value := strings.Repeat("v", 1<<10)
	var lags []time.Duration
	for i := 0; b.Loop(); i++ {
		if err := conn.Set(ctx, strconv.Itoa(i%1000), value, time.Hour).Err(); err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		n, err := conn.Wait(ctx, 2, 5*time.Second).Result()
		if err != nil || n != 2 {
			b.Fatalf("WAIT 2 = %d, %v", n, err)
		}
		lags = append(lags, time.Since(start))
	}
	slices.Sort(lags)
	b.ReportMetric(float64(lags[len(lags)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lags[len(lags)*99/100].Microseconds()), "p99-µs")
	b.ReportMetric(float64(lags[len(lags)-1].Microseconds()), "max-µs")
}
