package cachemgr_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/cachemgr/cachemgr"
	"github.com/cachemgr/cachemgr/internal/redistest"
)

// TestTrackingExpiry: a key that expires in Redis (no command touches it)
// leaves both L1 tiers when Redis deletes it.
func TestTrackingExpiry(t *testing.T) {
	ctx := context.Background()
	s := redistest.Start(t)
	plain := s.Client(t)
	m, _ := newManager(t, s, cachemgr.WithL1(100), cachemgr.WithL1TTL(time.Hour))
	c := newCache[int](t, m, "tr", cachemgr.WithTTL(time.Hour))
	if err := c.Set(ctx, "k", 1); err != nil {
		t.Fatalf("Set() error = %v", err)
	}
	waitL1(t, c, "k")
	if err := plain.PExpire(ctx, "test:tr:{=k}", 50*time.Millisecond).Err(); err != nil {
		t.Fatalf("PEXPIRE error = %v", err)
	}
	waitL1(t, c, "k") // PEXPIRE changed the key; it is read again
	// Redis's active expiry deletes it within a few of its 100 ms cycles,
	// without any read: only its tracking message can drop it from L1.
	waitDropped(t, c, "k", "expiry")
}

// waitL1 writes key if it is missing and reads it until c's L1 tier serves
// it.
func waitL1(t *testing.T, c *cachemgr.Cache[int], key string) {
	t.Helper()
	ctx := context.Background()
	m := c.Manager()
	deadline := time.Now().Add(time.Minute) // only stops a hung test
	var err error
	for {
		before := m.Stats().L1Hits
		_, err = c.Get(ctx, key)
		if err == nil && m.Stats().L1Hits > before {
			return
		}
		if errors.Is(err, cachemgr.ErrMiss) {
			if err := c.Set(ctx, key, -1); err != nil {
				t.Fatalf("Set(%q) error = %v", key, err)
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %q in the L1 tier: last Get error %v, %+v", key, err, m.Stats())
		}
	}
}

// waitDropped reads key until a read is not answered by c's L1 tier.
func waitDropped(t *testing.T, c *cachemgr.Cache[int], key, why string) {
	t.Helper()
	m := c.Manager()
	deadline := time.Now().Add(time.Minute) // only stops a hung test
	for {
		before := m.Stats().L1Hits
		c.Get(context.Background(), key)
		if m.Stats().L1Hits == before {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%q still in the L1 tier a minute after %s", key, why)
		}
		// Leave the listeners a core: a goroutine that spins on L1 hits
		// would otherwise hold it until the scheduler preempts it (10 ms).
		runtime.Gosched()
	}
}

func ExampleWithCacheL1() {
	m, cleanup := exampleManager()
	defer cleanup()
	ctx := context.Background()
	// Pages in this process's memory: at most 1,000 of them and 64 MiB,
	// each caller getting a copy of its own.
	pages, err := cachemgr.NewCache[[]byte](m, "pages", cachemgr.WithCacheL1(1000, 64<<20), cachemgr.WithL1Isolation(cachemgr.L1Copy))
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := pages.Set(ctx, "home", []byte("<h1>hi</h1>")); err != nil {
		fmt.Println(err)
		return
	}
	p, _ := pages.Get(ctx, "home")
	p[1] = 'H' // a private copy: the next Get is unchanged
	p, _ = pages.Get(ctx, "home")
	fmt.Println(string(p))
	// Output: <h1>hi</h1>
}
