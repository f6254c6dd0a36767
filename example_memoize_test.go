package cachemgr_test

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/cachemgr/cachemgr"
)

// SearchQuery is the argument of a memoized search: field order and map order
// do not change its key.
type SearchQuery struct {
	Term    string
	Filters map[string]string
}

func ExampleMemoize() {
	m, cleanup := exampleManager()
	defer cleanup()
	ctx := context.Background()
	results, _ := cachemgr.NewCache[[]string](m, "search")

	calls := 0
	search := cachemgr.Memoize(results, func(ctx context.Context, s SearchQuery) ([]string, error) {
		calls++ // the expensive query
		return []string{strings.ToUpper(s.Term) + " boots"}, nil
	})
	r, _ := search(ctx, SearchQuery{Term: "red", Filters: map[string]string{"size": "42", "brand": "acme"}})
	r, _ = search(ctx, SearchQuery{Term: "red", Filters: map[string]string{"brand": "acme", "size": "42"}})
	_, err := search(ctx, SearchQuery{Term: "blue"})
	fmt.Println(r, err, "calls="+fmt.Sprint(calls))
	// Output: [RED boots] <nil> calls=2
}

func ExampleMemoizeKey() {
	m, cleanup := exampleManager()
	defer cleanup()
	ctx := context.Background()
	names, _ := cachemgr.NewCache[string](m, "display-name")

	calls := 0
	// User has a natural key: its ID. The rest of the struct must not
	// make two requests for one user miss each other.
	displayName := cachemgr.MemoizeKey(names,
		func(u User) string { return fmt.Sprint(u.ID) },
		func(ctx context.Context, u User) (string, error) {
			calls++
			return "@" + strings.ToLower(u.Name), nil
		})
	n, _ := displayName(ctx, User{ID: 42, Name: "Ada"})
	n, _ = displayName(ctx, User{ID: 42, Name: "Ada Lovelace"})
	fmt.Println(n, "calls="+fmt.Sprint(calls))
	// Output: @ada calls=1
}

func ExampleMemoKey() {
	m, cleanup := exampleManager()
	defer cleanup()
	ctx := context.Background()
	users, _ := cachemgr.NewCache[User](m, "user")

	calls := 0
	getUser := cachemgr.Memoize(users, func(ctx context.Context, id int) (User, error) {
		calls++
		return User{ID: id, Name: "Ada"}, nil
	})
	_, _ = getUser(ctx, 42)
	// User 42 changed: drop the memoized result for argument 42.
	key, _ := cachemgr.MemoKey(42)
	_ = users.Delete(ctx, key)
	_, _ = getUser(ctx, 42)

	_, err := cachemgr.MemoKey(func() {})
	fmt.Println(key, "calls="+fmt.Sprint(calls), errors.Is(err, cachemgr.ErrInvalidOption))
	// Output: i42 calls=2 true
}

func ExampleCache_Warm() {
	m, cleanup := exampleManager()
	defer cleanup()
	ctx := context.Background()
	products, _ := cachemgr.NewCache[string](m, "product")

	keys := make([]string, 100)
	for i := range keys {
		keys[i] = fmt.Sprint(i)
	}
	_ = products.Set(ctx, "7", "already cached")

	load := func(ctx context.Context, id string) (string, error) {
		if id == "13" {
			return "", errors.New("database timeout")
		}
		return "product " + id, nil
	}
	progress := func(done, total, failed int) {
		if done == total { // a real job might log every thousandth key too
			fmt.Printf("%d/%d, %d failed\n", done, total, failed)
		}
	}
	rep, err := products.Warm(ctx, keys, load, cachemgr.Concurrency(4), cachemgr.Progress(progress))
	fmt.Printf("loaded=%d skipped=%d failed=%d err=%v\n", rep.Loaded, rep.Skipped, rep.Failed, err)
	fmt.Println(rep.FirstErr)
	// Output:
	// 100/100, 1 failed
	// loaded=98 skipped=1 failed=1 err=<nil>
	// warm "13": database timeout
}

func ExampleNewMemoized() {
	m, cleanup := exampleManager()
	defer cleanup()
	ctx := context.Background()
	prices, _ := cachemgr.NewCache[int](m, "price")

	// account hides its data in an unexported field: no key derived from
	// it could tell two accounts apart, so NewMemoized refuses the type
	// at once instead of failing at every call.
	type account struct{ id int }
	_, err := cachemgr.NewMemoized(prices, func(ctx context.Context, a account) (int, error) {
		return 100, nil
	})
	fmt.Println(errors.Is(err, cachemgr.ErrInvalidOption))
	fmt.Println(err)

	// A type whose exported fields say it all is accepted.
	type item struct{ SKU string }
	price, err := cachemgr.NewMemoized(prices, func(ctx context.Context, it item) (int, error) {
		return len(it.SKU) * 100, nil
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	p, err := price(ctx, item{SKU: "A-7"})
	fmt.Println(p, err)
	// Output:
	// true
	// memoize: cachemgr: invalid option: argument type cachemgr_test.account cannot be keyed: unexported field id of cachemgr_test.account would be left out of the key; use MemoizeKey
	// 300 <nil>
}
