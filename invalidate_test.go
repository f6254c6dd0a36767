package cachemgr_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cachemgr/cachemgr"
	"github.com/cachemgr/cachemgr/internal/redistest"
	"github.com/redis/go-redis/v9"
)

// flakyHook makes a share of a client's commands time out while on: half
// of them before they are sent, half after (the command ran, its reply is
// lost), as a busy or sick network does.
type flakyHook struct {
	on   atomic.Bool
	rate float64
	mu   sync.Mutex
	rnd  *rand.Rand
}

func newFlakyHook(rate float64) *flakyHook {
	return &flakyHook{rate: rate, rnd: rand.New(rand.NewPCG(1, 2))}
}

var errFlaky = &net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}

// roll returns 0 to pass, 1 to fail before sending, 2 to lose the reply.
func (h *flakyHook) roll() int {
	if !h.on.Load() {
		return 0
	}
	h.mu.Lock()
	r := h.rnd.Float64()
	h.mu.Unlock()
	switch {
	case r < h.rate/2:
		return 1
	case r < h.rate:
		return 2
	}
	return 0
}

func (h *flakyHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *flakyHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		fate := h.roll()
		if fate == 1 {
			cmd.SetErr(errFlaky)
			return errFlaky
		}
		err := next(ctx, cmd)
		if fate == 2 {
			cmd.SetErr(errFlaky)
			return errFlaky
		}
		return err
	}
}

func (h *flakyHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		fate := h.roll()
		if fate == 1 {
			for _, c := range cmds {
				c.SetErr(errFlaky)
			}
			return errFlaky
		}
		err := next(ctx, cmds)
		if fate == 2 {
			for _, c := range cmds {
				c.SetErr(errFlaky)
			}
			return errFlaky
		}
		return err
	}
}

// TestInvalidationNotLost: writers change a source of truth and invalidate
// (Delete, Set, InvalidateTags, Bump in turn) while a third of the writer
// process's Redis commands time out, and readers in that process and in
// another one keep reading. The writer process never reads back a value
// older than one it invalidated, even when the invalidation returned an
// error; once the faults heal and the queue of invalidations has drained,
// no process reads anything older than the source of truth. The other
// process runs with an L1 tier (its reads are mostly local hits) and
// without one (every read and load goes through Redis, so its loads and
// write-backs race the writer's invalidations far more often).
func TestInvalidationNotLost(t *testing.T) {
	t.Run("reader-l1", func(t *testing.T) {
		testInvalidationNotLost(t, nil, cachemgr.WithL1(100), cachemgr.WithL1TTL(time.Hour))
	})
	t.Run("reader-no-l1", func(t *testing.T) { testInvalidationNotLost(t, nil) })
	// Fetch returns before its write-back lands; the guard is the same.
	t.Run("write-behind", func(t *testing.T) {
		testInvalidationNotLost(t, []cachemgr.CacheOption{cachemgr.WithWriteBehind(true)}, cachemgr.WithL1(100), cachemgr.WithL1TTL(time.Hour))
	})
}

