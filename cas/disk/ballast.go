package disk

import (
	"errors"
	"io/fs"
	"os"
	"sync"
)

// ballast is a file of reserved disk blocks. When the disk fills up, Pebble
// cannot even write the log records of the deletes that would free room,
// and a failed log write stops Pebble for good. Removing the ballast gives
// it room to go on while eviction frees space; the ballast is made again
// once the file system has room for it.
type ballast struct {
	path string
	size int64

	mu       sync.Mutex
	present  bool
	released bool // removed for a full disk and not made again yet
}

func newBallast(path string, size int64) *ballast {
	b := &ballast{path: path, size: size}
	if info, err := os.Stat(path); err == nil && info.Size() == size {
		b.present = true
	} else if err == nil {
		os.Remove(path) // a ballast of another size: made again at the right size
	}
	return b
}

// bytesHeld is how much disk the ballast holds now.
func (b *ballast) bytesHeld() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.present {
		return b.size
	}
	return 0
}

// release removes the ballast and returns the bytes it freed.
func (b *ballast) release() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.present {
		return 0
	}
	if err := os.Remove(b.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return 0
	}
	b.present = false
	b.released = true
	return b.size
}

// wasReleased reports whether a full disk made the ballast go and it has
// not been made again.
func (b *ballast) wasReleased() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.released
}

// restore makes the ballast again if it is missing and the file system has
// room for it beyond keepFree. It reports whether it made one.
func (b *ballast) restore(available, keepFree int64) (bool, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.present || b.size == 0 || available < b.size+keepFree {
		return false, nil
	}
	f, err := os.OpenFile(b.path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return false, err
	}
	err = preallocate(f, b.size)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(b.path)
		return false, err
	}
	b.present = true
	b.released = false
	return true, nil
}
