package cachemgr_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cachemgr/cachemgr"
	"github.com/cachemgr/cachemgr/internal/redistest"
	"github.com/redis/go-redis/v9"
)

// coItem names the key it was stored under, so a reply meant for another
// key shows.
type coItem struct {
	Key string
}

// coHook lets a test watch or hold the commands a client sends. A nil
// func passes through.
type coHook struct {
	process  func(ctx context.Context, cmd redis.Cmder, next redis.ProcessHook) error
	pipeline func(ctx context.Context, cmds []redis.Cmder, next redis.ProcessPipelineHook) error
}

func (h coHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h coHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	if h.process == nil {
		return next
	}
	return func(ctx context.Context, cmd redis.Cmder) error { return h.process(ctx, cmd, next) }
}

func (h coHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	if h.pipeline == nil {
		return next
	}
	return func(ctx context.Context, cmds []redis.Cmder) error { return h.pipeline(ctx, cmds, next) }
}

// coClients are the two ways the Manager sends a command: on the caller's
// goroutine (the client bounds socket I/O by the context deadline) and
// guarded (it does not, so callers wait for another goroutine).
var coClients = []struct {
	name string
	opts func(*redis.Options)
}{
	{"direct", nil},
	{"guarded", func(o *redis.Options) { o.ContextTimeoutEnabled = false }},
}

// coManager returns a Manager over a client of s made with opts (nil: the
// defaults of s.Client), and the client.
func coManager(t *testing.T, s *redistest.Server, opts func(*redis.Options), mopts ...cachemgr.Option) (*cachemgr.Manager, *redis.Client) {
	t.Helper()
	rdb := s.ClientWith(t, opts)
	return managerOn(t, rdb, mopts...), rdb
}

// coHasKey reports whether cmd names key in its arguments.
func coHasKey(cmd redis.Cmder, key string) bool {
	return slices.ContainsFunc(cmd.Args(), func(a any) bool { s, ok := a.(string); return ok && s == key })
}

// TestCoalescingKeys: 64 goroutines read mixed keys, plain and versioned
// (GET and MGET), hits and misses, while the coalescer pipelines them.
// Every value names its key, so a reply handed to the wrong caller shows.
func TestCoalescingKeys(t *testing.T) {
	redistest.Each(t, func(t *testing.T, s *redistest.Server) {
		for _, cl := range coClients {
			t.Run(cl.name, func(t *testing.T) {
				noLeaks(t)
				ctx := context.Background()
				m, rdb := coManager(t, s, cl.opts, cachemgr.WithOpTimeout(2*time.Second))
				var batches, batched atomic.Int64
				rdb.AddHook(coHook{pipeline: func(ctx context.Context, cmds []redis.Cmder, next redis.ProcessPipelineHook) error {
					reads := slices.ContainsFunc(cmds, func(c redis.Cmder) bool { return c.Name() == "get" || c.Name() == "mget" })
					if len(cmds) > 1 && reads {
						batches.Add(1)
						batched.Add(int64(len(cmds)))
					}
					return next(ctx, cmds)
				}})
				caches := []*cachemgr.Cache[coItem]{
					newCache[coItem](t, m, "plain"),
					newCache[coItem](t, m, "versioned", cachemgr.WithVersioned(true)),
				}
				const keys = 200 // even keys are stored, odd ones miss
				for _, c := range caches {
					for k := 0; k < keys; k += 2 {
						key := fmt.Sprint("k", k)
						if err := c.Set(ctx, key, coItem{Key: c.Name() + "/" + key}); err != nil {
							t.Fatalf("Set(%q) error = %v", key, err)
						}
					}
				}
				var wg sync.WaitGroup
				for g := range 64 {
					wg.Go(func() {
						r := rand.New(rand.NewPCG(uint64(g), 1))
						for range 300 {
							c := caches[r.IntN(len(caches))]
							k := r.IntN(keys)
							key := fmt.Sprint("k", k)
							got, err := c.Get(ctx, key)
							switch {
							case k%2 == 1:
								if !errors.Is(err, cachemgr.ErrMiss) {
									t.Errorf("%s.Get(%q) = %+v, %v, want ErrMiss", c.Name(), key, got, err)
									return
								}
							case err != nil || got.Key != c.Name()+"/"+key:
								t.Errorf("%s.Get(%q) = %+v, %v, want %s/%s", c.Name(), key, got, err, c.Name(), key)
								return
							}
						}
					})
				}
				wg.Wait()
				if batches.Load() == 0 {
					t.Fatalf("no read shared a pipeline with another; want coalescing under 64 goroutines")
				}
				t.Logf("%d pipelines of %.1f commands on average", batches.Load(), float64(batched.Load())/float64(batches.Load()))
			})
		}
	})
}

