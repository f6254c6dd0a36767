package coherence

import (
	"syscall"
	"time"
	"unsafe"
)

// clockMonotonic is CLOCK_MONOTONIC, the clock Go's own monotonic readings
// come from on Linux.
const clockMonotonic = 1

// systemNow returns CLOCK_MONOTONIC, system-wide on Linux, or the wall
// clock if the call fails.
func systemNow() int64 {
	var ts syscall.Timespec
	_, _, errno := syscall.Syscall(syscall.SYS_CLOCK_GETTIME, clockMonotonic, uintptr(unsafe.Pointer(&ts)), 0)
	if errno != 0 {
		return time.Now().UnixNano()
	}
	return ts.Nano()
}
