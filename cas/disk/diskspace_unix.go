//go:build linux || darwin || freebsd || openbsd || netbsd || dragonfly

package disk

import (
	"fmt"
	"syscall"
)

// statDisk reads the size and free space of the file system holding dir.
func statDisk(dir string) (diskSpace, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return diskSpace{}, fmt.Errorf("reading free space of %s: %w", dir, err)
	}
	bsize := int64(st.Bsize)
	return diskSpace{total: int64(st.Blocks) * bsize, available: int64(st.Bavail) * bsize}, nil
}
