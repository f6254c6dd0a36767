package redistest

import (
	"bytes"
	"fmt"
	"os"
	"syscall"
	"time"
)

// sysProcAttr makes the kernel kill a spawned server if the test binary
// dies without running its cleanups (a panic or a -timeout), so no
// redis-server outlives the test run.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// waitState polls /proc until the process is stopped (want true) or
// running again (want false), so Pause and Resume return only once the
// signal has taken effect.
func waitState(pid int, stopped bool) error {
	path := fmt.Sprintf("/proc/%d/stat", pid)
	deadline := time.Now().Add(5 * time.Second)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for {
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		st := procState(b)
		if (st == 'T' || st == 't') == stopped {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("pid %d in state %q after 5s, want stopped=%t", pid, st, stopped)
		}
		<-tick.C
	}
}

// procState returns the state letter of a /proc/<pid>/stat line (0 when
// there is none). It follows the parenthesised command name, which may
// itself contain spaces or parentheses.
func procState(stat []byte) byte {
	if i := bytes.LastIndexByte(stat, ')'); i >= 0 && i+2 < len(stat) {
		return stat[i+2]
	}
	return 0
}
