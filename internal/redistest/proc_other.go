//go:build !linux

package redistest

import "syscall"

// sysProcAttr returns nil: only Linux can tie a child's life to ours.
func sysProcAttr() *syscall.SysProcAttr { return nil }

// waitState returns at once: without /proc there is nothing to poll, and
// signal delivery to a local process is near-immediate.
func waitState(pid int, stopped bool) error { return nil }
