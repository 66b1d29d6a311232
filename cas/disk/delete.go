package disk

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/cockroachdb/pebble/v2"

	"github.com/sealcache/sealcache/cas"
)

// Delete removes one object; a missing object is not an error.
func (s *Store) Delete(ctx context.Context, key cas.Key) error {
	mkey, err := objectKey(recordMeta, key)
	if err != nil {
		return err
	}
	if err := s.enter(); err != nil {
		return err
	}
	defer s.lifeMu.RUnlock()
	unlock := s.lockObject(mkey)
	m, found, err := s.readMeta(mkey)
	if err == nil && found {
		err = s.deleteLocked(key.Partition, mkey, m)
	}
	unlock()
	if err != nil {
		return fmt.Errorf("deleting %s: %w", key, err)
	}
	return nil
}

// deleteLocked deletes the object whose record is m. The caller holds the
// object's lock.
func (s *Store) deleteLocked(p cas.Partition, mkey []byte, m meta) error {
	b := s.db.NewBatch()
	defer b.Close()
	d, err := s.addDelete(b, p, mkey, m)
	if err != nil {
		return err
	}
	if err := s.db.Apply(b, writeOpts); err != nil {
		return err
	}
	s.applyUsage(p, d)
	return nil
}

// addDelete removes the file of the object whose record is m, if it has
// one, and adds to b the deletes of its records (the record, its inline
// bytes or its 'f' record) and its usage change, which it returns. The
// caller holds the object's lock and applies b.
//
// The file goes first: a crash before b is applied leaves a record naming
// a missing file, which the first Get finds and drops (a miss), never a
// file that no record names.
func (s *Store) addDelete(b *pebble.Batch, p cas.Partition, mkey []byte, m meta) (counts, error) {
	if m.inFile {
		if err := os.Remove(s.objectFilePath(m.file)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return counts{}, fmt.Errorf("removing the object's file: %w", err)
		}
		b.Delete(fileKey(p, m.file), nil)
	} else {
		b.Delete(withRecordType(mkey, recordValue), nil)
	}
	b.Delete(mkey, nil)
	d := counts{bytes: -m.size, objects: -1}
	return d, mergeUsage(b, p, d)
}

// WalkPartition calls fn for every object at or below partition, in key
// order, from a consistent view of the database: objects stored during the
// walk are not seen.
func (s *Store) WalkPartition(ctx context.Context, partition cas.Partition, fn func(cas.StoredObject) error) error {
	if err := partition.Validate(); err != nil {
		return err
	}
	if err := s.enter(); err != nil {
		return err
	}
	defer s.lifeMu.RUnlock()
	lower, upper := partitionRange(recordMeta, partition)
	it, err := s.db.NewIterWithContext(ctx, &pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return fmt.Errorf("walking partition %s: %w", partition, err)
	}
	defer it.Close()
	for it.First(); it.Valid(); it.Next() {
		if err := ctx.Err(); err != nil {
			return err
		}
		key, err := decodeObjectKey(it.Key())
		if err != nil {
			return fmt.Errorf("walking partition %s: %w", partition, err)
		}
		v, err := it.ValueAndErr()
		if err != nil {
			return fmt.Errorf("walking partition %s: %w", partition, err)
		}
		m, err := decodeMeta(v)
		if err != nil {
			return fmt.Errorf("walking partition %s: %w", partition, err)
		}
		if err := fn(cas.StoredObject{Key: key, Size: m.size}); err != nil {
			return err
		}
	}
	return it.Error()
}

