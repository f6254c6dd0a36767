//go:build !linux

package main

import (
	"syscall"
	"time"
)

func sysProcAttr() *syscall.SysProcAttr { return nil }

// processCPU is not measured here: the CPU column reads 0.
func processCPU() time.Duration { return 0 }
