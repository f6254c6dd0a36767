package cachemgr_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/cachemgr/cachemgr"
	"github.com/redis/go-redis/v9"
)

// exampleManager returns a Manager on an embedded miniredis, so the
// examples run anywhere. The cleanup closes the Manager, client and server.
// Its op timeout is generous so that the examples print the same on a
// loaded machine; a service keeps the default (100ms) or sets what its
// latency budget allows.
func exampleManager() (*cachemgr.Manager, func()) {
	mr := miniredis.NewMiniRedis()
	if err := mr.Start(); err != nil {
		panic(err)
	}
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr(), ContextTimeoutEnabled: true})
	m, err := cachemgr.New(rdb, cachemgr.WithPrefix("shop"), cachemgr.WithOpTimeout(5*time.Second))
	if err != nil {
		panic(err)
	}
	return m, func() { m.Close(); rdb.Close(); mr.Close() }
}

// User is the entity the examples cache.
type User struct {
	ID   int
	Name string
}

func ExampleNew() {
	mr, err := miniredis.Run() // embedded Redis for the example
	if err != nil {
		fmt.Println(err)
		return
	}
	defer mr.Close()
	// ContextTimeoutEnabled lets the op timeout bound socket reads on the
	// caller's goroutine.
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr(), ContextTimeoutEnabled: true})
	defer rdb.Close()

	m, err := cachemgr.New(rdb,
		cachemgr.WithPrefix("shop"),
		cachemgr.WithOpTimeout(50*time.Millisecond),
		cachemgr.WithBreaker(5, time.Second),
	)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer m.Close()
	fmt.Println(m.Prefix(), m.Stats().Breaker)
	// Output: shop closed
}

func ExampleCache_Get() {
	m, cleanup := exampleManager()
	defer cleanup()
	ctx := context.Background()
	users, _ := cachemgr.NewCache[User](m, "user", cachemgr.WithTTL(10*time.Minute))

	if _, err := users.Get(ctx, "42"); errors.Is(err, cachemgr.ErrMiss) {
		fmt.Println("miss")
	}
	_ = users.Set(ctx, "42", User{ID: 42, Name: "Ada"})
	u, err := users.Get(ctx, "42")
	fmt.Println(u.Name, err)
	// Output:
	// miss
	// Ada <nil>
}

func ExampleCache_Fetch() {
	m, cleanup := exampleManager()
	defer cleanup()
	ctx := context.Background()
	users, _ := cachemgr.NewCache[User](m, "user")

	loads := 0
	load := func(ctx context.Context) (User, error) {
		loads++ // the database call; runs once per key, even under a stampede
		return User{ID: 42, Name: "Ada"}, nil
	}
	u, _ := users.Fetch(ctx, "42", load)
	u, _ = users.Fetch(ctx, "42", load)
	fmt.Println(u.ID, "loads="+fmt.Sprint(loads))
	// Output: 42 loads=1
}

func ExampleCache_Fetch_notFound() {
	m, cleanup := exampleManager()
	defer cleanup()
	ctx := context.Background()
	users, _ := cachemgr.NewCache[User](m, "user", cachemgr.WithNegativeTTL(30*time.Second))

	loads := 0
	load := func(ctx context.Context) (User, error) {
		loads++
		return User{}, fmt.Errorf("user 7: %w", cachemgr.ErrNotFound)
	}
	_, err := users.Fetch(ctx, "7", load)
	_, err = users.Fetch(ctx, "7", load) // answered by the negative entry
	fmt.Println(errors.Is(err, cachemgr.ErrNotFound), "loads="+fmt.Sprint(loads))
	// Output: true loads=1
}

func ExampleEntryFrom() {
	m, cleanup := exampleManager()
	defer cleanup()
	users, _ := cachemgr.NewCache[User](m, "user")

	u, err := users.Fetch(context.Background(), "42", func(ctx context.Context) (User, error) {
		// The loader learns how long the value is good only by loading it.
		cachemgr.EntryFrom(ctx).SetTTL(5 * time.Second)
		return User{ID: 42, Name: "Ada"}, nil
	})
	fmt.Println(u.Name, err)
	// Output: Ada <nil>
}

