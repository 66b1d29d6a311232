package verify

import (
	"context"
	"fmt"
	"hash"
	"io"
	"io/fs"

	"github.com/sealcache/sealcache/cas"
)

// scratchSize is the buffer used to hash and discard the bytes before a
// read offset.
const scratchSize = 64 << 10

// Get returns a reader over the CAS object from offset that fails with
// ErrCorrupt instead of delivering the last byte of a blob that does not
// match its digest. Reading from offset > 0 still reads and hashes the
// object from its start.
func (s *Store) Get(ctx context.Context, key cas.Key, offset int64) (io.ReadCloser, error) {
	if key.Kind != cas.KindCAS {
		return s.inner.Get(ctx, key, offset)
	}
	if key.Digest.Size == cas.SizeUnknown {
		return s.getUnknownSize(ctx, key, offset)
	}
	if offset < 0 || offset > key.Digest.Size {
		return nil, fmt.Errorf("reading %s: offset %d is outside the blob (0 to %d)", key, offset, key.Digest.Size)
	}
	h, err := cas.NewHasher(key.Digest.Function)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", key, err)
	}
	rc, err := s.inner.Get(ctx, key, 0)
	if err != nil {
		return nil, err
	}
	// A file of the wrong length is caught before the first byte when the
	// inner store hands out files (the disk store does).
	if st, ok := rc.(interface{ Stat() (fs.FileInfo, error) }); ok {
		if info, err := st.Stat(); err == nil && info.Mode().IsRegular() && info.Size() != key.Digest.Size {
			rc.Close()
			err := fmt.Errorf("%w: %s has %d bytes on storage", ErrCorrupt, key, info.Size())
			s.dropCorrupt(ctx, key, err)
			// The object is gone now, so to the caller this is also a miss:
			// Bazel will rebuild and upload it again.
			return nil, fmt.Errorf("%w (deleted; %w)", err, cas.ErrNotFound)
		}
	}
	return &downloadReader{ctx: ctx, store: s, key: key, stored: key, src: rc, h: h, skip: offset}, nil
}

// dropCorrupt deletes a corrupt object and logs it. The delete outlives the
// request's context: a corrupt object must not stay behind because the
// client hung up.
func (s *Store) dropCorrupt(ctx context.Context, key cas.Key, cause error) {
	err := s.inner.Delete(context.WithoutCancel(ctx), key)
	if err != nil {
		s.logger.Error("corrupt blob could not be deleted; it stays unservable", "key", key.String(), "problem", cause.Error(), "delete_error", err.Error())
		return
	}
	s.logger.Warn("deleted corrupt blob", "key", key.String(), "problem", cause.Error())
}

// downloadReader hashes the whole object while serving bytes from skip on.
// Every byte but the blob's last is passed through as read; the last is
// released only after the inner reader reached EOF with the right hash.
type downloadReader struct {
	ctx   context.Context
	store *Store
	key   cas.Key // what the bytes must match
	// stored is the key to delete when they do not; it differs from key
	// only for blobs stored under cas.SizeUnknown.
	stored cas.Key
	src    io.ReadCloser
	h      hash.Hash

	skip    int64  // bytes at the start still to hash and discard
	n       int64  // bytes read from src so far
	scratch []byte // for skipped bytes, allocated only when skipping
	tail    []byte // verified final bytes not yet returned
	err     error  // sticky: io.EOF after a good end, or the failure
}

func (d *downloadReader) Read(p []byte) (int, error) {
	for {
		if len(d.tail) > 0 {
			n := copy(p, d.tail)
			d.tail = d.tail[n:]
			return n, nil
		}
		if d.err != nil {
			return 0, d.err
		}
		if len(p) == 0 {
			return 0, nil
		}
		size := d.key.Digest.Size
		if d.n >= size-1 {
			d.finish()
			continue
		}
		// Body: bytes before the last one.
		dst, discard := p, false
		if d.n < d.skip {
			if d.scratch == nil {
				d.scratch = make([]byte, scratchSize)
			}
			dst, discard = d.scratch, true
			dst = dst[:min(int64(len(dst)), d.skip-d.n)]
		}
		dst = dst[:min(int64(len(dst)), size-1-d.n)]
		n, err := d.src.Read(dst)
		d.h.Write(dst[:n])
		d.n += int64(n)
		switch {
		case err == io.EOF:
			d.fail(fmt.Errorf("%w: %s ended after %d bytes", ErrCorrupt, d.key, d.n))
			return 0, d.err
		case err != nil:
			d.err = err // a read failure, not corruption
			if discard {
				return 0, err
			}
			return n, err
		case discard || n == 0:
			continue
		}
		return n, nil
	}
}

// finish reads the rest of src (normally one byte and EOF), checks size and
// hash, and on success queues the tail bytes that lie at or after skip.
func (d *downloadReader) finish() {
	size := d.key.Digest.Size
	start := d.n
	var buf [64]byte // enough for the last byte plus a sign of excess
	var tail []byte
	for {
		n, err := d.src.Read(buf[:])
		d.h.Write(buf[:n])
		d.n += int64(n)
		if d.n > size {
			d.fail(fmt.Errorf("%w: %s has more than %d bytes", ErrCorrupt, d.key, size))
			return
		}
		tail = append(tail, buf[:n]...)
		if err == io.EOF {
			break
		}
		if err != nil {
			d.err = err
			return
		}
	}
	if got := digestOf(d.key.Digest.Function, d.h, d.n); got != d.key.Digest {
		d.fail(fmt.Errorf("%w: %s reads back as %s", ErrCorrupt, d.key, got))
		return
	}
	if from := d.skip - start; from > 0 {
		tail = tail[from:]
	}
	d.tail = tail
	d.err = io.EOF
}

func (d *downloadReader) fail(err error) {
	d.err = err
	d.store.dropCorrupt(d.ctx, d.stored, err)
}

func (d *downloadReader) Close() error { return d.src.Close() }

// getUnknownSize serves a blob of the HTTP cache protocol, which is named
// by hash alone: the size comes from the stored file, then the blob is
// checked like any other.
func (s *Store) getUnknownSize(ctx context.Context, key cas.Key, offset int64) (io.ReadCloser, error) {
	h, err := cas.NewHasher(key.Digest.Function)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", key, err)
	}
	rc, err := s.inner.Get(ctx, key, 0)
	if err != nil {
		return nil, err
	}
	st, ok := rc.(interface{ Stat() (fs.FileInfo, error) })
	if !ok {
		rc.Close()
		return nil, fmt.Errorf("reading %s: the store cannot tell the size of a blob named by hash alone", key)
	}
	info, err := st.Stat()
	if err != nil {
		rc.Close()
		return nil, fmt.Errorf("reading %s: %w", key, err)
	}
	known := key
	known.Digest.Size = info.Size()
	if offset < 0 || offset > known.Digest.Size {
		rc.Close()
		return nil, fmt.Errorf("reading %s: offset %d is outside the blob (0 to %d)", key, offset, known.Digest.Size)
	}
	return &downloadReader{ctx: ctx, store: s, key: known, stored: key, src: rc, h: h, skip: offset}, nil
}