func testInvalidationNotLost(t *testing.T, cacheOpts []cachemgr.CacheOption, readerOpts ...cachemgr.Option) {
	ctx := context.Background()
	s := redistest.Start(t)
	flaky := newFlakyHook(0.3)
	rdb := s.Client(t)
	rdb.AddHook(flaky)
	a, err := cachemgr.New(rdb, testOptions(cachemgr.WithEvents(true), cachemgr.WithOpTimeout(100*time.Millisecond),
		cachemgr.WithWriteTimeout(200*time.Millisecond), cachemgr.WithBreaker(3, 50*time.Millisecond))...)
	if err != nil {
		t.Fatalf("New() error = %v", err)
	}
	t.Cleanup(func() { a.Close() })
	b, _ := newManager(t, s, readerOpts...)
	const keys = 8
	var db, floors [keys]atomic.Int64
	raise := func(i int, v int64) {
		for {
			cur := floors[i].Load()
			if v <= cur || floors[i].CompareAndSwap(cur, v) {
				return
			}
		}
	}
	for _, versioned := range []bool{false, true} {
		name := fmt.Sprint("durable-", versioned)
		opts := append([]cachemgr.CacheOption{cachemgr.WithVersioned(versioned), cachemgr.WithTTL(time.Hour)}, cacheOpts...)
		ca := newCache[int64](t, a, name, opts...)
		cb := newCache[int64](t, b, name, opts...)
		load := func(i int) func(context.Context) (int64, error) {
			return func(ctx context.Context) (int64, error) {
				cachemgr.EntryFrom(ctx).AddTags(fmt.Sprint(name, ":row:", i))
				return db[i].Load(), nil
			}
		}
		flaky.on.Store(true)
		var wg sync.WaitGroup
		var ownStale, reads atomic.Int64
		for g := range 4 {
			wg.Go(func() {
				rnd := rand.New(rand.NewPCG(uint64(g), 3))
				for range 150 {
					i := rnd.IntN(keys)
					floor := floors[i].Load()
					if g%2 == 0 {
						v, err := ca.Fetch(ctx, fmt.Sprint(i), load(i))
						if err == nil {
							reads.Add(1)
							if v < floor {
								ownStale.Add(1)
							}
						}
					} else {
						cb.Fetch(ctx, fmt.Sprint(i), load(i))
					}
				}
			})
		}
		for g := range 2 {
			wg.Go(func() {
				rnd := rand.New(rand.NewPCG(uint64(g), 4))
				for n := range 60 {
					// Each writer owns half the keys: two writers racing
					// Sets of one key would leave whichever landed last,
					// with or without faults.
					i := 2*rnd.IntN(keys/2) + g
					v := db[i].Add(1)
					key := fmt.Sprint(i)
					var err error
					switch n % 4 {
					case 0:
						err = ca.Delete(ctx, key)
					case 1:
						err = ca.Set(ctx, key, v, cachemgr.Tags(fmt.Sprint(name, ":row:", i)))
					case 2:
						err = a.InvalidateTags(ctx, fmt.Sprint(name, ":row:", i))
					default:
						if versioned {
							err = ca.Bump(ctx)
						} else {
							err = ca.Delete(ctx, key)
						}
					}
					if err != nil && !errors.Is(err, cachemgr.ErrUnavailable) {
						t.Errorf("invalidation error = %v, want nil or ErrUnavailable", err)
					}
					raise(i, v) // returned, with or without an error
				}
			})
		}
		wg.Wait()
		flaky.on.Store(false)
		if n := ownStale.Load(); n != 0 {
			t.Errorf("versioned=%v: the writer process read %d of %d values older than an invalidation it had returned from", versioned, n, reads.Load())
		}
		waitFor(t, "the queued invalidations to land", func() bool { return a.Stats().InvalidationsPending == 0 })
		for i := range keys {
			want := db[i].Load()
			for _, c := range []*cachemgr.Cache[int64]{ca, cb} {
				// Twice: the second read may be an L1 hit.
				for range 2 {
					if v, err := c.Fetch(ctx, fmt.Sprint(i), load(i)); err != nil || v != want {
						t.Errorf("versioned=%v: %s Fetch(%d) after healing = %d, %v; want %d", versioned, c.Manager().Prefix(), i, v, err, want)
					}
				}
			}
		}
		st := a.Stats()
		t.Logf("versioned=%v: %d own reads; writer stats: retries %d, pending %d, background retries %d, recovered %d, given up %d",
			versioned, reads.Load(), st.WriteRetries, st.InvalidationsPending, st.InvalidationRetries, st.InvalidationsRecovered, st.InvalidationsGivenUp)
		if st.WriteRetries == 0 {
			t.Errorf("no write was retried: the faults did not reach the writes")
		}
	}
}

// TestInvalidationKeptWhileRedisPaused: Redis is paused longer than the
// write timeout. Delete and InvalidateTags return ErrUnavailable, this
// process stops serving what they cover at once, and once Redis is back
// the queued invalidations land without another call: another process
// reads the new state.
func TestInvalidationKeptWhileRedisPaused(t *testing.T) {
	ctx := context.Background()
	p := newPausedPair(t)
	p.s.Pause()
	if err := p.ca.Delete(ctx, "x"); !errors.Is(err, cachemgr.ErrUnavailable) {
		t.Errorf("Delete() on a paused server = %v, want ErrUnavailable", err)
	}
	if err := p.a.InvalidateTags(ctx, "t-y"); !errors.Is(err, cachemgr.ErrUnavailable) {
		t.Errorf("InvalidateTags() on a paused server = %v, want ErrUnavailable", err)
	}
	p.checkQueued(t)
	p.s.Resume()
	// Redis answers again but the queue may not have drained yet: batch
	// reads of the writer process do not serve the old values either.
	vals, errs, err := p.ca.FetchMany(ctx, []string{"x", "y"}, func(_ context.Context, missing []string) (map[string]string, error) {
		out := map[string]string{}
		for _, k := range missing {
			out[k] = "new"
		}
		return out, nil
	})
	for i, k := range []string{"x", "y"} {
		if err != nil || errs[i] != nil || vals[i] != "new" {
			t.Errorf("FetchMany()[%s] in the writer process after its invalidation = %q, %v, %v; want new", k, vals[i], errs[i], err)
		}
	}
	p.checkLanded(t)
}
