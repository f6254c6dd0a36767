package cachemgr_test

// Fault tests: durations and clocks — edge TTLs, remaining-TTL sentinels,
// clock skew between processes (docs/reliability.md, group F).

import (
	"context"
	"errors"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/cachemgr/cachemgr"
	"github.com/cachemgr/cachemgr/internal/redistest"
)

// TestReliabilityTTLEdges (scenario 63): edge durations at every place a
// TTL enters the API. Zero, negative and overflowing values are clear
// errors (never "no expiry", which is what go-redis makes of them); sub-
// millisecond values round up to Redis' 1 ms; MaxTTL itself is accepted;
// jitter never takes a TTL to zero.
func TestReliabilityTTLEdges(t *testing.T) {
	s := redistest.Start(t)
	ctx := context.Background()
	m, rdb := newManager(t, s)
	invalid := []time.Duration{0, -5 * time.Second, -time.Nanosecond, math.MinInt64, cachemgr.MaxTTL + time.Nanosecond, math.MaxInt64}
	for _, d := range invalid {
		t.Run(fmt.Sprint("invalid ", d), func(t *testing.T) {
			if _, err := cachemgr.NewCache[int](m, "bad", cachemgr.WithTTL(d)); !errors.Is(err, cachemgr.ErrInvalidTTL) {
				t.Errorf("NewCache(WithTTL(%v)) error = %v, want ErrInvalidTTL", d, err)
			}
			if d != 0 {
				if _, err := cachemgr.NewCache[int](m, "bad", cachemgr.WithNegativeTTL(d)); !errors.Is(err, cachemgr.ErrInvalidTTL) {
					t.Errorf("NewCache(WithNegativeTTL(%v)) error = %v, want ErrInvalidTTL", d, err)
				}
			}
			c := newCache[int](t, m, "edge")
			if err := c.Set(ctx, "set", 1, cachemgr.TTL(d)); !errors.Is(err, cachemgr.ErrInvalidTTL) || !errors.Is(err, cachemgr.ErrInvalidOption) {
				t.Errorf("Set(TTL(%v)) error = %v, want ErrInvalidTTL and ErrInvalidOption", d, err)
			}
			loads := 0
			if _, err := c.Fetch(ctx, "fetch", func(context.Context) (int, error) { loads++; return 1, nil }, cachemgr.TTL(d)); !errors.Is(err, cachemgr.ErrInvalidTTL) || loads != 0 {
				t.Errorf("Fetch(TTL(%v)) = %v with %d loads, want ErrInvalidTTL before any load", d, err, loads)
			}
			v, err := c.Fetch(ctx, "entry", func(ctx context.Context) (int, error) {
				cachemgr.EntryFrom(ctx).SetTTL(d)
				return 7, nil
			})
			if err != nil || v != 7 {
				t.Errorf("Fetch(EntryFrom.SetTTL(%v)) = %d, %v; want the value", d, v, err)
			}
			for _, k := range []string{"set", "fetch", "entry"} {
				if n := rdb.Exists(ctx, "test:edge:{="+k+"}").Val(); n != 0 {
					t.Errorf("TTL %v: key %q written; want nothing stored", d, k)
				}
			}
			rdb.Del(ctx, "test:edge:{=entry}")
		})
	}
	valid := []struct {
		d        time.Duration
		min, max time.Duration // PTTL right after the write
	}{
		{time.Nanosecond, 0, time.Millisecond},
		{500 * time.Microsecond, 0, time.Millisecond},
		{1500 * time.Microsecond, 0, 2 * time.Millisecond},
		{time.Hour, 59 * time.Minute, time.Hour},
		{cachemgr.MaxTTL, cachemgr.MaxTTL - time.Minute, cachemgr.MaxTTL},
	}
	c := newCache[int](t, m, "ok", cachemgr.WithJitter(0))
	for _, tt := range valid {
		t.Run(fmt.Sprint("valid ", tt.d), func(t *testing.T) {
			if _, err := cachemgr.NewCache[int](m, "ok2", cachemgr.WithTTL(tt.d), cachemgr.WithNegativeTTL(tt.d)); err != nil {
				t.Errorf("NewCache(WithTTL(%v), WithNegativeTTL(%v)) error = %v", tt.d, tt.d, err)
			}
			for _, k := range []string{"set", "entry"} {
				var err error
				if k == "set" {
					err = c.Set(ctx, k, 1, cachemgr.TTL(tt.d))
				} else {
					_, err = c.Fetch(ctx, k, func(ctx context.Context) (int, error) {
						cachemgr.EntryFrom(ctx).SetTTL(tt.d)
						return 1, nil
					})
				}
				if err != nil {
					t.Fatalf("%s with TTL %v error = %v", k, tt.d, err)
				}
				ttl := rdb.PTTL(ctx, "test:ok:{="+k+"}").Val()
				if ttl == -2*time.Nanosecond && tt.max <= 2*time.Millisecond {
					continue // a 1-2 ms TTL may have run out already
				}
				if ttl < tt.min || ttl > tt.max {
					t.Errorf("%s with TTL %v: PTTL = %v, want in [%v, %v] (never -1: no expiry)", k, tt.d, ttl, tt.min, tt.max)
				}
				rdb.Del(ctx, "test:ok:{="+k+"}")
			}
		})
	}
	t.Run("jitter floor", func(t *testing.T) {
		jc := newCache[int](t, m, "jit", cachemgr.WithJitter(0.5), cachemgr.WithTTL(time.Millisecond))
		for i := range 50 {
			key := fmt.Sprint(i)
			if err := jc.Set(ctx, key, i); err != nil {
				t.Fatalf("Set() error = %v", err)
			}
			if ttl := rdb.PTTL(ctx, "test:jit:{="+key+"}").Val(); ttl == -1*time.Nanosecond || ttl > 2*time.Millisecond {
				t.Errorf("PTTL with 1ms TTL and 50%% jitter = %v, want expiring within 2ms", ttl)
			}
		}
	})
}

