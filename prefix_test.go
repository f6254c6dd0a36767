package cachemgr_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/cachemgr/cachemgr"
	"github.com/cachemgr/cachemgr/internal/redistest"
)

func TestInvalidatePrefix(t *testing.T) {
	redistest.Each(t, func(t *testing.T, s *redistest.Server) {
		ctx := context.Background()
		m, _ := newManager(t, s)
		for _, versioned := range []bool{false, true} {
			name := map[bool]string{false: "plain", true: "versioned"}[versioned]
			t.Run(name, func(t *testing.T) {
				c := newCache[string](t, m, name, cachemgr.WithVersioned(versioned))
				other := newCache[string](t, m, name+"x")
				long := "user:" + strings.Repeat("z", 300)
				inputs := []string{"user:1", "user:2", "order:1", "us*er", "usXer", "user", long}
				for _, k := range inputs {
					if err := c.Set(ctx, k, k); err != nil {
						t.Fatalf("Set(%.20q) error = %v", k, err)
					}
				}
				if err := other.Set(ctx, "user:1", "other cache"); err != nil {
					t.Fatalf("Set() error = %v", err)
				}
				c.Delete(ctx, "gone") // leaves a marker key the scan must skip
				n, err := c.InvalidatePrefix(ctx, "user:")
				if err != nil || n != 3 {
					t.Fatalf("InvalidatePrefix(user:) = %d, %v; want 3", n, err)
				}
				n, err = c.InvalidatePrefix(ctx, "us*")
				if err != nil || n != 1 {
					t.Fatalf("InvalidatePrefix(us*) = %d, %v; want 1 (glob escaped)", n, err)
				}
				for _, k := range inputs {
					_, err := c.Get(ctx, k)
					wantMiss := strings.HasPrefix(k, "user:") || k == "us*er"
					if got := errors.Is(err, cachemgr.ErrMiss); got != wantMiss {
						t.Errorf("Get(%.20q) miss = %v, want %v", k, got, wantMiss)
					}
				}
				if v, err := other.Get(ctx, "user:1"); err != nil || v != "other cache" {
					t.Errorf("other cache Get = %q, %v; want untouched", v, err)
				}
			})
		}
	})
}
