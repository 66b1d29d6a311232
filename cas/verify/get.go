package verify

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"

	"github.com/sealcache/sealcache/cas"
)

// scratchSize is the buffer used to hash and discard the bytes before a
// read offset.
const scratchSize = 64 << 10

// Get returns a reader over the object from offset that never hands out a
// byte that did not check out. A CAS blob in the checked format (see
// checked.go) is checked a block at a time from the block holding offset;
// an AC entry, and a blob stored before that format, is re-hashed from its
// start (also for a read from an offset), and its last byte is held back
// until the whole object matched its checksum or digest. Either way a
// corrupt object ends the read with an error wrapping ErrCorrupt and is
// deleted.
func (s *checkingStore) Get(ctx context.Context, key cas.Key, offset int64) (io.ReadCloser, int64, error) {
	if offset < 0 {
		return nil, 0, fmt.Errorf("reading %s: negative offset %d", key, offset)
	}
	if key.Kind == cas.KindCAS && key.Digest.Size != cas.SizeUnknown {
		return s.getBlob(ctx, key, offset)
	}
	rc, stored, err := s.inner.Get(ctx, key, 0)
	if err != nil {
		return nil, 0, err
	}
	if key.Kind == cas.KindAC {
		return s.getHashed(ctx, key, rc, stored, ACChecksumSize, offset)
	}
	// An HTTP blob, named by hash alone: its header tells which format it
	// is in. HTTP reads start at offset 0, so reading past the header to
	// the block of offset costs nothing in practice.
	var head [headerSize]byte
	got, err := io.ReadFull(rc, head[:min(headerSize, max(stored, 0))])
	if err != nil && err != io.EOF {
		rc.Close()
		return nil, 0, fmt.Errorf("reading %s: %w", key, err)
	}
	if n, ok := checkedPlainSize(stored); ok && isCheckedHeader(head[:got]) {
		if offset > n {
			rc.Close()
			return nil, 0, fmt.Errorf("reading %s: offset %d is outside the object (0 to %d)", key, offset, n)
		}
		start := checkedStart(offset)
		if _, err := io.CopyN(io.Discard, rc, start-headerSize); err != nil {
			rc.Close()
			return nil, 0, fmt.Errorf("reading %s: %w", key, err)
		}
		return s.checked(ctx, key, rc, n, offset), n, nil
	}
	src := readCloser{io.MultiReader(bytes.NewReader(head[:got]), rc), rc}
	return s.getHashed(ctx, key, src, stored, 0, offset)
}

// getBlob opens a CAS blob of known size: in the checked format its stored
// length is checkedSize(size), from before it size.
func (s *checkingStore) getBlob(ctx context.Context, key cas.Key, offset int64) (io.ReadCloser, int64, error) {
	size := key.Digest.Size
	if offset > size {
		return nil, 0, fmt.Errorf("reading %s: offset %d is outside the object (0 to %d)", key, offset, size)
	}
	start := checkedStart(offset)
	if start == headerSize {
		start = 0 // a read of the first block checks the header too
	}
	rc, stored, err := s.inner.Get(ctx, key, start)
	if start != 0 && !errors.Is(err, cas.ErrNotFound) && (err != nil || stored != checkedSize(size)) {
		// Opened at an offset that only means something in the checked
		// format, but the object is older, or the open failed (the start
		// may lie past the end of an older object). Open it from its start
		// to find out: what is there decides the format, as for any read
		// from the first block.
		if err == nil {
			rc.Close()
		}
		start = 0
		rc, stored, err = s.inner.Get(ctx, key, 0)
	}
	if err != nil {
		return nil, 0, err
	}
	if stored != checkedSize(size) {
		return s.getHashed(ctx, key, rc, stored, 0, offset)
	}
	if start == 0 {
		var head [headerSize]byte
		if _, err := io.ReadFull(rc, head[:]); err != nil || !isCheckedHeader(head[:]) {
			rc.Close()
			if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
				return nil, 0, fmt.Errorf("reading %s: %w", key, err)
			}
			return nil, 0, s.corruptAtOpen(ctx, key, fmt.Errorf("%w: %s has a damaged header", ErrCorrupt, key))
		}
		// Nothing to skip unless an open at a later block was retried.
		if _, err := io.CopyN(io.Discard, rc, checkedStart(offset)-headerSize); err != nil {
			rc.Close()
			return nil, 0, fmt.Errorf("reading %s: %w", key, err)
		}
	}
	return s.checked(ctx, key, rc, size, offset), size, nil
}

// checked serves a blob of size bytes from its checked form; src is
// positioned at the start of the block that holds offset.
func (s *checkingStore) checked(ctx context.Context, key cas.Key, src io.ReadCloser, size, offset int64) io.ReadCloser {
	return newCheckedReader(src, key.Digest, size, offset, func(err error) { s.dropCorrupt(ctx, key, err) })
}

type readCloser struct {
	io.Reader
	io.Closer
}

// getHashed serves an object stored as its bytes alone, followed by a
// trailer of trailer bytes (the SHA-256 of an AC entry), re-hashing it
// from its start. rc reads it from its start; stored is its length on
// storage.
func (s *checkingStore) getHashed(ctx context.Context, key cas.Key, rc io.ReadCloser, stored int64, trailer int, offset int64) (io.ReadCloser, int64, error) {
	d := &downloadReader{ctx: ctx, store: s, key: key, src: rc, skip: offset, size: stored - int64(trailer), trailer: trailer}
	var err error
	if trailer > 0 {
		d.h = sha256.New()
	} else if d.h, err = cas.NewHasher(key.Digest.Function); err != nil {
		rc.Close()
		return nil, 0, fmt.Errorf("reading %s: %w", key, err)
	}
	// The HTTP protocol names blobs by hash alone (SizeUnknown): the
	// stored length is the size, and the hash is checked like any other.
	if d.size < 0 || key.Kind == cas.KindCAS && key.Digest.Size != cas.SizeUnknown && d.size != key.Digest.Size {
		// An object of the wrong length is caught before its first byte.
		rc.Close()
		return nil, 0, s.corruptAtOpen(ctx, key, fmt.Errorf("%w: %s has %d bytes on storage", ErrCorrupt, key, stored))
	}
	if offset > d.size {
		rc.Close()
		return nil, 0, fmt.Errorf("reading %s: offset %d is outside the object (0 to %d)", key, offset, d.size)
	}
	return d, d.size, nil
}

// corruptAtOpen drops an object found corrupt before any of its bytes were
// served, and returns err as a miss too: the object is gone now, so Bazel
// will rebuild and upload it again.
func (s *checkingStore) corruptAtOpen(ctx context.Context, key cas.Key, err error) error {
	s.dropCorrupt(ctx, key, err)
	return fmt.Errorf("%w (deleted; %w)", err, cas.ErrNotFound)
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
