package cachemgr_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/cachemgr/cachemgr"
	"github.com/cachemgr/cachemgr/internal/redistest"
	"github.com/redis/go-redis/v9"
)

// writeLog records the pipelines and single commands a client sends, by
// their command names.
type writeLog struct {
	mu    sync.Mutex
	sends [][]string
}

func (l *writeLog) DialHook(next redis.DialHook) redis.DialHook { return next }

func (l *writeLog) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		l.record([]redis.Cmder{cmd})
		return next(ctx, cmd)
	}
}

func (l *writeLog) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		l.record(cmds)
		return next(ctx, cmds)
	}
}

func (l *writeLog) record(cmds []redis.Cmder) {
	names := make([]string, len(cmds))
	for i, c := range cmds {
		names[i] = c.Name()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sends = append(l.sends, names)
}

func (l *writeLog) reset() []([]string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.sends
	l.sends = nil
	return s
}

// TestDeleteAndInvalidate: keys of the cache are deleted and entries of
// any cache carrying the tags become unreadable, in this process (L1
// included) and in another one with an L1 tier; the Redis writes go in one
// round trip on a single node; a load that began before the call does not
// write its result back afterwards; and DeleteMany is the same without
// tags.
func TestDeleteAndInvalidate(t *testing.T) {
	batchCases(t, func(t *testing.T, rdb redis.UniversalClient) {
		for _, versioned := range []bool{false, true} {
			t.Run(fmt.Sprint("versioned=", versioned), func(t *testing.T) {
				ctx := context.Background()
				log := &writeLog{}
				rdb.AddHook(log)
				a, err := cachemgr.New(rdb, testOptions(cachemgr.WithL1(100), cachemgr.WithPrefix(fmt.Sprint("dai", versioned)))...)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { a.Close() })
				b, err := cachemgr.New(rdb, testOptions(cachemgr.WithL1(100), cachemgr.WithPrefix(fmt.Sprint("dai", versioned)))...)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { b.Close() })
				ca := newCache[string](t, a, "rows", cachemgr.WithVersioned(versioned))
				cb := newCache[string](t, b, "rows", cachemgr.WithVersioned(versioned))
				la := newCache[string](t, a, "lists")
				lb := newCache[string](t, b, "lists")
				for _, k := range []string{"r1", "r2", "r3"} {
					if err := ca.Set(ctx, k, "old "+k); err != nil {
						t.Fatal(err)
					}
				}
				if err := la.Set(ctx, "all", "old list", cachemgr.Tags("rows")); err != nil {
					t.Fatal(err)
				}
				// Both processes hold them in their L1 tiers.
				for _, c := range []*cachemgr.Cache[string]{ca, cb} {
					for _, k := range []string{"r1", "r2", "r3"} {
						if _, err := c.Get(ctx, k); err != nil {
							t.Fatal(err)
						}
					}
				}
				for _, c := range []*cachemgr.Cache[string]{la, lb} {
					if _, err := c.Get(ctx, "all"); err != nil {
						t.Fatal(err)
					}
				}
				// A load of r1 that began before the call.
				entered, release := make(chan struct{}), make(chan struct{})
				done := make(chan struct{})
				go func() {
					defer close(done)
					ca.Fetch(ctx, "late", func(context.Context) (string, error) {
						close(entered)
						<-release
						return "loaded before the delete", nil
					})
				}()
				<-entered
				// Once, so the server knows the scripts (a first EVALSHA
				// fails with NOSCRIPT and is sent again as EVAL).
				if err := ca.DeleteAndInvalidate(ctx, []string{"warm-up"}, []string{"warm-up"}); err != nil {
					t.Fatal(err)
				}
				log.reset()
				if err := ca.DeleteAndInvalidate(ctx, []string{"r1", "r2", "late", "r1"}, []string{"rows"}); err != nil {
					t.Fatalf("DeleteAndInvalidate() error = %v", err)
				}
				sends := log.reset()
				close(release)
				<-done
				if _, single := rdb.(*redis.Client); single {
					var writes int
					for _, s := range sends {
						if !(len(s) == 1 && (s[0] == "publish" || s[0] == "get")) {
							writes++
						}
					}
					if writes != 1 {
						t.Errorf("DeleteAndInvalidate sent %q: want its writes in one round trip", sends)
					}
				}
				for _, c := range []*cachemgr.Cache[string]{ca, cb} {
					waitFor(t, "the deletes to reach "+c.Manager().Prefix(), func() bool {
						_, e1 := c.Get(ctx, "r1")
						_, e2 := c.Get(ctx, "r2")
						return errors.Is(e1, cachemgr.ErrMiss) && errors.Is(e2, cachemgr.ErrMiss)
					})
					if v, err := c.Get(ctx, "r3"); v != "old r3" || err != nil {
						t.Errorf("Get(r3), not deleted = %q, %v", v, err)
					}
					if _, err := c.Get(ctx, "late"); !errors.Is(err, cachemgr.ErrMiss) {
						t.Errorf("Get(late) after a load that began before the delete = %v, want ErrMiss", err)
					}
				}
				for _, c := range []*cachemgr.Cache[string]{la, lb} {
					waitFor(t, "the tag invalidation to reach every L1 tier", func() bool {
						_, err := c.Get(ctx, "all")
						return errors.Is(err, cachemgr.ErrMiss)
					})
				}
				if err := ca.DeleteMany(ctx, "r3"); err != nil {
					t.Fatalf("DeleteMany() error = %v", err)
				}
				waitFor(t, "DeleteMany to reach the other process", func() bool {
					_, err := cb.Get(ctx, "r3")
					return errors.Is(err, cachemgr.ErrMiss)
				})
			})
		}
	})
}