// TestReliabilityTTLSentinels (scenario 64): PTTL reports -1 (no expiry)
// and -2 (missing). The scripts that read it must not take either for a
// long life: a tag stamp written without expiry (by hand, or by an old
// version) gets a TTL at the next tagged write or invalidation.
func TestReliabilityTTLSentinels(t *testing.T) {
	s := redistest.Start(t)
	ctx := context.Background()
	m, rdb := newManager(t, s)
	c := newCache[int](t, m, "sent")
	for _, tt := range []struct {
		name string
		do   func() error
	}{
		{"tagged Set", func() error { return c.Set(ctx, "k", 1, cachemgr.Tags("t")) }},
		{"tagged Fetch", func() error {
			_, err := c.Fetch(ctx, "f", func(context.Context) (int, error) { return 1, nil }, cachemgr.Tags("t"))
			return err
		}},
		{"InvalidateTags", func() error { return m.InvalidateTags(ctx, "t") }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if err := rdb.Set(ctx, "test:~tag:{tt}", time.Now().Add(-time.Hour).UnixMilli(), 0).Err(); err != nil {
				t.Fatalf("SET stamp without expiry: %v", err)
			}
			if err := tt.do(); err != nil {
				t.Fatalf("error = %v", err)
			}
			if ttl := rdb.PTTL(ctx, "test:~tag:{tt}").Val(); ttl <= 0 {
				t.Errorf("stamp PTTL after %s = %v, want a TTL", tt.name, ttl)
			}
		})
	}
	t.Run("Get of missing and expiring keys", func(t *testing.T) {
		if _, err := c.Get(ctx, "never"); !errors.Is(err, cachemgr.ErrMiss) {
			t.Errorf("Get(missing) = %v, want ErrMiss", err)
		}
		if err := c.Set(ctx, "short", 1, cachemgr.TTL(time.Millisecond)); err != nil {
			t.Fatalf("Set() error = %v", err)
		}
		waitFor(t, "a 1ms entry to expire", func() bool { return rdb.Exists(ctx, "test:sent:{=short}").Val() == 0 })
		if _, err := c.Get(ctx, "short"); !errors.Is(err, cachemgr.ErrMiss) {
			t.Errorf("Get(expired) = %v, want ErrMiss", err)
		}
	})
}

// TestReliabilityClockSkew (scenario 65): the processes' clocks are a
// second apart, far beyond the skew allowance. On one Redis node, tag
// stamps, load stamps and Set stamps all come from the server's clock, so
// the processes' clocks do not matter: B's InvalidateTags right after A's
// load and A's Set makes both unreadable, and a Set by A right after B's
// InvalidateTags is readable at once.
func TestReliabilityClockSkew(t *testing.T) {
	s := redistest.Start(t)
	ctx := context.Background()
	for _, offset := range []time.Duration{time.Second, -time.Second} {
		t.Run(fmt.Sprint("clock ", offset), func(t *testing.T) {
			skewed, _ := newManager(t, s, cachemgr.WithClock(func() time.Time { return time.Now().Add(offset) }))
			b, _ := newManager(t, s)
			name := fmt.Sprint("skew", offset.Milliseconds())
			ca, cb := newCache[string](t, skewed, name), newCache[string](t, b, name)
			if _, err := ca.Fetch(ctx, "f", func(context.Context) (string, error) { return "old", nil }, cachemgr.Tags("t"+name)); err != nil {
				t.Fatalf("A: Fetch(f) error = %v", err)
			}
			if err := ca.Set(ctx, "k", "old", cachemgr.Tags("t"+name)); err != nil {
				t.Fatalf("A: Set(k) error = %v", err)
			}
			if err := b.InvalidateTags(ctx, "t"+name); err != nil {
				t.Fatalf("B: InvalidateTags error = %v", err)
			}
			for _, c := range []*cachemgr.Cache[string]{ca, cb} {
				for _, k := range []string{"f", "k"} {
					if v, err := c.Get(ctx, k); !errors.Is(err, cachemgr.ErrMiss) {
						t.Errorf("Get(%q), written by A, after B's InvalidateTags = %q, %v; want ErrMiss", k, v, err)
					}
				}
			}
			if err := ca.Set(ctx, "k", "new", cachemgr.Tags("t"+name)); err != nil {
				t.Fatalf("A: Set(k) error = %v", err)
			}
			for _, c := range []*cachemgr.Cache[string]{ca, cb} {
				if v, err := c.Get(ctx, "k"); err != nil || v != "new" {
					t.Errorf("Get(k) after A's Set that followed the InvalidateTags = %q, %v; want new", v, err)
				}
			}
		})
	}
}
