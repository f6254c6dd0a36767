package cachemgr_test

import (
	"context"
	"errors"
	"testing"

	"github.com/cachemgr/cachemgr"
	"github.com/cachemgr/cachemgr/internal/redistest"
)

func TestBump(t *testing.T) {
	redistest.Each(t, func(t *testing.T, s *redistest.Server) {
		ctx := context.Background()
		a, _ := newManager(t, s)
		b, _ := newManager(t, s) // another process
		ca := newCache[string](t, a, "ver", cachemgr.WithVersioned(true))
		cb := newCache[string](t, b, "ver", cachemgr.WithVersioned(true))
		for _, k := range []string{"1", "2"} {
			if err := ca.Set(ctx, k, "old "+k); err != nil {
				t.Fatalf("Set(%q) error = %v", k, err)
			}
		}
		if v, err := cb.Get(ctx, "1"); err != nil || v != "old 1" {
			t.Fatalf("other process Get = %q, %v; want old 1", v, err)
		}
		if err := ca.Bump(ctx); err != nil {
			t.Fatalf("Bump() error = %v", err)
		}
		for _, c := range []*cachemgr.Cache[string]{ca, cb} {
			for _, k := range []string{"1", "2"} {
				if v, err := c.Get(ctx, k); !errors.Is(err, cachemgr.ErrMiss) {
					t.Errorf("Get(%q) after Bump = %q, %v; want ErrMiss", k, v, err)
				}
			}
		}
		if err := cb.Set(ctx, "1", "new"); err != nil {
			t.Fatalf("Set after Bump error = %v", err)
		}
		if v, err := ca.Get(ctx, "1"); err != nil || v != "new" {
			t.Errorf("Get after Bump and Set = %q, %v; want new", v, err)
		}
		if err := cb.Delete(ctx, "1"); err != nil {
			t.Fatalf("Delete() error = %v", err)
		}
		if _, err := ca.Get(ctx, "1"); !errors.Is(err, cachemgr.ErrMiss) {
			t.Errorf("Get after Delete in versioned cache error = %v, want ErrMiss", err)
		}
	})
}

func TestBumpUnversioned(t *testing.T) {
	m, _ := newManager(t, redistest.StartMini(t))
	c := newCache[int](t, m, "plain")
	if err := c.Bump(context.Background()); !errors.Is(err, cachemgr.ErrNotVersioned) {
		t.Errorf("Bump() on unversioned cache error = %v, want ErrNotVersioned", err)
	}
}

// TestBumpDuringLoad proves guarantee 3 for Bump.
func TestBumpDuringLoad(t *testing.T) {
	redistest.Each(t, func(t *testing.T, s *redistest.Server) {
		ctx := context.Background()
		m, _ := newManager(t, s)
		c := newCache[string](t, m, "ver", cachemgr.WithVersioned(true))
		blockedFetch(t, c, "k", "old", func() {
			if err := c.Bump(ctx); err != nil {
				t.Fatalf("Bump() error = %v", err)
			}
		})
		if v, err := c.Get(ctx, "k"); !errors.Is(err, cachemgr.ErrMiss) {
			t.Errorf("Get after Bump during load = %q, %v; want ErrMiss", v, err)
		}
	})
}

// TestVersionKeyLost: an evicted or expired version key must not bring old
// entries back; they become unreachable and new writes work.
func TestVersionKeyLost(t *testing.T) {
	redistest.Each(t, func(t *testing.T, s *redistest.Server) {
		ctx := context.Background()
		m, rdb := newManager(t, s)
		c := newCache[string](t, m, "ver", cachemgr.WithVersioned(true))
		if err := c.Set(ctx, "k", "before"); err != nil {
			t.Fatalf("Set() error = %v", err)
		}
		if err := c.Bump(ctx); err != nil {
			t.Fatalf("Bump() error = %v", err)
		}
		if err := c.Set(ctx, "k", "current"); err != nil {
			t.Fatalf("Set() error = %v", err)
		}
		if n := rdb.Del(ctx, "test:ver:~v").Val(); n != 1 {
			t.Fatalf("DEL version key = %d, want 1", n)
		}
		if v, err := c.Get(ctx, "k"); !errors.Is(err, cachemgr.ErrMiss) {
			t.Errorf("Get after version key loss = %q, %v; want ErrMiss", v, err)
		}
		if err := c.Set(ctx, "k", "after"); err != nil {
			t.Fatalf("Set() error = %v", err)
		}
		if v, err := c.Get(ctx, "k"); err != nil || v != "after" {
			t.Errorf("Get after re-Set = %q, %v; want after", v, err)
		}
	})
}

// blockedFetch runs a Fetch of key whose loader returns val only after
// during has run, as a loader that read the database before an
// invalidation would.
func blockedFetch[T any](t *testing.T, c *cachemgr.Cache[T], key string, val T, during func()) {
	t.Helper()
	inLoad, release := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		_, err := c.Fetch(context.Background(), key, func(context.Context) (T, error) {
			close(inLoad)
			<-release
			return val, nil
		})
		done <- err
	}()
	<-inLoad
	during()
	close(release)
	if err := <-done; err != nil {
		t.Fatalf("Fetch() error = %v", err)
	}
}
