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

// A Manager that reads hits from replicas. In production the replica
// client is typically a Sentinel client with ReplicaOnly set, which spreads
// its connections over the replicas:
//
//	replicas := redis.NewFailoverClient(&redis.FailoverOptions{
//		MasterName:    "mymaster",
//		SentinelAddrs: []string{"sentinel-1:26379", "sentinel-2:26379"},
//		ReplicaOnly:   true,
//	})
//
// Here an embedded Redis stands in for the master, and a second client of
// it for the replicas. It has no replica to acknowledge writes, which shows
// what a lagging replica does: the write returns ErrReplicaLag, and this
// process does not serve the key until the replicas have applied it.
func ExampleWithReplicaReads() {
	mr, err := miniredis.Run()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer mr.Close()
	master := redis.NewClient(&redis.Options{Addr: mr.Addr(), ContextTimeoutEnabled: true})
	defer master.Close()
	replicas := redis.NewClient(&redis.Options{Addr: mr.Addr(), ContextTimeoutEnabled: true})
	defer replicas.Close()

	m, err := cachemgr.New(master,
		cachemgr.WithPrefix("shop"),
		cachemgr.WithOpTimeout(5*time.Second),
		// Two replicas must apply every write within 100ms.
		cachemgr.WithReplicaReads(replicas, 2, 100*time.Millisecond),
		cachemgr.WithWriteTimeout(time.Second),
	)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer m.Close()
	users, err := cachemgr.NewCache[User](m, "users")
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx := context.Background()

	err = users.Set(ctx, "42", User{ID: 42, Name: "Ada"})
	fmt.Println("replicas behind:", errors.Is(err, cachemgr.ErrReplicaLag), errors.Is(err, cachemgr.ErrUnavailable))
	_, err = users.Get(ctx, "42")
	fmt.Println("served meanwhile:", !errors.Is(err, cachemgr.ErrMiss))
	// Output:
	// replicas behind: true true
	// served meanwhile: false
}
