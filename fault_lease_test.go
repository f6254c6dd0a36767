package cachemgr_test

// Fault tests: the cross-process lease — a lost claim reply, Redis gone
// before the release, foreign data at the lease key, edge lease times, a
// late holder (docs/reliability.md, group B).

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cachemgr/cachemgr"
	"github.com/cachemgr/cachemgr/internal/faultproxy"
	"github.com/cachemgr/cachemgr/internal/redistest"
	"github.com/redis/go-redis/v9"
)

// relLoseReplies is a go-redis hook that lets matching commands reach the
// server and then reports their reply lost, as a connection that died
// right after the server answered would.
type relLoseReplies struct {
	match func(args []any) bool
	left  atomic.Int32
	lost  atomic.Int32
}

func (h *relLoseReplies) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *relLoseReplies) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		// Only a command the server ran (no error reply such as NOSCRIPT)
		// has a reply worth losing.
		if err == nil && h.match(cmd.Args()) && h.left.Add(-1) >= 0 {
			h.lost.Add(1)
			err = fmt.Errorf("reply lost after execution: %w", faultproxy.ErrLostAck)
			cmd.SetErr(err)
		}
		return err
	}
}

func (h *relLoseReplies) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// relIsClaim matches the script that takes a load's lease: EVALSHA (or
// EVAL) with three keys, the third being the lease.
func relIsClaim(args []any) bool {
	if len(args) < 6 || args[0] != "evalsha" && args[0] != "eval" {
		return false
	}
	lease, _ := args[5].(string)
	return strings.HasSuffix(lease, "}:l")
}

// TestReliabilityLeaseAckLost (scenario 17): the script that takes a
// load's lease runs on the server, but its reply is lost (a timeout, a
// reset). The caller cannot know it holds the lease: it loads without
// writing back. The next Fetch of the key must not wait for a lease that
// nobody will release: guarantee 2 bounds Fetch by the op timeout plus the
// loader's time when Redis misbehaves.
func TestReliabilityLeaseAckLost(t *testing.T) {
	noLeaks(t)
	const op, load = relOp, 5 * time.Millisecond
	s := redistest.Start(t)
	rdb := relClient(t, s.Addr(), nil)
	hook := &relLoseReplies{match: relIsClaim}
	hook.left.Store(1)
	rdb.AddHook(hook)
	m := managerOn(t, rdb, cachemgr.WithOpTimeout(op), cachemgr.WithWriteTimeout(op))
	c := newCache[relItem](t, m, "ghost") // default lease
	ctx := context.Background()
	fetch := func() (time.Duration, error) {
		start := time.Now()
		v, err := c.Fetch(ctx, "k", func(context.Context) (relItem, error) {
			time.Sleep(load) // the loader's own work
			return relItem{Key: "k"}, nil
		})
		if err == nil && v.Key != "k" {
			err = fmt.Errorf("got %+v", v)
		}
		return time.Since(start), err
	}
	if _, err := fetch(); err != nil {
		t.Fatalf("Fetch() with the claim's reply lost = %v, want the loader's value", err)
	}
	if hook.lost.Load() != 1 {
		t.Fatalf("the claim's reply was not lost (hook matched %d)", hook.lost.Load())
	}
	t.Logf("lease key after the lost reply: %q (PTTL %v)", rdb.Get(ctx, "test:ghost:{=k}:l").Val(), rdb.PTTL(ctx, "test:ghost:{=k}:l").Val())
	took, err := fetch()
	wantP99, _ := relBudget(op, load)
	if err != nil || took > wantP99 {
		t.Errorf("next Fetch() = %v after %v, want the value within %v (op timeout + loader + slack), not after the lease expires", err, took, wantP99)
	}
}

// TestReliabilityLeaseRedisDown (scenario 22): the lease holder's Redis
// disappears (blackholed) during its load. The Fetch returns the loaded
// value within loader time plus an op timeout for the write-back, no
// goroutine keeps retrying, and the lease expires by its TTL.
func TestReliabilityLeaseRedisDown(t *testing.T) {
	noLeaks(t)
	// The lease must outlive the claim, the blocked load and the write-back
	// that times out (an op timeout, more on a loaded machine) for the PTTL
	// check to see it; 3 s does on a busy 2-core machine, and waiting for
	// it to expire costs at most that.
	const op, lease = relOp, 3 * time.Second
	s := redistest.Start(t)
	p := faultproxy.New(t, s.Addr())
	admin := s.Client(t)
	m := managerOn(t, relClient(t, p.Addr(), nil), cachemgr.WithOpTimeout(op), cachemgr.WithWriteTimeout(op))
	c := newCache[relItem](t, m, "leasedown", cachemgr.WithLease(lease))
	ctx := context.Background()
	var blackholed time.Time
	blockedFetch(t, c, "k", relItem{Key: "k"}, func() {
		if n := admin.Exists(ctx, "test:leasedown:{=k}:l").Val(); n != 1 {
			t.Errorf("no lease held during the load")
		}
		p.Blackhole(true)
		blackholed = time.Now()
	})
	if took := time.Since(blackholed); took > op*5/4+2*time.Second {
		t.Errorf("Fetch() returned %v after its loader, want within the op timeout of the write-back", took)
	}
	ttl := admin.PTTL(ctx, "test:leasedown:{=k}:l").Val()
	if ttl <= 0 || ttl > lease {
		t.Errorf("lease PTTL after a failed release = %v, want it to expire by its TTL (<= %v)", ttl, lease)
	}
	waitFor(t, "the lease to expire", func() bool { return admin.Exists(ctx, "test:leasedown:{=k}:l").Val() == 0 })
	p.Blackhole(false)
}

