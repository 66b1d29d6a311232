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

// sealingStore routes each call by the org's encryption state: CMEK off
// goes to plain unchanged; CMEK on goes to sealed under the partition
// "ORG/kKEYID", sealing on Put and opening on Get. Data written before CMEK
// was enabled, or under an earlier key id, is then a miss.
type sealingStore struct {
	plain  cas.BlobStore
	sealed cas.BlobStore
	keys   *KeyProvider
	logger *slog.Logger
}

// NewSealingStore returns the encrypting wrapper. Keys it is given name
// org partitions ("ORG"); it adds the key-id segment itself. plain and
// sealed may be the same backend: sealed partitions never collide with
// plain ones. plain is expected to verify CAS digests itself; sealed data
// is verified here, because sealed bytes do not hash to the digest.
func NewSealingStore(plain, sealed cas.BlobStore, keys *KeyProvider, logger *slog.Logger) cas.BlobStore {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &sealingStore{plain: plain, sealed: sealed, keys: keys, logger: logger}
}

// route finds the org's key; a disabled org gets OrgKey{} and plain.
func (s *sealingStore) route(ctx context.Context, key cas.Key) (OrgKey, error) {
	if err := checkOrgPartition(key.Partition); err != nil {
		return OrgKey{}, err
	}
	return s.keys.Current(ctx, key.Partition.Org())
}

// Get opens the object from plaintext offset on and returns its plaintext
// size. A sealed object that fails to open yields an error wrapping
// ErrCorrupt (never its bad plaintext) and is deleted, so the next request
// is a clean miss.
func (s *sealingStore) Get(ctx context.Context, key cas.Key, offset int64) (io.ReadCloser, int64, error) {
	orgKey, err := s.route(ctx, key)
	if err != nil {
		return nil, 0, err
	}
	if !orgKey.Enabled() {
		return s.plain.Get(ctx, key, offset)
	}
	sk := sealedKey(key, orgKey.KeyID)
	start := stream.StartAt(orgKey.KeyID, offset)
	rc, stored, err := s.sealed.Get(ctx, sk, start.StoredOffset)
	if err != nil {
		return nil, 0, err
	}
	size, err := stream.PlainSize(orgKey.KeyID, stored)
	if err == nil && key.Kind == cas.KindCAS && key.Digest.Size != cas.SizeUnknown && size != key.Digest.Size {
		err = fmt.Errorf("%w: %d stored bytes hold %d bytes, not the digest's %d", ErrCorrupt, stored, size, key.Digest.Size)
	}
	if err != nil {
		rc.Close()
		s.deleteCorrupt(ctx, sk, err)
		return nil, 0, fmt.Errorf("sealed object %s was deleted: %w (%w)", sk, err, cas.ErrNotFound)
	}
	if offset < 0 || offset > size {
		rc.Close()
		return nil, 0, fmt.Errorf("read offset %d is outside %s (0 to %d)", offset, key, size)
	}
	return &openingReader{
		Reader: stream.NewReader(rc, orgKey.aead, orgKey.KeyID, binding(orgKey.OrgID, key), start),
		rc:     rc,
		ctx:    ctx,
		store:  s,
		key:    sk,
	}, size, nil
}

type openingReader struct {
	*stream.Reader
	rc      io.ReadCloser
	ctx     context.Context
	store   *sealingStore
	key     cas.Key
	deleted bool
}

func (r *openingReader) Read(p []byte) (int, error) {
	n, err := r.Reader.Read(p)
	if err != nil && errors.Is(err, ErrCorrupt) {
		if !r.deleted {
			r.deleted = true
			r.store.deleteCorrupt(r.ctx, r.key, err)
		}
		err = fmt.Errorf("sealed object %s was deleted: %w", r.key, err)
	}
	return n, err
}

func (r *openingReader) Close() error { return r.rc.Close() }

// deleteCorrupt removes a bad sealed object even if the request is ending.
func (s *sealingStore) deleteCorrupt(ctx context.Context, key cas.Key, cause error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := s.sealed.Delete(ctx, key); err != nil {
		s.logger.Error("corrupt sealed object could not be deleted; it stays unservable", "key", key.String(), "problem", cause.Error(), "delete_error", err.Error())
		return
	}
	s.logger.Warn("deleted corrupt sealed object", "key", key.String(), "problem", cause.Error())
}

