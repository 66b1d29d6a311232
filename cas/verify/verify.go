// Package verify is the storage behaviour that keeps objects stored as
// plain bytes honest.
//
// CAS blobs: a Put is published only if its bytes hash to the key's digest,
// and a Get never hands out a byte that does not check out. Blobs are
// stored in the checked format (checked.go): blocks of 64 KiB, each with a
// CRC-32C bound to the blob and to the block's place. A Get checks each
// block before any of its bytes leave, from the block that holds the read
// offset on, at memory speed instead of the digest's hash speed. Blobs
// stored before that format (their bytes alone) are re-hashed as before.
//
// AC entries (an ActionResult, or an HTTP client's opaque entry, which do
// not hash to their key) are stored with a trailer: the SHA-256 of the
// entry. A Get checks it the same way as an old blob, so an entry changed
// on disk is never served as valid.
//
// Put hashes the upload while handing it to the inner store; on a mismatch
// the reader the inner store consumes returns an error, so the inner store
// publishes nothing. An upload longer than the digest size fails as soon as
// it has one byte too many.
//
// Get of a re-hashed object holds back the object's final byte until the
// whole object has been read from the inner store and checked. A corrupt
// object therefore ends in an error wrapping ErrCorrupt, never in a
// complete stream (a checked blob: never in a byte of a bad block); it is
// deleted from the inner store and logged at WARN, so the next lookup is a
// clean miss and Bazel uploads it again. Memory is independent of object
// size.
package verify

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"

	"github.com/sealcache/sealcache/cas"
)

// ErrDigestMismatch is wrapped by Put errors for uploads whose bytes do not
// match their digest (the server answers INVALID_ARGUMENT).
var ErrDigestMismatch = errors.New("blob does not match its digest")

// ErrCorrupt is wrapped by Get errors (at open or from Read) for stored
// bytes that do not match their digest or checksum.
var ErrCorrupt = errors.New("stored object is corrupt")

// ACChecksumSize is the length of the SHA-256 trailer stored after every
// plain AC entry.
const ACChecksumSize = sha256.Size

// MismatchError details an upload that did not match its digest.
type MismatchError struct {
	Expected cas.Digest
	// Received is how many bytes arrived; for an upload longer than
	// Expected.Size it is Expected.Size+1 and Actual is zero, because the
	// upload was cut off there.
	Received int64
	Actual   cas.Digest
}

func (e *MismatchError) Error() string {
	if e.Expected.Size != cas.SizeUnknown && e.Received > e.Expected.Size {
		return fmt.Sprintf("blob %s does not match its digest: received more than its %d bytes", e.Expected, e.Expected.Size)
	}
	if e.Expected.Size == cas.SizeUnknown {
		return fmt.Sprintf("blob does not match its hash: expected %s, received %d bytes hashing to %s",
			e.Expected.Hash, e.Received, e.Actual.Hash)
	}
	return fmt.Sprintf("blob %s does not match its digest: received %d bytes hashing to %s", e.Expected, e.Received, e.Actual)
}

func (e *MismatchError) Unwrap() error { return ErrDigestMismatch }

// checkingStore wraps an inner BlobStore with digest and checksum checks.
type checkingStore struct {
	inner  cas.BlobStore
	logger *slog.Logger
}

// New returns inner with verification. A nil logger discards logs.
func New(inner cas.BlobStore, logger *slog.Logger) cas.BlobStore {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &checkingStore{inner: inner, logger: logger}
}

// FindMissing passes through.
func (s *checkingStore) FindMissing(ctx context.Context, keys []cas.Key) ([]cas.Key, error) {
	return s.inner.FindMissing(ctx, keys)
}

// Delete passes through.
func (s *checkingStore) Delete(ctx context.Context, key cas.Key) error {
	return s.inner.Delete(ctx, key)
}

