//go:build linux || darwin || freebsd || openbsd || netbsd || dragonfly

package loadtest

import (
	"syscall"
	"time"
)

// processCPU is the CPU time (user + system) the process has used: a figure
// that other tenants of a shared machine disturb far less than wall time.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