// Put stores r's bytes, sealed when the org has CMEK on. A CAS blob is
// hashed while it streams; if it does not match its digest the sealed
// stream ends in an error wrapping ErrDigestMismatch and nothing is stored.
func (s *sealingStore) Put(ctx context.Context, key cas.Key, size int64, r io.Reader) error {
	orgKey, err := s.route(ctx, key)
	if err != nil {
		return err
	}
	if !orgKey.Enabled() {
		return s.plain.Put(ctx, key, size, r)
	}
	if key.Kind == cas.KindCAS {
		if r, err = verify.NewReader(r, key.Digest); err != nil {
			return err
		}
		if size == cas.SizeUnknown {
			size = key.Digest.Size
		}
	}
	sr, err := stream.NewSealingReader(r, orgKey.aead, orgKey.KeyID, binding(orgKey.OrgID, key))
	if err != nil {
		return err
	}
	sealedSize := int64(cas.SizeUnknown)
	if size != cas.SizeUnknown {
		sealedSize = stream.SealedSize(orgKey.KeyID, size)
	}
	return s.sealed.Put(ctx, sealedKey(key, orgKey.KeyID), sealedSize, sr)
}

// FindMissing asks each backend once for the keys routed to it. A call
// nearly always holds the keys of one org (one client's request): then the
// org's key is looked up once, plain keys are passed on as they are, and
// sealed keys share one partition string.
func (s *sealingStore) FindMissing(ctx context.Context, keys []cas.Key) ([]cas.Key, error) {
	var plain, sealed []int // indexes into keys
	var sealedKeys []cas.Key
	// The partition of the previous key, and where its org's sealed data
	// lives ("" while the org has CMEK off).
	var lastPartition, lastSealed cas.Partition
	for i, k := range keys {
		if i == 0 || k.Partition != lastPartition {
			if err := checkOrgPartition(k.Partition); err != nil {
				return nil, err
			}
			orgKey, err := s.keys.Current(ctx, k.Partition.Org())
			if err != nil {
				return nil, err
			}
			lastPartition, lastSealed = k.Partition, ""
			if orgKey.Enabled() {
				lastSealed = SealedPartition(k.Partition.Org(), orgKey.KeyID)
			}
		}
		if lastSealed != "" {
			if sealedKeys == nil {
				// Usually every key goes here: allocate once.
				sealedKeys, sealed = make([]cas.Key, 0, len(keys)-i), make([]int, 0, len(keys)-i)
			}
			k.Partition = lastSealed
			sealedKeys = append(sealedKeys, k)
			sealed = append(sealed, i)
		} else {
			plain = append(plain, i)
		}
	}
	if len(sealed) == 0 {
		return s.plain.FindMissing(ctx, keys)
	}
	if len(plain) == 0 {
		res, err := s.sealed.FindMissing(ctx, sealedKeys)
		if err != nil {
			return nil, err
		}
		var out []cas.Key
		cas.MarkMissing(sealedKeys, res, func(j int) { out = append(out, keys[j]) })
		return out, nil
	}
	// Both backends have keys.
	missing := make([]bool, len(keys))
	plainKeys := make([]cas.Key, len(plain))
	for j, i := range plain {
		plainKeys[j] = keys[i]
	}
	res, err := s.plain.FindMissing(ctx, plainKeys)
	if err != nil {
		return nil, err
	}
	cas.MarkMissing(plainKeys, res, func(j int) { missing[plain[j]] = true })
	res, err = s.sealed.FindMissing(ctx, sealedKeys)
	if err != nil {
		return nil, err
	}
	cas.MarkMissing(sealedKeys, res, func(j int) { missing[sealed[j]] = true })
	var out []cas.Key
	for i, k := range keys {
		if missing[i] {
			out = append(out, k)
		}
	}
	return out, nil
}

// Delete removes the object from wherever the org's current state puts it.
func (s *sealingStore) Delete(ctx context.Context, key cas.Key) error {
	orgKey, err := s.route(ctx, key)
	if err != nil {
		return err
	}
	if !orgKey.Enabled() {
		return s.plain.Delete(ctx, key)
	}
	return s.sealed.Delete(ctx, sealedKey(key, orgKey.KeyID))
}
