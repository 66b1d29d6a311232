package cas

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
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
// Instance is the REAPI instance name; only AC keys carry it, because action
// results differ per platform while CAS content is the same everywhere.
type Key struct {
	Partition Partition
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

// NotFound is the error of a miss of key.
func NotFound(key Key) error { return fmt.Errorf("%s: %w", key, ErrNotFound) }

// ErrFull is wrapped by Put errors when the store cannot make room.
var ErrFull = errors.New("storage full")

// ErrTooLarge is wrapped by Put errors for an object that can never fit,
// such as a blob larger than the whole store. Retrying cannot help, so the
// server answers INVALID_ARGUMENT rather than RESOURCE_EXHAUSTED.
var ErrTooLarge = errors.New("object too large")

// BlobStore is the one interface every storage backend and every storage
// behaviour (verification, encryption, completeness, metrics) implements.
// Behaviours wrap another BlobStore; they are composed at start-up.
type BlobStore interface {
	// Get opens the object for reading from offset (0 <= offset <= size)
	// and returns its whole length in bytes, as this store serves it
	// (plaintext above the encryption wrapper). A missing object is an
	// error wrapping ErrNotFound.
	Get(ctx context.Context, key Key, offset int64) (rc io.ReadCloser, size int64, err error)

	// Put stores the bytes r yields until io.EOF under key. size is how
	// many that will be, or SizeUnknown when the caller cannot tell; a
	// store may use it to stream with a known length, and fails the Put if
	// r yields another count. A store reads r to io.EOF before it makes
	// the object visible: wrappers check digests and fences at EOF. If r
	// returns any other error, or ctx ends, nothing becomes visible and
	// the error is returned. Readers see either the old object or the
	// whole new one, never part of one.
	Put(ctx context.Context, key Key, size int64, r io.Reader) error

	// FindMissing returns the subset of keys that are not stored, in input
	// order. A found key counts as a use (LRU), as a read does.
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
// wrapper): whole-partition operations for deleting an org, disabling
// CMEK and the shred check.
type PartitionStore interface {
	// WalkPartition calls fn for every object at or below partition.
	// Objects stored during the walk may or may not be seen.
	WalkPartition(ctx context.Context, partition Partition, fn func(StoredObject) error) error
	// DeletePartition removes every object at or below partition and
	// returns how many bytes it freed.
	DeletePartition(ctx context.Context, partition Partition) (int64, error)
}

// UsageReporter tells how many bytes of storage an org uses, plain and
// sealed together, without walking its objects.
type UsageReporter interface {
	OrgUsage(ctx context.Context, orgID string) (int64, error)
}

// Backend is what the bottom of a storage stack offers: objects, whole
// partitions and usage figures. The disk store and the shared (object
// store + index) store are Backends; so is a tier of one over the other.
type Backend interface {
	BlobStore
	PartitionStore
	UsageReporter
	// Close releases the backend's resources (files, locks, connections).
	Close() error
}

// ReadAll reads a whole object that is known to be small (AC entries,
// Directory and Tree messages). An object over limit bytes is refused with
// an error wrapping ErrTooLarge before any byte is read, so no request can
// make the server hold more than it allows.
func ReadAll(ctx context.Context, s BlobStore, key Key, limit int64) ([]byte, error) {
	return ReadAllInto(ctx, s, key, limit, nil)
}

// ReadAllInto is ReadAll into buf's storage (its contents are replaced),
// for callers that read many objects one after another and keep none.
func ReadAllInto(ctx context.Context, s BlobStore, key Key, limit int64, buf []byte) ([]byte, error) {
	rc, size, err := s.Get(ctx, key, 0)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	if size > limit {
		return nil, fmt.Errorf("%s has %d bytes, more than the %d allowed here: %w", key, size, limit, ErrTooLarge)
	}
	data, err := readAtMost(rc, slices.Grow(buf[:0], int(max(size, 0))), limit)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", key, err)
	}
	return data, nil
}

// readAtMost appends r's bytes to buf and fails once there are more than limit.
func readAtMost(r io.Reader, buf []byte, limit int64) ([]byte, error) {
	lr := &io.LimitedReader{R: r, N: limit + 1}
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := lr.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if int64(len(buf)) > limit {
			return nil, fmt.Errorf("more than %d bytes: %w", limit, ErrTooLarge)
		}
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

// MarkMissing calls mark(i) for every keys[i] that missing, the answer of
// FindMissing(keys), names. FindMissing answers in input order, so one walk
// over both lists finds them without hashing a key; an answer out of order
// (a store that breaks the promise) is matched by value instead, so the
// result is right either way.
func MarkMissing(keys, missing []Key, mark func(i int)) {
	i := 0
	for m, k := range missing {
		for i < len(keys) && keys[i] != k {
			i++
		}
		if i == len(keys) {
			markByValue(keys, missing[m:], mark)
			return
		}
		mark(i)
		i++
	}
}

func markByValue(keys, missing []Key, mark func(i int)) {
	want := make(map[Key]int, len(missing))
	for _, k := range missing {
		want[k]++
	}
	for i, k := range keys {
		if want[k] > 0 {
			want[k]--
			mark(i)
		}
	}
}
