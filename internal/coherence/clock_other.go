//go:build !linux

package coherence

import "time"

// systemNow returns the wall clock: outside Linux there is no monotonic
// clock shared by processes that the standard library can read. A step of
// the wall clock during a run would skew the history.
func systemNow() int64 { return time.Now().UnixNano() }
