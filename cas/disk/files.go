package disk

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// Names inside the store's directory.
const (
	lockName    = "LOCK"
	pebbleName  = "pebble"  // the Pebble database: metadata and small objects
	largeName   = "large"   // one file per large object
	trashName   = "trash"   // directories being removed (the previous layout)
	ballastName = "ballast" // space held in reserve for a full disk
	cleanName   = "CLEAN"   // present while the store is closed cleanly
)

// Directories of the previous layout (one file per object), removed at Open.
var oldLayoutNames = []string{"objects", "tmp"}

// diskSpace describes the file system holding the store.
type diskSpace struct {
	total     int64 // bytes of the file system
	available int64 // bytes an unprivileged writer can still use
}

// objectFilePath is where a large object's bytes live: large/, a fan-out
// directory from the id's first byte, the id. The layout is flat rather
// than by partition so that no directory an upload writes into can move
// while it writes; a partition's files are found by its 'f' records.
func (s *Store) objectFilePath(id fileID) string {
	name := id.String()
	return filepath.Join(s.largeDir, name[:2], name)
}

// isDiskFull reports whether err means the file system has no room.
func isDiskFull(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// emptyDir removes everything inside dir, creating dir if it is missing.
// It removes entries rather than the directory itself so it works on a full
// disk, where creating the directory again could fail.
func emptyDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return os.MkdirAll(dir, 0o750)
	}
	if err != nil {
		return err
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

// moveToTrash renames path into the trash directory, from where it is
// removed; a rename is instant whatever the size of the tree.
func (s *Store) moveToTrash(path string) error {
	dst, err := os.MkdirTemp(s.trashDir, "t-")
	if err != nil {
		return err
	}
	if err := os.Rename(path, filepath.Join(dst, "x")); err != nil {
		os.Remove(dst)
		return err
	}
	return nil
}

// removeOldLayout moves the previous version's directories to the trash.
// The cache starts empty: the old objects are not worth converting.
func (s *Store) removeOldLayout() error {
	var found []string
	for _, name := range oldLayoutNames {
		path := filepath.Join(s.dir, name)
		if _, err := os.Lstat(path); err == nil {
			if err := s.moveToTrash(path); err != nil {
				return fmt.Errorf("removing the previous disk store layout at %s: %w; remove it by hand", path, err)
			}
			found = append(found, name+"/")
		}
	}
	if len(found) > 0 {
		s.log.Warn("disk store: removing the previous version's one-file-per-object layout; the cache starts empty",
			"dir", s.dir, "removed", found)
	}
	return nil
}

// writeZeros appends size zero bytes to f.
func writeZeros(f *os.File, size int64) error {
	zeros := make([]byte, min(size, 1<<20))
	for size > 0 {
		n, err := f.Write(zeros[:min(int64(len(zeros)), size)])
		if err != nil {
			return err
		}
		size -= int64(n)
	}
	return nil
}
