//go:build !(linux || darwin || freebsd || openbsd || netbsd || dragonfly)

package loadtest

import "time"

// processCPU is not measured on this platform.
func processCPU() time.Duration { return 0 }