// DeletePartition removes every object at or below partition and returns
// the bytes freed. The objects disappear at once, whatever the partition
// holds: the freed bytes come from the usage counters and the records go
// with one range delete per record type. Then the partition's files are
// removed (found by their 'f' records) and its key ranges compacted before
// DeletePartition returns, so the deleted bytes are gone from the disk, not
// just unreachable: deleting an org, or its plain data when it turns on
// encryption, leaves nothing behind to be evicted later. A Put into the
// partition that was receiving its bytes meanwhile stores its object as
// usual when it finishes.
func (s *Store) DeletePartition(ctx context.Context, partition cas.Partition) (int64, error) {
	if err := partition.Validate(); err != nil {
		return 0, err
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if err := s.enter(); err != nil {
		return 0, err
	}
	defer s.lifeMu.RUnlock()

	freed, objects, err := s.unlinkPartition(partition)
	if err != nil {
		return 0, fmt.Errorf("deleting partition %s: %w", partition, err)
	}
	lower, upper := partitionRange(recordFile, partition)
	files, err := s.removeUnreferencedFiles(lower, upper)
	if err != nil {
		return freed, fmt.Errorf("deleting partition %s: the objects are gone but removing their files failed: %w; the next start after an unclean shutdown tries again", partition, err)
	}
	// Rewrite the tables holding the partition's records without them.
	// Compact flushes the memtable first if it holds any of them.
	for _, t := range []byte{recordMeta, recordValue, recordFile} {
		lower, upper := partitionRange(t, partition)
		if err := s.db.Compact(ctx, lower, upper, false); err != nil {
			return freed, fmt.Errorf("deleting partition %s: the objects are gone but compacting their old bytes away failed: %w", partition, err)
		}
	}
	s.log.Info("disk store: deleted partition", "partition", string(partition), "objects", objects, "files", files, "bytes", freed)
	return freed, nil
}

// unlinkPartition makes a partition's objects unreachable in one step,
// excluding every write of one object meanwhile, and returns the usage
// freed. The 'f' records stay: they name the files to remove next.
func (s *Store) unlinkPartition(partition cas.Partition) (freed, objects int64, err error) {
	s.partitionMu.Lock()
	defer s.partitionMu.Unlock()

	b := s.db.NewBatch()
	defer b.Close()
	for _, t := range []byte{recordMeta, recordValue, recordUsage} {
		lower, upper := partitionRange(t, partition)
		if err := b.DeleteRange(lower, upper, nil); err != nil {
			return 0, 0, err
		}
	}
	if err := s.db.Apply(b, writeOpts); err != nil {
		return 0, 0, err
	}
	// Every write holds partitionMu shared, so the counters are exact here.
	s.usageMu.Lock()
	defer s.usageMu.Unlock()
	var gone []cas.Partition
	for p, c := range s.usage.byPartition {
		if partition.Contains(p) {
			gone = append(gone, p)
			freed += c.bytes
			objects += c.objects
		}
	}
	for _, p := range gone {
		c := s.usage.byPartition[p]
		s.usage.apply(p, counts{-c.bytes, -c.objects})
	}
	s.signalRoomLocked()
	return freed, objects, nil
}

// fileDeletesPerBatch bounds the 'f' record deletes removeUnreferencedFiles
// gathers in one batch.
const fileDeletesPerBatch = 1024

// removeUnreferencedFiles removes the files whose 'f' records lie in
// [lower, upper) and that no object record names. Uploads in flight have
// no 'f' record yet (commit writes it with the object's record), so
// they are never touched. Each check holds the object's lock; the deletes
// of the 'f' records are written fileDeletesPerBatch at a time, and
// whatever stops the walk, those of the files already removed. It returns
// how many files it removed.
func (s *Store) removeUnreferencedFiles(lower, upper []byte) (int, error) {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return 0, err
	}
	defer it.Close()
	b := s.db.NewBatch()
	defer b.Close()
	flush := func() error {
		if b.Empty() {
			return nil
		}
		err := s.db.Apply(b, writeOpts)
		b.Reset()
		return err
	}
	removed := 0
	for it.First(); it.Valid(); it.Next() {
		p, rest, err := splitKey(it.Key())
		if err != nil || len(rest) != fileIDLen {
			continue
		}
		var id fileID
		copy(id[:], rest)
		mkey := bytes.Clone(it.Value())
		unlock := s.lockObject(mkey)
		m, found, err := s.readMeta(mkey)
		if err == nil && !(found && m.inFile && m.file == id) {
			s.dropFile(b, p, id)
			removed++
		}
		unlock()
		if err != nil {
			return removed, errors.Join(err, flush())
		}
		if b.Count() >= fileDeletesPerBatch {
			if err := flush(); err != nil {
				return removed, err
			}
		}
	}
	return removed, errors.Join(it.Error(), flush())
}
