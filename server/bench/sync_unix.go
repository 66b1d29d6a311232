//go:build unix

package bench

import "syscall"

// syncDisks writes this machine's dirty pages out (sync(2)) and waits.
func syncDisks() { syscall.Sync() }
