// Package memory is an in-memory cas.BlobStore for tests and benchmarks.
package memory

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/sealcache/sealcache/cas"
)

// Store keeps every object in a map. It is safe for concurrent use.
type Store struct {
	mu      sync.RWMutex
	objects map[cas.Key][]byte
}

// New returns an empty store.
func New() *Store { return &Store{objects: make(map[cas.Key][]byte)} }

func (s *Store) Get(ctx context.Context, key cas.Key, offset int64) (io.ReadCloser, error) {
	s.mu.RLock()
	data, ok := s.objects[key]
	s.mu.RUnlock()
	if !ok {
		if key.Kind == cas.KindCAS && key.Digest.IsEmpty() {
			return io.NopCloser(bytes.NewReader(nil)), nil
		}
		return nil, fmt.Errorf("%s: %w", key, cas.ErrNotFound)
	}
	if offset < 0 || offset > int64(len(data)) {
		return nil, fmt.Errorf("offset %d is outside %s of %d bytes", offset, key, len(data))
	}
	return io.NopCloser(bytes.NewReader(data[offset:])), nil
}

func (s *Store) Put(ctx context.Context, key cas.Key, r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	s.objects[key] = data
	s.mu.Unlock()
	return nil
}

func (s *Store) FindMissing(ctx context.Context, keys []cas.Key) ([]cas.Key, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var missing []cas.Key
	for _, k := range keys {
		if _, ok := s.objects[k]; !ok && !(k.Kind == cas.KindCAS && k.Digest.IsEmpty()) {
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

func below(key cas.Key, partition string) bool {
	return key.Partition == partition || strings.HasPrefix(key.Partition, partition+"/")
}

func (s *Store) WalkPartition(ctx context.Context, partition string, fn func(cas.StoredObject) error) error {
	s.mu.RLock()
	var objs []cas.StoredObject
	for k, v := range s.objects {
		if below(k, partition) {
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

func (s *Store) DeletePartition(ctx context.Context, partition string) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var freed int64
	for k, v := range s.objects {
		if below(k, partition) {
			freed += int64(len(v))
			delete(s.objects, k)
		}
	}
	return freed, nil
}

// Corrupt replaces the stored bytes of key, for tests of corruption handling.
func (s *Store) Corrupt(key cas.Key, data []byte) {
	s.mu.Lock()
	s.objects[key] = data
	s.mu.Unlock()
}