// TestCoalescingOff: with WithCoalescing(false) concurrent reads go out
// one by one.
func TestCoalescingOff(t *testing.T) {
	ctx := context.Background()
	m, rdb := coManager(t, redistest.StartMini(t), nil, cachemgr.WithCoalescing(false))
	var pipelines atomic.Int64
	rdb.AddHook(coHook{pipeline: func(ctx context.Context, cmds []redis.Cmder, next redis.ProcessPipelineHook) error {
		// go-redis sends its connection handshake as a pipeline too.
		if slices.ContainsFunc(cmds, func(c redis.Cmder) bool { return c.Name() == "get" }) {
			pipelines.Add(1)
		}
		return next(ctx, cmds)
	}})
	c := newCache[string](t, m, "off")
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for range 50 {
				if _, err := c.Get(ctx, "k"); !errors.Is(err, cachemgr.ErrMiss) {
					t.Errorf("Get(k) error = %v, want ErrMiss", err)
					return
				}
			}
		})
	}
	wg.Wait()
	if n := pipelines.Load(); n != 0 {
		t.Errorf("pipelines of GETs sent = %d, want 0 with coalescing off", n)
	}
}

// TestCoalescingReplyErrors: a key of the wrong type among the GETs of a
// pipeline fails its own caller (a miss wrapping WRONGTYPE) and no other.
func TestCoalescingReplyErrors(t *testing.T) {
	redistest.Each(t, func(t *testing.T, s *redistest.Server) {
		ctx := context.Background()
		m, rdb := coManager(t, s, nil, cachemgr.WithOpTimeout(2*time.Second))
		const badKey = "test:e:{=bad}"
		if err := rdb.LPush(ctx, badKey, "x").Err(); err != nil {
			t.Fatalf("LPUSH %s error = %v", badKey, err)
		}
		// mixed counts pipelines holding the WRONGTYPE reply and at least
		// one good reply; spoiled counts those where another command
		// failed too.
		var mixed, spoiled atomic.Int64
		rdb.AddHook(coHook{pipeline: func(ctx context.Context, cmds []redis.Cmder, next redis.ProcessPipelineHook) error {
			err := next(ctx, cmds)
			bad, good, other := 0, 0, 0
			for _, cmd := range cmds {
				switch {
				case coHasKey(cmd, badKey) && redis.HasErrorPrefix(cmd.Err(), "WRONGTYPE"):
					bad++
				case cmd.Err() == nil:
					good++
				default:
					other++
				}
			}
			if bad > 0 && good > 0 {
				mixed.Add(1)
			}
			if bad > 0 && other > 0 {
				spoiled.Add(1)
			}
			return err
		}})
		c := newCache[coItem](t, m, "e")
		for k := range 32 {
			key := fmt.Sprint("k", k)
			if err := c.Set(ctx, key, coItem{Key: key}); err != nil {
				t.Fatalf("Set(%q) error = %v", key, err)
			}
		}
		deadline := time.Now().Add(5 * time.Second)
		for mixed.Load() == 0 && time.Now().Before(deadline) {
			var wg sync.WaitGroup
			for g := range 64 {
				wg.Go(func() {
					for i := range 50 {
						if (g+i)%8 == 0 {
							if v, err := c.Get(ctx, "bad"); !errors.Is(err, cachemgr.ErrMiss) || !strings.Contains(err.Error(), "WRONGTYPE") {
								t.Errorf("Get(bad) = %+v, %v, want ErrMiss wrapping WRONGTYPE", v, err)
								return
							}
							continue
						}
						key := fmt.Sprint("k", (g*7+i)%32)
						if v, err := c.Get(ctx, key); err != nil || v.Key != key {
							t.Errorf("Get(%q) = %+v, %v, want %s", key, v, err, key)
							return
						}
					}
				})
			}
			wg.Wait()
			if t.Failed() {
				return
			}
		}
		if mixed.Load() == 0 {
			t.Fatalf("the WRONGTYPE reply never shared a pipeline with a good one; nothing was tested")
		}
		if n := spoiled.Load(); n != 0 {
			t.Errorf("%d pipelines with the WRONGTYPE reply failed other commands too, want 0", n)
		}
		if st := m.Stats(); st.Breaker != "closed" {
			t.Errorf("Stats().Breaker = %q after WRONGTYPE replies, want closed: Redis answered", st.Breaker)
		}
	})
}

