package redistest

import (
	"os"
	"testing"
)

// Each runs fn as a subtest on every available backend: "redis" (a spawned
// redis-server), "miniredis", and "url" when the environment variable
// REDIS_URL is set. Each subtest gets its own Server. Without a
// redis-server binary the "redis" subtest is skipped, or fails when CI is
// true. The subtests run one after another unless fn calls t.Parallel.
func Each(t *testing.T, fn func(t *testing.T, s *Server)) {
	t.Helper()
	t.Run(KindRedis, func(t *testing.T) { fn(t, Start(t)) })
	t.Run(KindMiniredis, func(t *testing.T) { fn(t, StartMini(t)) })
	if url := os.Getenv("REDIS_URL"); url != "" {
		t.Run(KindURL, func(t *testing.T) { fn(t, FromURL(t, url)) })
	}
}