func ExampleCache_Delete() {
	m, cleanup := exampleManager()
	defer cleanup()
	ctx := context.Background()
	users, _ := cachemgr.NewCache[User](m, "user")

	_ = users.Set(ctx, "42", User{ID: 42, Name: "Ada"})
	// After a write to the database: a load already running when Delete
	// returns will not write its outdated result back.
	_ = users.Delete(ctx, "42")
	_, err := users.Get(ctx, "42")
	fmt.Println(errors.Is(err, cachemgr.ErrMiss))
	// Output: true
}

func ExampleManager_Stats() {
	m, cleanup := exampleManager()
	defer cleanup()
	ctx := context.Background()
	users, _ := cachemgr.NewCache[User](m, "user")

	load := func(context.Context) (User, error) { return User{ID: 1}, nil }
	for i := 0; i < 4; i++ {
		_, _ = users.Fetch(ctx, "1", load)
	}
	st := m.Stats()
	fmt.Printf("hits=%d misses=%d loads=%d ratio=%.2f\n", st.Hits, st.Misses, st.Loads, st.HitRatio())
	// Output: hits=3 misses=1 loads=1 ratio=0.75
}

func ExampleCache_Bump() {
	m, cleanup := exampleManager()
	defer cleanup()
	ctx := context.Background()
	prices, _ := cachemgr.NewCache[int](m, "price", cachemgr.WithVersioned(true))

	_ = prices.Set(ctx, "apple", 3)
	_ = prices.Set(ctx, "pear", 4)
	// A new price list was imported: every cached price is outdated at once.
	_ = prices.Bump(ctx)
	_, err := prices.Get(ctx, "apple")
	fmt.Println(errors.Is(err, cachemgr.ErrMiss))
	// Output: true
}

func ExampleManager_InvalidateTags() {
	m, cleanup := exampleManager()
	defer cleanup()
	ctx := context.Background()
	products, _ := cachemgr.NewCache[string](m, "product")

	_ = products.Set(ctx, "1", "apple", cachemgr.Tags("category:fruit"))
	_ = products.Set(ctx, "2", "pear", cachemgr.Tags("category:fruit"))
	_ = products.Set(ctx, "3", "leek", cachemgr.Tags("category:vegetable"))
	// Category "fruit" changed: drop every product in it, in O(1).
	_ = m.InvalidateTags(ctx, "category:fruit")
	for _, id := range []string{"1", "2", "3"} {
		v, err := products.Get(ctx, id)
		fmt.Println(id, v, errors.Is(err, cachemgr.ErrMiss))
	}
	// Output:
	// 1  true
	// 2  true
	// 3 leek false
}

func ExampleEntry_AddTags() {
	m, cleanup := exampleManager()
	defer cleanup()
	ctx := context.Background()
	products, _ := cachemgr.NewCache[string](m, "product")

	load := func(ctx context.Context) (string, error) {
		// The category is known only once the product is loaded.
		cachemgr.EntryFrom(ctx).AddTags("category:fruit")
		return "apple", nil
	}
	_, _ = products.Fetch(ctx, "1", load)
	_ = m.InvalidateTags(ctx, "category:fruit")
	_, err := products.Get(ctx, "1")
	fmt.Println(errors.Is(err, cachemgr.ErrMiss))
	// Output: true
}

func ExampleCache_InvalidatePrefix() {
	m, cleanup := exampleManager()
	defer cleanup()
	ctx := context.Background()
	pages, _ := cachemgr.NewCache[string](m, "page")

	_ = pages.Set(ctx, "/docs/a", "A")
	_ = pages.Set(ctx, "/docs/b", "B")
	_ = pages.Set(ctx, "/blog/c", "C")
	n, _ := pages.InvalidatePrefix(ctx, "/docs/")
	_, err := pages.Get(ctx, "/blog/c")
	fmt.Println(n, err)
	// Output: 2 <nil>
}