// TestCoalescingCancel: a caller whose context ends while its command is
// in a pipeline leaves at once with its own error; the pipeline goes on
// and every other caller in it gets its value.
func TestCoalescingCancel(t *testing.T) {
	redistest.Each(t, func(t *testing.T, s *redistest.Server) {
		noLeaks(t)
		ctx := context.Background()
		m, rdb := coManager(t, s, nil, cachemgr.WithOpTimeout(5*time.Second))
		const victim = "test:x:{=victim}"
		var caught atomic.Bool
		entered := make(chan struct{})
		release := make(chan struct{})
		finished := make(chan []error, 1)
		rdb.AddHook(coHook{pipeline: func(ctx context.Context, cmds []redis.Cmder, next redis.ProcessPipelineHook) error {
			if len(cmds) < 2 || !slices.ContainsFunc(cmds, func(c redis.Cmder) bool { return coHasKey(c, victim) }) || !caught.CompareAndSwap(false, true) {
				return next(ctx, cmds)
			}
			close(entered)
			<-release
			err := next(ctx, cmds)
			errs := make([]error, len(cmds))
			for i, cmd := range cmds {
				errs[i] = cmd.Err()
			}
			finished <- errs
			return err
		}})
		c := newCache[coItem](t, m, "x")
		for _, key := range []string{"victim", "k0", "k1", "k2", "k3", "k4", "k5", "k6", "k7"} {
			if err := c.Set(ctx, key, coItem{Key: key}); err != nil {
				t.Fatalf("Set(%q) error = %v", key, err)
			}
		}
		// Background readers keep a round trip in flight, so the victim's
		// GET queues and goes out in a pipeline with theirs.
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for g := range 16 {
			wg.Go(func() {
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					key := fmt.Sprint("k", (g+i)%8)
					if v, err := c.Get(ctx, key); err != nil || v.Key != key {
						t.Errorf("Get(%q) = %+v, %v, want %s", key, v, err, key)
						return
					}
				}
			})
		}
		defer func() {
			close(stop)
			wg.Wait()
		}()
		deadline := time.Now().Add(5 * time.Second)
		for {
			if time.Now().After(deadline) {
				t.Fatalf("the victim's GET never went out in a pipeline with others")
			}
			vctx, cancel := context.WithCancel(ctx)
			res := make(chan error, 1)
			go func() {
				_, err := c.Get(vctx, "victim")
				res <- err
			}()
			select {
			case err := <-res:
				cancel() // sent alone; try again
				if err != nil {
					t.Fatalf("Get(victim) error = %v", err)
				}
				continue
			case <-entered:
			}
			cancel()
			if err := <-res; !errors.Is(err, context.Canceled) {
				t.Errorf("Get(victim) with its context cancelled mid-pipeline = %v, want context.Canceled", err)
			}
			close(release)
			for i, err := range <-finished {
				if err != nil {
					t.Errorf("command %d of the victim's pipeline: error %v, want every command answered", i, err)
				}
			}
			break
		}
	})
}

// coCaller marks the contexts of the test's own calls, so a hook can tell
// a coalesced pipeline (sent under the Manager's context) from one a
// caller sent itself.
type coCaller struct{}

