package cachemgr_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/cachemgr/cachemgr"
)

// A cache with its own loaders: Load reads through the loader by key,
// LoadMany and Warm through the batch loader, one call per chunk of keys.
func ExampleWithBatchLoader() {
	m, cleanup := exampleManager()
	defer cleanup()
	ctx := context.Background()

	db := map[string]string{"1": "apple", "2": "pear", "3": "plum"}
	var queries int
	byID := func(ctx context.Context, id string) (string, error) {
		queries++ // SELECT name FROM product WHERE id = $1
		if v, ok := db[id]; ok {
			return v, nil
		}
		return "", cachemgr.ErrNotFound
	}
	byIDs := func(ctx context.Context, ids []string) (map[string]string, error) {
		queries++ // SELECT id, name FROM product WHERE id = ANY($1)
		out := map[string]string{}
		for _, id := range ids {
			if v, ok := db[id]; ok {
				out[id] = v
			}
		}
		return out, nil
	}
	products, err := cachemgr.NewCache[string](m, "product",
		cachemgr.WithLoader(byID), cachemgr.WithBatchLoader(byIDs))
	if err != nil {
		panic(err)
	}

	v, err := products.Load(ctx, "1")
	fmt.Println(v, err, queries)

	vals, errs, _ := products.LoadMany(ctx, []string{"1", "2", "9"})
	fmt.Println(vals, errors.Is(errs[2], cachemgr.ErrNotFound), queries)

	rep, _ := products.Warm(ctx, []string{"1", "2", "3"}, nil, cachemgr.WarmWrite(cachemgr.TTL(time.Hour)))
	fmt.Printf("warm: loaded=%d skipped=%d, queries=%d\n", rep.Loaded, rep.Skipped, queries)

	plain, _ := cachemgr.NewCache[string](m, "plain")
	_, err = plain.Load(ctx, "1")
	fmt.Println(errors.Is(err, cachemgr.ErrNoLoader))
	// Output:
	// apple <nil> 1
	// [apple pear ] true 2
	// warm: loaded=1 skipped=2, queries=3
	// true
}

// A loader that can only give a partial answer returns it to its caller
// but keeps it out of the cache, so the next read asks the source again.
func ExampleEntry_DoNotCache() {
	m, cleanup := exampleManager()
	defer cleanup()
	ctx := context.Background()
	prices, _ := cachemgr.NewCache[string](m, "price")

	degraded := true
	load := func(ctx context.Context) (string, error) {
		if degraded {
			cachemgr.EntryFrom(ctx).DoNotCache() // the pricing service timed out
			return "list price", nil
		}
		return "customer price", nil
	}
	v, _ := prices.Fetch(ctx, "sku-1", load)
	fmt.Println(v)
	_, err := prices.Get(ctx, "sku-1")
	fmt.Println(errors.Is(err, cachemgr.ErrMiss))

	degraded = false
	v, _ = prices.Fetch(ctx, "sku-1", load)
	fmt.Println(v)

	// In a batch, name the keys to keep out.
	vals, _, _ := prices.FetchMany(ctx, []string{"a", "b"}, func(ctx context.Context, ids []string) (map[string]string, error) {
		cachemgr.EntryFrom(ctx).DoNotCache("b")
		return map[string]string{"a": "full", "b": "partial"}, nil
	})
	_, errB := prices.Get(ctx, "b")
	fmt.Println(vals, errors.Is(errB, cachemgr.ErrMiss))
	// Output:
	// list price
	// true
	// customer price
	// [full partial] true
}

// A write handler drops the row's own key and invalidates the lists that
// carry it, in one round trip.
func ExampleCache_DeleteAndInvalidate() {
	m, cleanup := exampleManager()
	defer cleanup()
	ctx := context.Background()
	products, _ := cachemgr.NewCache[string](m, "product")
	lists, _ := cachemgr.NewCache[[]string](m, "list")

	_ = products.Set(ctx, "7", "pear")
	_ = lists.Set(ctx, "fruit", []string{"7", "8"}, cachemgr.Tags("category:fruit"))

	// UPDATE product SET name = 'nashi' WHERE id = 7, then:
	if err := products.DeleteAndInvalidate(ctx, []string{"7"}, []string{"category:fruit"}); err != nil {
		fmt.Println(err)
	}
	_, err1 := products.Get(ctx, "7")
	_, err2 := lists.Get(ctx, "fruit")
	fmt.Println(errors.Is(err1, cachemgr.ErrMiss), errors.Is(err2, cachemgr.ErrMiss))

	_ = products.Set(ctx, "8", "plum")
	_ = products.Set(ctx, "9", "fig")
	_ = products.DeleteMany(ctx, "8", "9")
	vals, errs, _ := products.GetMany(ctx, []string{"8", "9"})
	fmt.Println(slices.Equal(vals, []string{"", ""}), errors.Is(errs[0], cachemgr.ErrMiss), errors.Is(errs[1], cachemgr.ErrMiss))
	// Output:
	// true true
	// true true true
}

// Each cache has its own counters; the Manager's are their sum. Warm's
// reads are counted apart, so a hit ratio right after warming describes
// the traffic that followed.
func ExampleCache_Stats() {
	m, cleanup := exampleManager()
	defer cleanup()
	ctx := context.Background()
	load := func(ctx context.Context, ids []string) (map[string]string, error) {
		out := map[string]string{}
		for _, id := range ids {
			out[id] = "product " + id
		}
		return out, nil
	}
	products, _ := cachemgr.NewCache[string](m, "product", cachemgr.WithBatchLoader(load))
	users, _ := cachemgr.NewCache[string](m, "user")

	keys := make([]string, 100)
	for i := range keys {
		keys[i] = fmt.Sprint(i)
	}
	_, _ = products.Warm(ctx, keys, nil)
	for _, k := range keys[:10] {
		_, _ = products.Get(ctx, k)
	}
	_, _ = users.Get(ctx, "nobody")

	p, u, all := products.Stats(), users.Stats(), m.Stats()
	fmt.Printf("product: warmed=%d warm loads=%d hits=%d misses=%d hit ratio=%.2f\n", p.Warmed, p.WarmLoads, p.Hits, p.Misses, p.HitRatio())
	fmt.Printf("user: hits=%d misses=%d\n", u.Hits, u.Misses)
	fmt.Printf("manager: hits=%d misses=%d\n", all.Hits, all.Misses)
	// Output:
	// product: warmed=100 warm loads=1 hits=10 misses=0 hit ratio=1.00
	// user: hits=0 misses=1
	// manager: hits=10 misses=1
}

// Write-behind: Fetch returns as soon as the loader has, and the value
// reaches Redis one round trip later. Reads in this process wait for that
// write, so they find the value at once.
func ExampleWithWriteBehind() {
	m, cleanup := exampleManager()
	defer cleanup()
	ctx := context.Background()

	prices, err := cachemgr.NewCache[int](m, "price", cachemgr.WithWriteBehind(true))
	if err != nil {
		panic(err)
	}
	v, err := prices.Fetch(ctx, "sku-1", func(ctx context.Context) (int, error) {
		return 1299, nil // SELECT price FROM product WHERE sku = $1
	})
	fmt.Println(v, err)

	v, err = prices.Get(ctx, "sku-1") // waits for the write-back, if still under way
	fmt.Println(v, err)
	// Output:
	// 1299 <nil>
	// 1299 <nil>
}
