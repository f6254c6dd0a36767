package demoredis

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestConnectEmbedded(t *testing.T) {
	ctx := context.Background()
	rdb, where, closeAll, err := Connect(ctx, nil, 7)
	if err != nil {
		t.Fatalf("Connect(nil) error = %v", err)
	}
	defer closeAll()
	if !rdb.Options().ContextTimeoutEnabled || rdb.Options().PoolSize != 7 {
		t.Errorf("Connect(nil) options = %+v, want ContextTimeoutEnabled and pool 7", rdb.Options())
	}
	if err := rdb.Set(ctx, "k", "v", 150*time.Millisecond).Err(); err != nil {
		t.Fatalf("SET on %s error = %v", where, err)
	}
	deadline := time.Now().Add(3 * time.Second)
	for rdb.Exists(ctx, "k").Val() == 1 {
		if time.Now().After(deadline) {
			t.Fatalf("key with a 150 ms TTL still there after 3 s: real time is not passed on")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestConnectUnreachable(t *testing.T) {
	if _, _, _, err := Connect(context.Background(), &redis.Options{Addr: "127.0.0.1:1", DialTimeout: 100 * time.Millisecond}, 0); err == nil {
		t.Errorf("Connect(closed port) error = nil, want a ping error")
	}
}