// TestReliabilityForeignLeaseKey (scenario 23): the key where a load's
// lease would go holds foreign data (a hash, without expiry). Fetch does
// not delete it, does not loop, and answers within the lease wait bound
// (lease + op timeout); the value it loads is cached.
func TestReliabilityForeignLeaseKey(t *testing.T) {
	const op, lease = relOp, 300 * time.Millisecond
	s := redistest.Start(t)
	m, rdb := newManager(t, s, cachemgr.WithOpTimeout(op), cachemgr.WithWriteTimeout(op))
	c := newCache[relItem](t, m, "foreignlease", cachemgr.WithLease(lease))
	ctx := context.Background()
	rdb.HSet(ctx, "test:foreignlease:{=k}:l", "owner", "someone else")
	start := time.Now()
	v, err := c.Fetch(ctx, "k", func(context.Context) (relItem, error) { return relItem{Key: "k"}, nil })
	took := time.Since(start)
	if err != nil || v.Key != "k" {
		t.Fatalf("Fetch() with foreign data at the lease key = %+v, %v", v, err)
	}
	if took > lease+op+2*time.Second {
		t.Errorf("Fetch() took %v, want at most the lease wait bound %v", took, lease+op)
	}
	if rdb.HGet(ctx, "test:foreignlease:{=k}:l", "owner").Val() != "someone else" {
		t.Errorf("foreign data at the lease key was changed")
	}
	if v, err := c.Get(ctx, "k"); err != nil || v.Key != "k" {
		t.Errorf("Get() after the Fetch = %+v, %v; want the loaded value cached", v, err)
	}
	t.Logf("Fetch with a foreign lease key took %v", took)
}

// TestReliabilityLeaseTTLEdges (scenario 18): the lease TTL never makes a
// lock without expiry: 0 turns the lease off, negative and overflowing
// values are errors, sub-millisecond values round up to 1 ms.
func TestReliabilityLeaseTTLEdges(t *testing.T) {
	m, _ := newManager(t, redistest.StartMini(t))
	for _, d := range []time.Duration{-5 * time.Second, -time.Nanosecond, math.MinInt64, cachemgr.MaxTTL + 1, math.MaxInt64} {
		if _, err := cachemgr.NewCache[int](m, "l", cachemgr.WithLease(d)); !errors.Is(err, cachemgr.ErrInvalidTTL) {
			t.Errorf("NewCache(WithLease(%v)) error = %v, want ErrInvalidTTL", d, err)
		}
	}
	for _, d := range []time.Duration{0, time.Nanosecond, 500 * time.Microsecond, 1500 * time.Microsecond, cachemgr.MaxTTL} {
		if _, err := cachemgr.NewCache[int](m, "l", cachemgr.WithLease(d)); err != nil {
			t.Errorf("NewCache(WithLease(%v)) error = %v", d, err)
		}
	}
	s := redistest.Start(t)
	rm, rdb := newManager(t, s)
	c := newCache[int](t, rm, "sub", cachemgr.WithLease(500*time.Microsecond))
	ctx := context.Background()
	blockedFetch(t, c, "k", 1, func() {
		if ttl := rdb.PTTL(ctx, "test:sub:{=k}:l").Val(); ttl == -1 || ttl > time.Millisecond {
			t.Errorf("lease PTTL with WithLease(500µs) = %v, want at most 1ms, never -1", ttl)
		}
	})
}

// TestReliabilityLateLeaseHolder (scenario 20): A's load outlives its
// lease; B takes the lease over, loads and writes a newer value; then A's
// load ends. A's write-back must not replace B's value.
func TestReliabilityLateLeaseHolder(t *testing.T) {
	s := redistest.Start(t)
	ctx := context.Background()
	a, rdb := newManager(t, s, cachemgr.WithOpTimeout(time.Second))
	b, _ := newManager(t, s, cachemgr.WithOpTimeout(time.Second))
	ca := newCache[string](t, a, "late", cachemgr.WithLease(100*time.Millisecond))
	cb := newCache[string](t, b, "late", cachemgr.WithLease(100*time.Millisecond))
	releaseA := make(chan struct{})
	doneA := make(chan string, 1)
	go func() {
		v, _ := ca.Fetch(ctx, "k", func(context.Context) (string, error) { <-releaseA; return "v1 from a", nil })
		doneA <- v
	}()
	waitFor(t, "a's lease", func() bool { return rdb.Exists(ctx, "test:late:{=k}:l").Val() == 1 })
	if v, err := cb.Fetch(ctx, "k", func(context.Context) (string, error) { return "v2 from b", nil }); err != nil || v != "v2 from b" {
		t.Fatalf("b: Fetch() = %q, %v; want its own load once a's lease expired", v, err)
	}
	close(releaseA)
	if v := <-doneA; v != "v1 from a" {
		t.Errorf("a: Fetch() = %q, want its own (older) load", v)
	}
	for _, c := range []*cachemgr.Cache[string]{ca, cb} {
		if v, err := c.Get(ctx, "k"); err != nil || v != "v2 from b" {
			t.Errorf("Get() after a's late write-back = %q, %v; want b's newer value", v, err)
		}
	}
}
