// Package demoredis connects the project's commands (cmd/cachedemo,
// cmd/codecbench) to Redis: a real server named by the user, or an embedded
// miniredis so that they run anywhere.
package demoredis

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// Connect returns a go-redis client for the server at opts, or for a fresh
// embedded miniredis when opts is nil, a description of it, and a function
// that closes them. poolSize, when positive, sets the connection pool.
//
// The client has ContextTimeoutEnabled: go-redis then bounds socket I/O by
// the context deadline, so a cachemgr.Manager runs each call on the
// caller's goroutine, as a production setup should. A real server must
// answer a PING within 3 s: one that does not would not fail the commands
// (Fetch falls back to the loader), so it is said up front instead. The
// embedded server is told the real time every 100 ms, since miniredis
// expires keys only when told.
func Connect(ctx context.Context, opts *redis.Options, poolSize int) (*redis.Client, string, func(), error) {
	if opts != nil {
		return connectServer(ctx, clientOptions(opts, poolSize))
	}
	mr := miniredis.NewMiniRedis()
	if err := mr.Start(); err != nil {
		return nil, "", nil, fmt.Errorf("start miniredis: %w", err)
	}
	rdb := redis.NewClient(clientOptions(&redis.Options{Addr: mr.Addr()}, poolSize))
	stopClock := runClock(mr)
	closeAll := func() {
		stopClock()
		rdb.Close()
		mr.Close()
	}
	return rdb, "embedded miniredis at " + mr.Addr(), closeAll, nil
}

// clientOptions completes opts with ContextTimeoutEnabled and, when
// positive and opts sets none, poolSize.
func clientOptions(opts *redis.Options, poolSize int) *redis.Options {
	opts.ContextTimeoutEnabled = true
	if poolSize > 0 && opts.PoolSize == 0 {
		opts.PoolSize = poolSize
	}
	return opts
}

// connectServer returns a client for the real server at opts once it has
// answered a PING within 3 s.
func connectServer(ctx context.Context, opts *redis.Options) (*redis.Client, string, func(), error) {
	rdb := redis.NewClient(opts)
	pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if err := rdb.Ping(pctx).Err(); err != nil {
		rdb.Close()
		return nil, "", nil, fmt.Errorf("ping redis at %s: %w", opts.Addr, err)
	}
	return rdb, "redis at " + opts.Addr, func() { rdb.Close() }, nil
}

// runClock tells mr the real time every 100 ms, since miniredis expires
// keys only when told, until the function it returns is called.
func runClock(mr *miniredis.Miniredis) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		last := time.Now()
		for {
			select {
			case <-done:
				return
			case now := <-t.C:
				mr.FastForward(now.Sub(last))
				last = now
			}
		}
	})
	return func() {
		close(done)
		wg.Wait()
	}
}
