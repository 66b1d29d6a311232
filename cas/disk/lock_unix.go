//go:build linux || darwin || freebsd || openbsd || netbsd || dragonfly

package disk

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// lockDir takes an exclusive flock on DIR/LOCK so two processes (or two
// Stores) never share a directory: each would remove the files of the
// other's uploads at Open and keep wrong usage counters in memory.
func lockDir(dir string) (*os.File, error) {
	path := filepath.Join(dir, lockName)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening disk store lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("disk store directory %s is in use by another store (lock %s is held); give each process its own directory", dir, path)
		}
		return nil, fmt.Errorf("locking disk store %s: %w", path, err)
	}
	return f, nil
}