// digestOf finishes h into a digest of size bytes under fn.
func digestOf(fn cas.DigestFunction, h hash.Hash, size int64) cas.Digest {
	return cas.Digest{Function: fn, Hash: hex.EncodeToString(h.Sum(nil)), Size: size}
}

// Put streams r to the inner store, which publishes it only if a CAS blob
// matches key.Digest; an AC entry gets its checksum trailer.
func (s *checkingStore) Put(ctx context.Context, key cas.Key, size int64, r io.Reader) error {
	if key.Kind == cas.KindAC {
		stored := int64(cas.SizeUnknown)
		if size != cas.SizeUnknown {
			stored = size + ACChecksumSize
		}
		return s.inner.Put(ctx, key, stored, &checksumAppender{r: r, h: sha256.New()})
	}
	vr, err := newUploadReader(r, key.Digest)
	if err != nil {
		return fmt.Errorf("storing %s: %w", key, err)
	}
	if size == cas.SizeUnknown && key.Digest.Size != cas.SizeUnknown {
		size = key.Digest.Size
	}
	if size != cas.SizeUnknown {
		size = checkedSize(size)
	}
	err = s.inner.Put(ctx, key, size, newCheckingWriter(vr, key.Digest))
	if vr.mismatch != nil {
		return vr.mismatch // whatever the inner store made of it
	}
	return err
}

// checksumAppender yields r's bytes, then their SHA-256.
type checksumAppender struct {
	r       io.Reader
	h       hash.Hash
	trailer []byte // set at r's EOF; what is left to send
}

func (c *checksumAppender) Read(p []byte) (int, error) {
	if c.trailer == nil {
		n, err := c.r.Read(p)
		c.h.Write(p[:n])
		if err != io.EOF {
			return n, err
		}
		c.trailer = c.h.Sum(nil)
		if n > 0 {
			return n, nil
		}
	}
	if len(c.trailer) == 0 {
		return 0, io.EOF
	}
	n := copy(p, c.trailer)
	c.trailer = c.trailer[n:]
	return n, nil
}

// uploadReader hashes and counts an upload and turns a mismatch into a read
// error at EOF (or at the first byte past the digest size).
type uploadReader struct {
	r        io.Reader
	h        hash.Hash
	want     cas.Digest
	n        int64
	checked  bool // reached EOF and matched
	mismatch *MismatchError
}

func newUploadReader(r io.Reader, want cas.Digest) (*uploadReader, error) {
	h, err := cas.NewHasher(want.Function)
	if err != nil {
		return nil, err
	}
	return &uploadReader{r: r, h: h, want: want}, nil
}

// NewReader returns r checked against want, for wrappers that store the
// bytes in another form (sealed) and so cannot rely on Put: it passes the
// bytes through while hashing them, fails at the first byte past want.Size,
// and returns a *MismatchError (wrapping ErrDigestMismatch) instead of
// io.EOF when they do not match.
func NewReader(r io.Reader, want cas.Digest) (io.Reader, error) {
	return newUploadReader(r, want)
}

func (u *uploadReader) Read(p []byte) (int, error) {
	if u.mismatch != nil {
		return 0, u.mismatch
	}
	if u.checked {
		return 0, io.EOF
	}
	unknownSize := u.want.Size == cas.SizeUnknown
	// Never read more than one byte past the expected size.
	if room := u.want.Size - u.n + 1; !unknownSize && int64(len(p)) > room {
		p = p[:room]
	}
	n, err := u.r.Read(p)
	u.h.Write(p[:n])
	u.n += int64(n)
	if !unknownSize && u.n > u.want.Size {
		u.mismatch = &MismatchError{Expected: u.want, Received: u.n}
		return 0, u.mismatch
	}
	if err == io.EOF {
		got := digestOf(u.want.Function, u.h, u.n)
		if unknownSize {
			got.Size = cas.SizeUnknown
		}
		if got != u.want {
			u.mismatch = &MismatchError{Expected: u.want, Received: u.n, Actual: got}
			return n, u.mismatch
		}
		u.checked = true
	}
	return n, err
}