// TestCoalescingWritesGoAlone: writes that carry an encoded value (Set,
// the write-back of Fetch) never ride a coalesced pipeline, since the
// caller hands the value's buffer back to a pool once it returns, while
// reads around them still coalesce.
func TestCoalescingWritesGoAlone(t *testing.T) {
	noLeaks(t)
	ctx := context.WithValue(context.Background(), coCaller{}, true)
	m, rdb := coManager(t, redistest.StartMini(t), nil, cachemgr.WithOpTimeout(2*time.Second))
	var coalesced, withValue atomic.Int64
	rdb.AddHook(coHook{pipeline: func(ctx context.Context, cmds []redis.Cmder, next redis.ProcessPipelineHook) error {
		// go-redis sends its connection handshake as a pipeline too.
		ours := slices.ContainsFunc(cmds, func(c redis.Cmder) bool { return c.Name() == "get" || c.Name() == "evalsha" })
		if ctx.Value(coCaller{}) == nil && ours {
			coalesced.Add(1)
			for _, cmd := range cmds {
				if slices.ContainsFunc(cmd.Args(), func(a any) bool { _, ok := a.([]byte); return ok }) {
					withValue.Add(1)
				}
			}
		}
		return next(ctx, cmds)
	}})
	c := newCache[coItem](t, m, "w")
	var wg sync.WaitGroup
	for g := range 32 {
		wg.Go(func() {
			for i := range 30 {
				key := fmt.Sprint("k", g, "-", i)
				var err error
				switch i % 3 {
				case 0:
					err = c.Set(ctx, key, coItem{Key: key})
				case 1:
					_, err = c.Fetch(ctx, key, func(context.Context) (coItem, error) { return coItem{Key: key}, nil })
				default:
					_, err = c.Get(ctx, fmt.Sprint("k", g, "-", i-2))
				}
				if err != nil {
					t.Errorf("call %d on %q: %v", i%3, key, err)
					return
				}
			}
		})
	}
	wg.Wait()
	if coalesced.Load() == 0 {
		t.Fatalf("no coalesced pipeline under 32 goroutines; nothing was tested")
	}
	if n := withValue.Load(); n != 0 {
		t.Errorf("%d commands with a []byte argument rode a coalesced pipeline, want 0", n)
	}
}

// TestCoalescingClose: Close while callers are queued behind a round trip
// that never ends returns at once; every caller gets ErrClosed and no
// goroutine is left.
func TestCoalescingClose(t *testing.T) {
	s := redistest.StartMini(t)
	for _, cl := range coClients {
		t.Run(cl.name, func(t *testing.T) {
			noLeaks(t)
			ctx := context.Background()
			rdb := s.ClientWith(t, cl.opts)
			// A minute: only Close can end the calls held below.
			m, err := cachemgr.New(rdb, cachemgr.WithPrefix("test"), cachemgr.WithLogger(quiet), cachemgr.WithOpTimeout(time.Minute))
			if err != nil {
				t.Fatalf("New() error = %v", err)
			}
			t.Cleanup(func() { m.Close() })
			c := newCache[string](t, m, "close")
			if err := c.Set(ctx, "k", "v"); err != nil {
				t.Fatalf("Set(k) error = %v", err)
			}
			// A hung server: sends wait until their context ends.
			var hung atomic.Int64
			rdb.AddHook(coHook{
				process: func(ctx context.Context, cmd redis.Cmder, next redis.ProcessHook) error {
					hung.Add(1)
					<-ctx.Done()
					return ctx.Err()
				},
				pipeline: func(ctx context.Context, cmds []redis.Cmder, next redis.ProcessPipelineHook) error {
					hung.Add(1)
					<-ctx.Done()
					return ctx.Err()
				},
			})
			const callers = 32
			errs := make(chan error, callers)
			var started atomic.Int64
			for range callers {
				go func() {
					started.Add(1)
					_, err := c.Get(ctx, "k")
					errs <- err
				}()
			}
			waitFor(t, "the callers to start and a send to hang", func() bool {
				return started.Load() == callers && hung.Load() > 0
			})
			closed := make(chan struct{})
			go func() {
				m.Close()
				close(closed)
			}()
			select {
			case <-closed:
			case <-time.After(5 * time.Second):
				t.Fatalf("Close() with callers queued did not return within 5s")
			}
			for range callers {
				if err := <-errs; !errors.Is(err, cachemgr.ErrClosed) {
					t.Errorf("Get(k) cut short by Close = %v, want ErrClosed", err)
				}
			}
		})
	}
}

