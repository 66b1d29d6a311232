//go:build linux

package disk

import (
	"os"
	"syscall"
)

// preallocate gives f size bytes of real disk blocks without writing them.
func preallocate(f *os.File, size int64) error {
	err := syscall.Fallocate(int(f.Fd()), 0, 0, size)
	if err == syscall.EOPNOTSUPP || err == syscall.ENOSYS {
		return writeZeros(f, size)
	}
	return err
}
