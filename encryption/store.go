package encryption

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/sealcache/sealcache/cas"
	"github.com/sealcache/sealcache/cas/verify"
	"github.com/sealcache/sealcache/encryption/stream"
)

// Store routes each call by the org's encryption state: CMEK off goes to
// plain unchanged; CMEK on goes to sealed under the partition
// "ORG/kKEYID[/rest]", sealing on Put and opening on Get. Data written
// before CMEK was enabled, or under an earlier key id, is then a miss.
type Store struct {
	plain  cas.BlobStore
	sealed cas.BlobStore
	keys   *KeyProvider
}

// NewStore returns the encrypting wrapper. plain and sealed may be the same
// backend: sealed partitions never collide with plain ones. plain is
// expected to verify CAS digests itself; sealed data is verified here,
// because sealed bytes do not hash to the digest.
func NewStore(plain, sealed cas.BlobStore, keys *KeyProvider) cas.BlobStore {
	return &Store{plain: plain, sealed: sealed, keys: keys}
}

// route finds the org's key; a disabled org gets OrgKey{} and plain.
func (s *Store) route(ctx context.Context, key cas.Key) (OrgKey, error) {
	org, err := orgOf(key.Partition)
	if err != nil {
		return OrgKey{}, err
	}
	return s.keys.Current(ctx, org)
}

// Get opens the object from plaintext offset on. A sealed object that fails
// to open yields an error wrapping ErrCorrupt (never its bad plaintext) and
// is deleted, so the next request is a clean miss.
func (s *Store) Get(ctx context.Context, key cas.Key, offset int64) (io.ReadCloser, error) {
	ok, err := s.route(ctx, key)
	if err != nil {
		return nil, err
	}
	if !ok.Enabled() {
		return s.plain.Get(ctx, key, offset)
	}
	if offset < 0 || key.Kind == cas.KindCAS && key.Digest.Size != cas.SizeUnknown && offset > key.Digest.Size {
		return nil, fmt.Errorf("read offset %d is outside blob %s", offset, key.Digest)
	}
	sk := sealedKey(key, ok.KeyID)
	start := stream.StartAt(ok.KeyID, offset)
	rc, err := s.sealed.Get(ctx, sk, start.StoredOffset)
	if err != nil {
		return nil, err
	}
	return &openingReader{
		Reader: stream.NewReader(rc, ok.aead, ok.KeyID, binding(ok.OrgID, key), start),
		rc:     rc,
		ctx:    ctx,
		store:  s.sealed,
		key:    sk,
	}, nil
}

type openingReader struct {
	*stream.Reader
	rc      io.ReadCloser
	ctx     context.Context
	store   cas.BlobStore
	key     cas.Key
	deleted bool
}

func (r *openingReader) Read(p []byte) (int, error) {
	n, err := r.Reader.Read(p)
	if err != nil && errors.Is(err, ErrCorrupt) {
		if !r.deleted {
			r.deleted = true
			r.deleteCorrupt()
		}
		err = fmt.Errorf("sealed object %s was deleted: %w", r.key, err)
	}
	return n, err
}

// deleteCorrupt removes the bad object even if the request is ending.
func (r *openingReader) deleteCorrupt() {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.ctx), 10*time.Second)
	defer cancel()
	if err := r.store.Delete(ctx, r.key); err != nil {
		slog.Warn("encryption: deleting a corrupt sealed object failed", "key", r.key.String(), "err", err)
	}
}

func (r *openingReader) Close() error { return r.rc.Close() }

// Put stores r's bytes, sealed when the org has CMEK on. A CAS blob is
// hashed while it streams; if it does not match its digest the sealed
// stream ends in an error wrapping ErrDigestMismatch and nothing is stored.
func (s *Store) Put(ctx context.Context, key cas.Key, r io.Reader) error {
	ok, err := s.route(ctx, key)
	if err != nil {
		return err
	}
	if !ok.Enabled() {
		return s.plain.Put(ctx, key, r)
	}
	if key.Kind == cas.KindCAS {
		if r, err = verify.NewReader(r, key.Digest); err != nil {
			return err
		}
	}
	sr, err := stream.NewSealingReader(r, ok.aead, ok.KeyID, binding(ok.OrgID, key))
	if err != nil {
		return err
	}
	return s.sealed.Put(ctx, sealedKey(key, ok.KeyID), sr)
}

// FindMissing asks each backend once for the keys routed to it.
func (s *Store) FindMissing(ctx context.Context, keys []cas.Key) ([]cas.Key, error) {
	type batch struct {
		keys []cas.Key
		orig []int
	}
	var plain, sealed batch
	orgKeys := map[string]OrgKey{}
	for i, k := range keys {
		org, err := orgOf(k.Partition)
		if err != nil {
			return nil, err
		}
		ok, seen := orgKeys[org]
		if !seen {
			if ok, err = s.keys.Current(ctx, org); err != nil {
				return nil, err
			}
			orgKeys[org] = ok
		}
		if ok.Enabled() {
			sealed.keys = append(sealed.keys, sealedKey(k, ok.KeyID))
			sealed.orig = append(sealed.orig, i)
		} else {
			plain.keys = append(plain.keys, k)
			plain.orig = append(plain.orig, i)
		}
	}
	missing := make([]bool, len(keys))
	for _, b := range []struct {
		store cas.BlobStore
		batch
	}{{s.plain, plain}, {s.sealed, sealed}} {
		if len(b.keys) == 0 {
			continue
		}
		res, err := b.store.FindMissing(ctx, b.keys)
		if err != nil {
			return nil, err
		}
		gone := make(map[cas.Key]bool, len(res))
		for _, k := range res {
			gone[k] = true
		}
		for j, k := range b.keys {
			if gone[k] {
				missing[b.orig[j]] = true
			}
		}
	}
	var out []cas.Key
	for i, k := range keys {
		if missing[i] {
			out = append(out, k)
		}
	}
	return out, nil
}

// Delete removes the object from wherever the org's current state puts it.
func (s *Store) Delete(ctx context.Context, key cas.Key) error {
	ok, err := s.route(ctx, key)
	if err != nil {
		return err
	}
	if !ok.Enabled() {
		return s.plain.Delete(ctx, key)
	}
	return s.sealed.Delete(ctx, sealedKey(key, ok.KeyID))
}
