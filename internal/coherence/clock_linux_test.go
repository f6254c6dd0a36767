package coherence

import (
	"testing"
	"time"
)

// TestClockIsSystemMonotonic: a Clock reads CLOCK_MONOTONIC, the clock
// every process shares, to within its calibration error.
func TestClockIsSystemMonotonic(t *testing.T) {
	c := NewClock()
	if c.Error() > time.Millisecond {
		t.Logf("calibration error %v (a busy machine)", c.Error())
	}
	for range 1000 {
		before := systemNow()
		now := c.Now()
		after := systemNow()
		if lo, hi := before-int64(c.Error()), after+int64(c.Error()); now < lo || now > hi {
			t.Fatalf("Clock.Now() = %d, want within [%d, %d] (CLOCK_MONOTONIC read around it, ± error %v)", now, lo, hi, c.Error())
		}
	}
}
