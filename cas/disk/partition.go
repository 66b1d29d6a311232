package disk

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"github.com/sealcache/sealcache/cas"
)

// WalkPartition calls fn for every object at or below partition, in path
// order. It walks a snapshot of the index: objects stored during the walk
// may or may not be seen.
func (s *Store) WalkPartition(ctx context.Context, partition cas.Partition, fn func(cas.StoredObject) error) error {
	if err := partition.Validate(); err != nil {
		return err
	}
	type item struct {
		rel string
		obj cas.StoredObject
	}
	var items []item
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return errClosed
	}
	s.ix.each(func(e *entry) {
		if partition.Contains(e.key.Partition) {
			items = append(items, item{e.rel, cas.StoredObject{Key: e.key, Size: e.size}})
		}
	})
	s.mu.Unlock()
	slices.SortFunc(items, func(a, b item) int { return cmp.Compare(a.rel, b.rel) })
	for _, it := range items {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fn(it.obj); err != nil {
			return err
		}
	}
	return nil
}

// DeletePartition removes every object at or below partition and returns the
// bytes freed. The partition's directory is moved into tmp/ under the mutex
// (one rename) and removed after it is released, so other requests are not
// held up by a large delete. A Put to the partition that finishes after the
// delete stores its object as usual.
func (s *Store) DeletePartition(ctx context.Context, partition cas.Partition) (int64, error) {
	if err := partition.Validate(); err != nil {
		return 0, err
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	trash, err := os.MkdirTemp(s.tmpDir, "deleted-*")
	if err != nil {
		return 0, fmt.Errorf("deleting partition %s: %w", partition, err)
	}
	defer os.RemoveAll(trash)

	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return 0, errClosed
	}
	var doomed []string
	var freed int64
	s.ix.each(func(e *entry) {
		if partition.Contains(e.key.Partition) {
			doomed = append(doomed, e.rel)
			freed += e.size
		}
	})
	for _, rel := range doomed {
		s.ix.remove(rel)
	}
	src := filepath.Join(s.objectsDir, filepath.FromSlash(string(partition)))
	err = os.Rename(src, filepath.Join(trash, "p"))
	s.mu.Unlock()
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return freed, fmt.Errorf("deleting partition %s: %w", partition, err)
	}
	if err := os.RemoveAll(trash); err != nil {
		s.logger.Warn("removing a deleted partition's files failed; they are removed at the next restart", "partition", partition, "error", err.Error())
	}
	s.logger.Info("deleted partition", "partition", partition, "objects", len(doomed), "bytes", freed)
	return freed, nil
}
