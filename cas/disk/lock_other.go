//go:build !(linux || darwin || freebsd || openbsd || netbsd || dragonfly)

package disk

import (
	"fmt"
	"os"
	"path/filepath"
)

// lockDir only creates DIR/LOCK here: this platform has no flock, so keeping
// one process per directory is the operator's job.
func lockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, lockName), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening disk store lock: %w", err)
	}
	return f, nil
}
