package cas

import (
	"context"
	"errors"
	"fmt"
	"io"
)

// Kind tells the content-addressed store from the action cache. CAS blobs
// are verified against their digest; AC entries are keyed by an action
// digest and hold an ActionResult that does not hash to it.
type Kind uint8

const (
	KindCAS Kind = iota + 1
	KindAC
)

func (k Kind) String() string {
	switch k {
	case KindCAS:
		return "cas"
	case KindAC:
		return "ac"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Key names one stored object.
//
// Partition says whose object it is. Backends treat it as an opaque path of
// one or more segments separated by "/", each matching [A-Za-z0-9_-]+; the
// first segment is the org id and deleting a partition deletes everything
// below it. The encryption wrapper appends a key-id segment for sealed data,
// so plain and sealed objects of one org never meet.
//
// Instance is the REAPI instance name; only AC keys carry it, because action
// results differ per platform while CAS content is the same everywhere.
type Key struct {
	Partition string
	Kind      Kind
	Instance  string
	Digest    Digest
}

func (k Key) String() string {
	if k.Kind == KindAC {
		return fmt.Sprintf("%s/%s/%q/%s", k.Partition, k.Kind, k.Instance, k.Digest)
	}
	return fmt.Sprintf("%s/%s/%s", k.Partition, k.Kind, k.Digest)
}

// ErrNotFound is wrapped by every error that means "no such object". Only a
// true miss may use it: key trouble or backend trouble must not look like one.
var ErrNotFound = errors.New("not found")

// ErrFull is wrapped by Put errors when the store cannot make room.
var ErrFull = errors.New("storage full")

// BlobStore is the one interface every storage backend and every storage
// behaviour (verification, encryption, metrics) implements. Behaviours wrap
// another BlobStore; they are composed at start-up in server.
type BlobStore interface {
	// Get opens the object for reading from offset (0 <= offset <= stored
	// length). A missing object is an error wrapping ErrNotFound.
	Get(ctx context.Context, key Key, offset int64) (io.ReadCloser, error)

	// Put stores every byte r yields until io.EOF under key. If r returns
	// any other error, or ctx ends, nothing becomes visible and the error is
	// returned. Readers see either the old object or the whole new one.
	Put(ctx context.Context, key Key, r io.Reader) error

	// FindMissing returns the subset of keys that are not stored, in input order.
	FindMissing(ctx context.Context, keys []Key) ([]Key, error)

	// Delete removes one object; deleting a missing object is not an error.
	Delete(ctx context.Context, key Key) error
}

// StoredObject describes one object met while walking a partition.
type StoredObject struct {
	Key  Key
	Size int64 // bytes on storage, which for sealed data includes the overhead
}

// PartitionStore is implemented by backends (and passed through by no
// wrapper): whole-partition operations for deleting an org and for the
// shred check.
type PartitionStore interface {
	// WalkPartition calls fn for every object at or below partition.
	WalkPartition(ctx context.Context, partition string, fn func(StoredObject) error) error
	// DeletePartition removes every object at or below partition and
	// returns how many bytes it freed.
	DeletePartition(ctx context.Context, partition string) (int64, error)
}

// ReadAll is a convenience for small objects (AC entries, tests).
func ReadAll(ctx context.Context, s BlobStore, key Key) ([]byte, error) {
	rc, err := s.Get(ctx, key, 0)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}
