package encryption

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/sealcache/sealcache/cas"
	"github.com/sealcache/sealcache/encryption/stream"
)

// ShredReport is what ShredCheck found under one org's partition.
type ShredReport struct {
	OrgID   string
	Objects int64 // every stored object
	Plain   int64 // objects stored without sealing (written while CMEK was off)
	Sealed  int64 // objects under a key-id partition
	Opened  int64 // sealed objects this node could open and authenticate
	// ByKeyID breaks the sealed objects down per key id.
	ByKeyID map[string]*KeyIDReport
	// KeyError is why the org's current key could not be had, if it could not.
	KeyError string
}

// KeyIDReport counts the sealed objects of one key id.
type KeyIDReport struct {
	Active  bool // the org's current key record has this key id
	Objects int64
	Opened  int64
}

// Shredded reports whether no object sealed under a deleted key id opened:
// the data of every deleted key is unreadable.
func (r ShredReport) Shredded() bool {
	for _, k := range r.ByKeyID {
		if !k.Active && k.Opened > 0 {
			return false
		}
	}
	return true
}

// ShredCheck walks every object stored under the org's partition and tries
// to open each sealed one with every key this node can obtain for the org
// (only the current one: keys of deleted records cannot be unwrapped, which
// is what the check demonstrates). Each opened object is read to the end,
// so every chunk is authenticated. backend is the storage backend and
// sealed the BlobStore sealed objects are read from (usually the same).
func ShredCheck(ctx context.Context, backend cas.PartitionStore, sealed cas.BlobStore, keys *KeyProvider, orgID string) (ShredReport, error) {
	partition, err := cas.OrgPartition(orgID)
	if err != nil {
		return ShredReport{}, err
	}
	rep := ShredReport{OrgID: orgID, ByKeyID: map[string]*KeyIDReport{}}
	current, err := keys.Current(ctx, orgID)
	if err != nil {
		var kerr *KeyUnavailableError
		if !errors.As(err, &kerr) {
			return rep, err
		}
		rep.KeyError = err.Error()
		current.KeyID = kerr.KeyID // its objects count as active, though unopenable now
	}
	err = backend.WalkPartition(ctx, partition, func(obj cas.StoredObject) error {
		rep.Objects++
		keyID := keyIDOfPartition(obj.Key.Partition)
		if keyID == "" {
			rep.Plain++
			return nil
		}
		rep.Sealed++
		k := rep.ByKeyID[keyID]
		if k == nil {
			k = &KeyIDReport{Active: keyID == current.KeyID}
			rep.ByKeyID[keyID] = k
		}
		k.Objects++
		if current.aead == nil {
			return nil
		}
		opened, err := opensWith(ctx, sealed, obj.Key, keyID, current)
		if err != nil {
			return err
		}
		if opened {
			rep.Opened++
			k.Opened++
		}
		return nil
	})
	if err != nil {
		return rep, fmt.Errorf("walking partition %s: %w", orgID, err)
	}
	return rep, nil
}

// opensWith reads the sealed object stored at key and reports whether it
// authenticates under orgKey. The object's own key id goes into the
// associated data, so the attempt is real even when it differs from orgKey's.
func opensWith(ctx context.Context, sealed cas.BlobStore, key cas.Key, keyID string, orgKey OrgKey) (bool, error) {
	rc, _, err := sealed.Get(ctx, key, 0)
	if errors.Is(err, cas.ErrNotFound) {
		return false, nil // evicted while walking
	}
	if err != nil {
		return false, err
	}
	defer rc.Close()
	_, err = io.Copy(io.Discard, stream.NewReader(rc, orgKey.aead, keyID, binding(orgKey.OrgID, key), stream.Start{}))
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, ErrCorrupt):
		return false, nil
	}
	return false, err
}
