// Package emptyblob is the storage behaviour that makes the empty CAS blob
// always present, for every org and every encryption state. Clients never
// upload it (Bazel assumes every cache has it), so no store below this
// wrapper ever sees it: not the encryption wrapper, which would otherwise
// look for a sealed header in zero bytes, nor a backend.
package emptyblob

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"slices"

	"github.com/sealcache/sealcache/cas"
	"github.com/sealcache/sealcache/cas/verify"
)

type alwaysPresent struct{ inner cas.BlobStore }

// New returns inner with the empty CAS blob always present.
func New(inner cas.BlobStore) cas.BlobStore { return alwaysPresent{inner} }

// isEmptyBlob reports whether k names the empty CAS blob. An HTTP key
// (cas.SizeUnknown) with the empty hash names it too.
func isEmptyBlob(k cas.Key) bool {
	if k.Kind != cas.KindCAS {
		return false
	}
	d := k.Digest
	if d.Size == cas.SizeUnknown {
		d.Size = 0
	}
	return d.IsEmpty()
}

func (s alwaysPresent) Get(ctx context.Context, key cas.Key, offset int64) (io.ReadCloser, int64, error) {
	if !isEmptyBlob(key) {
		return s.inner.Get(ctx, key, offset)
	}
	if offset != 0 {
		return nil, 0, fmt.Errorf("reading %s: offset %d is beyond the end of the empty blob", key, offset)
	}
	return io.NopCloser(bytes.NewReader(nil)), 0, nil
}

// Put accepts an upload of the empty blob and stores nothing.
func (s alwaysPresent) Put(ctx context.Context, key cas.Key, size int64, r io.Reader) error {
	if !isEmptyBlob(key) {
		return s.inner.Put(ctx, key, size, r)
	}
	var one [1]byte
	n, err := io.ReadFull(r, one[:])
	switch {
	case n > 0:
		return fmt.Errorf("storing %s: the empty blob was sent with data: %w", key, verify.ErrDigestMismatch)
	case err == io.EOF:
		return nil
	default:
		return fmt.Errorf("storing %s: reading the upload: %w", key, err)
	}
}

func (s alwaysPresent) FindMissing(ctx context.Context, keys []cas.Key) ([]cas.Key, error) {
	// Most calls do not ask for the empty blob: pass those on uncopied.
	if !slices.ContainsFunc(keys, isEmptyBlob) {
		return s.inner.FindMissing(ctx, keys)
	}
	asked := keys[:0:0]
	for _, k := range keys {
		if !isEmptyBlob(k) {
			asked = append(asked, k)
		}
	}
	if len(asked) == 0 {
		return nil, nil
	}
	return s.inner.FindMissing(ctx, asked)
}

func (s alwaysPresent) Delete(ctx context.Context, key cas.Key) error {
	if isEmptyBlob(key) {
		return nil
	}
	return s.inner.Delete(ctx, key)
}
