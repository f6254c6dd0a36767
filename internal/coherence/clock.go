package coherence

import "time"

// Clock reads a time in nanoseconds that every process on the machine
// shares: CLOCK_MONOTONIC on Linux, which no wall-clock step moves. It is
// read once, beside the process's own monotonic clock, and later times add
// the monotonic time since, so a reading costs what time.Now costs.
type Clock struct {
	base  int64
	start time.Time
	err   time.Duration
}

// NewClock returns a Clock calibrated now. Its readings are within
// [Clock.Error] of the system clock.
func NewClock() *Clock {
	var c *Clock
	// Bracket time.Now between two readings of the system clock and keep
	// the tightest of a few tries: a preemption inflates one, rarely all.
	for range 5 {
		before := systemNow()
		start := time.Now()
		after := systemNow()
		if before > after { // the wall-clock fallback stepped back
			before = after
		}
		err := time.Duration(after-before+1) / 2
		if c == nil || err < c.err {
			c = &Clock{base: before + int64(err), start: start, err: err}
		}
	}
	return c
}

// Now returns the current time in nanoseconds of the shared clock.
func (c *Clock) Now() int64 { return c.base + int64(time.Since(c.start)) }

// Error returns how far the Clock's readings may be from the system clock.
func (c *Clock) Error() time.Duration { return c.err }
