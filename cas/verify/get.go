package verify

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"

	"github.com/sealcache/sealcache/cas"
)

// scratchSize is the buffer used to hash and discard the bytes before a
// read offset.
const scratchSize = 64 << 10

// Get returns a reader over the object from offset that fails with
// ErrCorrupt instead of delivering the last byte of an object that does not
// match its digest (CAS) or checksum (AC). Reading from offset > 0 still
// reads and hashes the object from its start.
func (s *checkingStore) Get(ctx context.Context, key cas.Key, offset int64) (io.ReadCloser, int64, error) {
	rc, stored, err := s.inner.Get(ctx, key, 0)
	if err != nil {
		return nil, 0, err
	}
	d := &downloadReader{ctx: ctx, store: s, key: key, src: rc, skip: offset}
	switch {
	case key.Kind == cas.KindAC:
		d.size = stored - ACChecksumSize
		d.trailer = ACChecksumSize
		d.h = sha256.New()
	case key.Digest.Size == cas.SizeUnknown:
		// The HTTP protocol names blobs by hash alone: the stored length
		// is the size, and the hash is checked like any other.
		d.size = stored
	default:
		d.size = key.Digest.Size
	}
	if d.h == nil {
		if d.h, err = cas.NewHasher(key.Digest.Function); err != nil {
			rc.Close()
			return nil, 0, fmt.Errorf("reading %s: %w", key, err)
		}
	}
	if d.size < 0 || d.size+int64(d.trailer) != stored {
		// An object of the wrong length is caught before its first byte.
		rc.Close()
		err := fmt.Errorf("%w: %s has %d bytes on storage", ErrCorrupt, key, stored)
		s.dropCorrupt(ctx, key, err)
		// The object is gone now, so to the caller this is also a miss:
		// Bazel will rebuild and upload it again.
		return nil, 0, fmt.Errorf("%w (deleted; %w)", err, cas.ErrNotFound)
	}
	if offset < 0 || offset > d.size {
		rc.Close()
		return nil, 0, fmt.Errorf("reading %s: offset %d is outside the object (0 to %d)", key, offset, d.size)
	}
	return d, d.size, nil
}

// dropCorrupt deletes a corrupt object and logs it. The delete outlives the
// request's context: a corrupt object must not stay behind because the
// client hung up.
func (s *checkingStore) dropCorrupt(ctx context.Context, key cas.Key, cause error) {
	err := s.inner.Delete(context.WithoutCancel(ctx), key)
	if err != nil {
		s.logger.Error("corrupt object could not be deleted; it stays unservable", "key", key.String(), "problem", cause.Error(), "delete_error", err.Error())
		return
	}
	s.logger.Warn("deleted corrupt object", "key", key.String(), "problem", cause.Error())
}

// downloadReader hashes the whole object while serving its bytes from skip
// on. Every byte but the object's last is passed through as read; the last
// is released only after the inner reader reached EOF and the object
// checked out: against the key's digest (CAS) or the stored trailer (AC).
type downloadReader struct {
	ctx     context.Context
	store   *checkingStore
	key     cas.Key
	src     io.ReadCloser
	h       hash.Hash
	size    int64 // bytes served to the caller, before any trailer
	trailer int   // checksum bytes stored after them (AC only)

	skip    int64  // bytes at the start still to hash and discard
	n       int64  // object bytes read from src so far
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
		if d.n >= d.size-1 {
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
		dst = dst[:min(int64(len(dst)), d.size-1-d.n)]
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

// finish reads the rest of src (normally the last byte, any trailer and
// EOF), checks it, and on success queues the final bytes that lie at or
// after skip.
func (d *downloadReader) finish() {
	start := d.n
	want := d.size + int64(d.trailer)
	var buf [64]byte // the last byte, a trailer and a sign of excess fit
	var rest []byte
	for {
		n, err := d.src.Read(buf[:])
		rest = append(rest, buf[:n]...)
		if start+int64(len(rest)) > want {
			d.fail(fmt.Errorf("%w: %s has more than %d bytes", ErrCorrupt, d.key, want))
			return
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			d.err = err
			return
		}
	}
	if start+int64(len(rest)) < want {
		d.fail(fmt.Errorf("%w: %s ended after %d bytes", ErrCorrupt, d.key, start+int64(len(rest))))
		return
	}
	body, trailer := rest[:len(rest)-d.trailer], rest[len(rest)-d.trailer:]
	d.h.Write(body)
	d.n += int64(len(body))
	sum := d.h.Sum(nil)
	if d.trailer > 0 {
		if !bytes.Equal(sum, trailer) {
			d.fail(fmt.Errorf("%w: %s does not match its stored checksum", ErrCorrupt, d.key))
			return
		}
	} else if got := hex.EncodeToString(sum); got != d.key.Digest.Hash {
		d.fail(fmt.Errorf("%w: %s reads back as %d bytes hashing to %s", ErrCorrupt, d.key, d.n, got))
		return
	}
	if from := d.skip - start; from > 0 {
		body = body[from:]
	}
	d.tail = body
	d.err = io.EOF
}

func (d *downloadReader) fail(err error) {
	d.err = err
	d.store.dropCorrupt(d.ctx, d.key, err)
}

func (d *downloadReader) Close() error { return d.src.Close() }
