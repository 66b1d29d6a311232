// Package memory is an in-memory cas.Backend: the one fake that tests of
// wrappers (verification, encryption, completeness) and of the server run
// over. It passes the same conformance suite as the real backends.
package memory

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sync"

	"github.com/sealcache/sealcache/cas"
)

// Store keeps every object in a map. It is safe for concurrent use.
type Store struct {
	mu      sync.RWMutex
	objects map[cas.Key][]byte
	puts    int // successful Puts, for tests that check what reached storage
}

var _ cas.Backend = (*Store)(nil)

// New returns an empty store.
func New() *Store { return &Store{objects: make(map[cas.Key][]byte)} }

func (s *Store) Get(ctx context.Context, key cas.Key, offset int64) (io.ReadCloser, int64, error) {
	if err := ctx.Err(); err != nil {
		return nil, 0, err
	}
	s.mu.RLock()
	data, ok := s.objects[key]
	s.mu.RUnlock()
	if !ok {
		return nil, 0, cas.NotFound(key)
	}
	if offset < 0 || offset > int64(len(data)) {
		return nil, 0, fmt.Errorf("offset %d is outside %s of %d bytes", offset, key, len(data))
	}
	return io.NopCloser(bytes.NewReader(data[offset:])), int64(len(data)), nil
}

func (s *Store) Put(ctx context.Context, key cas.Key, size int64, r io.Reader) error {
	if err := key.Partition.Validate(); err != nil {
		return err
	}
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	if size != cas.SizeUnknown && int64(len(data)) != size {
		return fmt.Errorf("storing %s: received %d bytes, announced %d", key, len(data), size)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	s.objects[key] = data
	s.puts++
	s.mu.Unlock()
	return nil
}

func (s *Store) FindMissing(ctx context.Context, keys []cas.Key) ([]cas.Key, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	var missing []cas.Key
	for _, k := range keys {
		if _, ok := s.objects[k]; !ok {
			missing = append(missing, k)
		}
	}
	return missing, nil
}

func (s *Store) Delete(ctx context.Context, key cas.Key) error {
	s.mu.Lock()
	delete(s.objects, key)
	s.mu.Unlock()
	return nil
}

func (s *Store) WalkPartition(ctx context.Context, partition cas.Partition, fn func(cas.StoredObject) error) error {
	if err := partition.Validate(); err != nil {
		return err
	}
	s.mu.RLock()
	var objs []cas.StoredObject
	for k, v := range s.objects {
		if partition.Contains(k.Partition) {
			objs = append(objs, cas.StoredObject{Key: k, Size: int64(len(v))})
		}
	}
	s.mu.RUnlock()
	for _, o := range objs {
		if err := fn(o); err != nil {
			return err
		}
	}
	return nil
}

func (s *Store) DeletePartition(ctx context.Context, partition cas.Partition) (int64, error) {
	if err := partition.Validate(); err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var freed int64
	for k, v := range s.objects {
		if partition.Contains(k.Partition) {
			freed += int64(len(v))
			delete(s.objects, k)
		}
	}
	return freed, nil
}

func (s *Store) OrgUsage(ctx context.Context, orgID string) (int64, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var n int64
	for k, v := range s.objects {
		if k.Partition.Org() == orgID {
			n += int64(len(v))
		}
	}
	return n, nil
}

func (s *Store) Close() error { return nil }

// Raw returns the stored bytes of key (nil if absent), for tests that look
// at what reached storage.
func (s *Store) Raw(key cas.Key) []byte {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return bytes.Clone(s.objects[key])
}

// Set replaces the stored bytes of key, for tests of corruption handling.
func (s *Store) Set(key cas.Key, data []byte) {
	s.mu.Lock()
	s.objects[key] = data
	s.mu.Unlock()
}

// Keys returns every stored key at or below partition.
func (s *Store) Keys(partition cas.Partition) []cas.Key {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var keys []cas.Key
	for k := range s.objects {
		if partition.Contains(k.Partition) {
			keys = append(keys, k)
		}
	}
	return keys
}

// Puts counts successful Puts since New.
func (s *Store) Puts() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.puts
}