// TestDeleteAndInvalidateKeptWhileRedisPaused: when Redis cannot take the
// write, the call returns ErrUnavailable, this process serves nothing the
// call covers, and the queued deletes and invalidation land once Redis is
// back, for every process.
func TestDeleteAndInvalidateKeptWhileRedisPaused(t *testing.T) {
	p := newPausedPair(t)
	p.s.Pause()
	err := p.ca.DeleteAndInvalidate(context.Background(), []string{"x"}, []string{"t-y"})
	if !errors.Is(err, cachemgr.ErrUnavailable) {
		t.Errorf("DeleteAndInvalidate() on a paused server = %v, want ErrUnavailable", err)
	}
	p.checkQueued(t)
	p.s.Resume()
	p.checkLanded(t)
}

// TestDeleteAndInvalidateRejectsBadInput: an empty tag is refused before
// anything is deleted; no keys and no tags is a no-op.
func TestDeleteAndInvalidateRejectsBadInput(t *testing.T) {
	m, _ := newManager(t, redistest.StartMini(t))
	ctx := context.Background()
	c := newCache[string](t, m, "bad")
	if err := c.Set(ctx, "k", "v"); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteAndInvalidate(ctx, []string{"k"}, []string{""}); !errors.Is(err, cachemgr.ErrInvalidOption) || strings.Count(err.Error(), "cachemgr:") != 1 {
		t.Errorf("DeleteAndInvalidate(empty tag) error = %v, want one ErrInvalidOption", err)
	}
	if v, err := c.Get(ctx, "k"); v != "v" || err != nil {
		t.Errorf("Get(k) after a refused call = %q, %v; want it kept", v, err)
	}
	if err := c.DeleteMany(ctx); err != nil {
		t.Errorf("DeleteMany() of nothing = %v", err)
	}
	m.Close()
	if err := c.DeleteMany(ctx, "k"); !errors.Is(err, cachemgr.ErrClosed) {
		t.Errorf("DeleteMany() after Close = %v, want ErrClosed", err)
	}
}
