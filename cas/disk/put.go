package disk

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/sealcache/sealcache/cas"
)

// copyBufSize is the write chunk; larger than io.Copy's 32 KiB to cut
// syscalls on big blobs.
const copyBufSize = 256 << 10

var copyBufs = sync.Pool{New: func() any { b := make([]byte, copyBufSize); return &b }}

// Put streams r into a temp file and renames it into place. A read error, a
// cancelled ctx or an object larger than the store publishes nothing.
func (s *Store) Put(ctx context.Context, key cas.Key, sizeHint int64, r io.Reader) error {
	rel, err := relPath(key)
	if err != nil {
		return err
	}
	if sizeHint > s.maxSize {
		return fmt.Errorf("storing %s: %w: %d bytes is more than the whole disk store (%d bytes); raise --max_size", key, cas.ErrTooLarge, sizeHint, s.maxSize)
	}
	tmp, size, err := s.writeTemp(ctx, key, r)
	if err != nil {
		return err
	}
	if sizeHint != cas.SizeUnknown && size != sizeHint {
		os.Remove(tmp)
		return fmt.Errorf("storing %s: received %d bytes, announced %d", key, size, sizeHint)
	}
	if err := s.publish(key, rel, tmp, size); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// writeTemp copies r into a new file in tmp/ and returns its path and size.
// On error the file is gone.
func (s *Store) writeTemp(ctx context.Context, key cas.Key, r io.Reader) (path string, size int64, err error) {
	f, err := os.CreateTemp(s.tmpDir, "put-*")
	if err != nil {
		return "", 0, fmt.Errorf("storing %s: creating temp file: %w", key, err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	bufp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bufp)
	buf := *bufp
	for {
		if err := ctx.Err(); err != nil {
			return "", 0, fmt.Errorf("storing %s: %w", key, err)
		}
		n, rerr := r.Read(buf)
		if n > 0 {
			size += int64(n)
			if size > s.maxSize {
				return "", 0, fmt.Errorf("storing %s: %w: the upload is larger than the whole disk store (%d bytes); raise --max_size", key, cas.ErrTooLarge, s.maxSize)
			}
			if _, werr := f.Write(buf[:n]); werr != nil {
				return "", 0, writeErr(key, werr)
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return "", 0, fmt.Errorf("storing %s: reading the upload: %w", key, rerr)
		}
	}
	if err := f.Close(); err != nil {
		return "", 0, writeErr(key, err)
	}
	if err := ctx.Err(); err != nil {
		return "", 0, fmt.Errorf("storing %s: %w", key, err)
	}
	return f.Name(), size, nil
}

func writeErr(key cas.Key, err error) error {
	if isDiskFull(err) {
		return fmt.Errorf("storing %s: %w: the disk is full: %v; lower the store's size limit or free disk space", key, cas.ErrFull, err)
	}
	return fmt.Errorf("storing %s: writing temp file: %w", key, err)
}

// publish renames the finished temp file into place, indexes it as the most
// recently used object and evicts others to fit. Renaming under the mutex
// keeps the index and the directory in step with DeletePartition.
func (s *Store) publish(key cas.Key, rel, tmp string, size int64) error {
	dst := s.abs(rel)
	if err := os.MkdirAll(filepath.Dir(dst), 0o750); err != nil {
		return fmt.Errorf("storing %s: %w", key, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errClosed
	}
	err := os.Rename(tmp, dst)
	if errors.Is(err, fs.ErrNotExist) {
		// DeletePartition removed the directory after MkdirAll; recreate it.
		if err = os.MkdirAll(filepath.Dir(dst), 0o750); err == nil {
			err = os.Rename(tmp, dst)
		}
	}
	if err != nil {
		return fmt.Errorf("storing %s: moving temp file into place: %w", key, err)
	}
	s.ix.addFront(&entry{rel: rel, key: key, size: size, touched: time.Now()})
	s.evictLocked()
	return nil
}
