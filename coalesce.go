package cachemgr

// WithCoalescing sets whether concurrent single commands (the GET or MGET
// of Get and Fetch, lease and claim scripts, event publishes) share round
// trips. A command sent while nothing is in flight goes out at once, on the
// caller's goroutine, as it would without coalescing. Otherwise it goes out
// in a pipeline: at most two round trips are in flight, and the commands
// that arrive meanwhile queue and go out together in the next. There is no
// timer, so a lone caller waits no longer than without. Each caller still
// leaves at its own deadline or cancellation, and gets only its own
// command's reply or error.
//
// On a Cluster or Ring client, a pipeline goes out as go-redis sends one:
// split by node (or shard), one round trip per node, so commands for
// different nodes still share a round trip each. A Cluster or Ring client
// coalesces only with ContextTimeoutEnabled (otherwise its calls run on
// goroutines of their own; see WithOpTimeout). Writes that carry an
// encoded value go out one by one. Pipelined commands run under the Manager's
// context, so hooks see a pipeline without the caller's context values.
// Turn coalescing off when the application pipelines on its own.
// Default: true. The coalescer itself is in internal/transport.
func WithCoalescing(on bool) Option {
	return func(c *config) error {
		c.coalesce = on
		return nil
	}
}
