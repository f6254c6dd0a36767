package main

import (
	"context"
	"errors"
)

// loadFunc is the data source behind every cache: it returns the Item for
// key. The workloads count its calls.
type loadFunc func(ctx context.Context, key string) (Item, error)

// lib is one library, or one configuration of one, as the workloads see it.
type lib struct {
	name string
	// module is the module path whose version the report prints.
	module string
	// setup says how the library is configured, in one line.
	setup string
	// na says why a workload the library cannot run is missing, by
	// workload name.
	na map[string]string
	// open returns one instance with its own connections, as one process
	// would hold it. Every cache miss goes to load.
	open func(s *server, load loadFunc) (*client, error)
}

// client is one instance of a library. A nil func is a workload the
// library has no API for.
type client struct {
	// set caches v under key in every tier the library has.
	set func(ctx context.Context, key string, v Item) error
	// get reads key from Redis (the local tier, if any, is bypassed).
	get func(ctx context.Context, key string) (Item, error)
	// getLocal reads key from the library's in-process tier.
	getLocal func(ctx context.Context, key string) (Item, error)
	// fetch returns key's value, loading and storing it on a miss, through
	// the library's own get-or-load API.
	fetch func(ctx context.Context, key string) (Item, error)
	// batch reads keys from Redis in one call and returns how many it
	// found; batchLocal reads them from the in-process tier.
	batch      func(ctx context.Context, keys []string) (int, error)
	batchLocal func(ctx context.Context, keys []string) (int, error)
	// batchByGet marks a library with no batch API, for which batch is a
	// loop of get, shown for reference only.
	batchByGet bool
	close      func()
}

// errUnexpectedLoad is what a fetch function passed to a get-or-load API
// returns when a benchmark expected a hit.
var errUnexpectedLoad = errors.New("loader called on what should be a hit")

// libs returns every library in the table, cachemgr first.
func libs() []lib {
	return []lib{
		cachemgrLib(),
		rawLib(),
		goRedisCacheLib(false),
		goRedisCacheLib(true),
		goRedisCSCLib(),
		rueidisLib(false),
		rueidisLib(true),
		ekoLib(),
		sturdycLib(),
	}
}
