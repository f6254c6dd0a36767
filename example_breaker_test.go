package cachemgr_test

import (
	"context"
	"fmt"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/cachemgr/cachemgr"
	"github.com/redis/go-redis/v9"
)

// printBreaker is an Observer (the embedded one supplies Hit, Miss, Load
// and Error) that prints the circuit breaker's transitions; a service would
// count them or raise an alert.
type printBreaker struct{ countingObserver }

func (*printBreaker) Breaker(_ context.Context, open bool, cause error) {
	if open {
		fmt.Println("breaker open: Redis calls are skipped")
		return
	}
	fmt.Println("breaker closed: Redis answers again")
}

func ExampleBreakerObserver() {
	mr, err := miniredis.Run()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer mr.Close()
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr(), ContextTimeoutEnabled: true, MaxRetries: -1})
	defer rdb.Close()
	m, err := cachemgr.New(rdb, cachemgr.WithObserver(&printBreaker{}),
		cachemgr.WithBreaker(2, 10*time.Millisecond), cachemgr.WithOpTimeout(5*time.Second))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer m.Close()
	c, _ := cachemgr.NewCache[string](m, "greetings")
	ctx := context.Background()

	mr.Close() // Redis goes away: connections are refused
	for range 5 {
		c.Get(ctx, "hello")
	}
	if err := mr.Restart(); err != nil {
		fmt.Println(err)
		return
	}
	// After the cooldown a probe goes through and closes the breaker.
	// (Bounded by count, not time: a breaker that never closed prints no
	// second line and the Example fails instead of hanging.)
	for i := 0; i < 1000 && m.Stats().Breaker != "closed"; i++ {
		time.Sleep(10 * time.Millisecond)
		c.Get(ctx, "hello")
	}
	// Output:
	// breaker open: Redis calls are skipped
	// breaker closed: Redis answers again
}