// TestCoalescingPausedServer: with the server frozen (SIGSTOP), 64
// goroutines of Get and Fetch through the coalescer each return within the
// op timeout: Get with ErrUnavailable, Fetch with the loader's value. The
// breaker is off, so every call waits on Redis.
func TestCoalescingPausedServer(t *testing.T) {
	const op = 100 * time.Millisecond
	for _, cl := range coClients {
		t.Run(cl.name, func(t *testing.T) {
			noLeaks(t)
			ctx := context.Background()
			s := redistest.Start(t)
			redistest.RequireReal(t, s)
			m, _ := coManager(t, s, cl.opts, cachemgr.WithOpTimeout(op), cachemgr.WithBreaker(0, time.Second))
			c := newCache[coItem](t, m, "p", cachemgr.WithLease(0))
			for k := range 8 {
				key := fmt.Sprint("k", k)
				if err := c.Set(ctx, key, coItem{Key: key}); err != nil {
					t.Fatalf("Set(%q) error = %v", key, err)
				}
			}
			s.Pause()
			var mu sync.Mutex
			var slowest time.Duration
			var wg sync.WaitGroup
			for g := range 64 {
				wg.Go(func() {
					for i := range 4 {
						key := fmt.Sprint("k", (g+i)%8)
						start := time.Now()
						if (g+i)%2 == 0 {
							if v, err := c.Get(ctx, key); !errors.Is(err, cachemgr.ErrUnavailable) {
								t.Errorf("Get(%q) on a frozen server = %+v, %v, want ErrUnavailable", key, v, err)
							}
						} else {
							v, err := c.Fetch(ctx, key, func(context.Context) (coItem, error) { return coItem{Key: key}, nil })
							if err != nil || v.Key != key {
								t.Errorf("Fetch(%q) on a frozen server = %+v, %v, want the loader's value", key, v, err)
							}
						}
						took := time.Since(start)
						mu.Lock()
						slowest = max(slowest, took)
						mu.Unlock()
					}
				})
			}
			wg.Wait()
			// What this guards against is a call that waits for the
			// client's read timeout (3s in tests) or for ever. A loaded
			// two-core machine running -race can add a second or more to
			// any call, so the bound is generous but still well below the
			// client's timeout.
			if limit := op + 1500*time.Millisecond; slowest > limit {
				t.Errorf("slowest call on a frozen server took %v, want <= %v (op timeout %v)", slowest, limit, op)
			}
			t.Logf("slowest call on a frozen server: %v", slowest)
			s.Resume()
			waitFor(t, "reads to succeed after SIGCONT", func() bool {
				v, err := c.Get(ctx, "k0")
				return err == nil && v.Key == "k0"
			})
		})
	}
}

// TestCoalescingClusterRing: on a 3-master Cluster and a 2-shard Ring
// (both with ContextTimeoutEnabled), 64 goroutines read 200 keys spread
// over the nodes; every reply goes to its own caller (each value names its
// key), and reads share pipelines, which go-redis splits by node.
func TestCoalescingClusterRing(t *testing.T) {
	clients := []struct {
		name  string
		start func(t *testing.T) redis.UniversalClient
	}{
		{"cluster", func(t *testing.T) redis.UniversalClient {
			return redistest.StartCluster(t, 3).Client(t)
		}},
		{"ring", func(t *testing.T) redis.UniversalClient {
			a, b := redistest.Start(t), redistest.Start(t)
			ring := redis.NewRing(&redis.RingOptions{
				Addrs:                 map[string]string{"a": a.Addr(), "b": b.Addr()},
				ContextTimeoutEnabled: true,
			})
			t.Cleanup(func() { ring.Close() })
			return ring
		}},
	}
	for _, cl := range clients {
		t.Run(cl.name, func(t *testing.T) {
			noLeaks(t)
			ctx := context.Background()
			rdb := cl.start(t)
			// Two seconds: a loaded machine stalls; the test is about replies.
			m, err := cachemgr.New(rdb, testOptions(cachemgr.WithOpTimeout(2*time.Second))...)
			if err != nil {
				t.Fatalf("New() error = %v", err)
			}
			t.Cleanup(func() { m.Close() })
			var batches atomic.Int64
			rdb.AddHook(coHook{pipeline: func(ctx context.Context, cmds []redis.Cmder, next redis.ProcessPipelineHook) error {
				gets := 0
				for _, c := range cmds {
					if c.Name() == "get" {
						gets++
					}
				}
				if gets > 1 {
					batches.Add(1)
				}
				return next(ctx, cmds)
			}})
			c := newCache[coItem](t, m, "spread")
			const keys = 200
			for k := range keys {
				key := fmt.Sprint("k", k)
				if err := c.Set(ctx, key, coItem{Key: key}); err != nil {
					t.Fatalf("Set(%q) error = %v", key, err)
				}
			}
			var wg sync.WaitGroup
			for g := range 64 {
				wg.Go(func() {
					for i := range 50 {
						key := fmt.Sprint("k", (g*50+i)%keys)
						if got, err := c.Get(ctx, key); err != nil || got.Key != key {
							t.Errorf("Get(%q) = %+v, %v; want %s", key, got, err, key)
							return
						}
					}
				})
			}
			wg.Wait()
			if batches.Load() == 0 {
				t.Fatalf("no read shared a pipeline with another; want coalescing under 64 goroutines")
			}
		})
	}
}
