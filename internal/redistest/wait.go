package redistest

import (
	"testing"
	"time"
)

// WaitFor polls cond every millisecond until it holds, and fails t if it
// has not within a minute. The minute only stops a test that would hang: a
// loaded machine may take seconds for what a quiet one does in a
// millisecond, so no test should rely on it for a bound.
func WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}
