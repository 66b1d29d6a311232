package disk

import (
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
	if found && m.inFile {
		s.removeObjectFile(key.Partition, m.file)
	}
	return nil
}

// deleteLocked deletes the record m of an object and its inline bytes, and
// subtracts it from the usage counters, in one batch. The caller holds the
// object's lock, and removes the object's file (if any) after releasing it.
func (s *Store) deleteLocked(p cas.Partition, mkey []byte, m meta) error {
	b := s.db.NewBatch()
	defer b.Close()
	b.Delete(mkey, nil)
	if !m.inFile {
		b.Delete(withRecordType(mkey, recordValue), nil)
	}
	d := counts{bytes: -m.size, objects: -1}
	if err := mergeUsage(b, p, d); err != nil {
		return err
	}
	if err := s.db.Apply(b, writeOpts); err != nil {
		return err
	}
	s.applyUsage(p, d)
	return nil
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
// the bytes freed. It is quick whatever the partition holds: the freed
// bytes come from the usage counters, the records go with one range delete
// per record type, and the files with one rename of the partition's
// directory. It then removes the files and compacts the partition's key
// ranges before returning, so the deleted bytes are gone from the disk, not
// just unreachable: deleting an org, or its plain data when it turns on
// encryption, leaves nothing behind to be evicted later.
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

	freed, objects, trash, err := s.unlinkPartition(partition)
	if err != nil {
		return 0, fmt.Errorf("deleting partition %s: %w", partition, err)
	}
	if trash != "" {
		if err := os.RemoveAll(trash); err != nil {
			s.log.Warn("disk store: removing a deleted partition's files failed; they are removed at the next start",
				"partition", string(partition), "error", err.Error())
		}
	}
	// Rewrite the tables holding the partition's records without them.
	// Compact flushes the memtable first if it holds any of them.
	for _, t := range []byte{recordMeta, recordValue} {
		lower, upper := partitionRange(t, partition)
		if err := s.db.Compact(ctx, lower, upper, false); err != nil {
			return freed, fmt.Errorf("deleting partition %s: the objects are gone but compacting their old bytes away failed: %w", partition, err)
		}
	}
	s.log.Info("disk store: deleted partition", "partition", string(partition), "objects", objects, "bytes", freed)
	return freed, nil
}

// unlinkPartition makes a partition's objects unreachable in one step,
// excluding every write of one object meanwhile. It returns the usage freed
// and the trash directory now holding the partition's files ("" if none).
func (s *Store) unlinkPartition(partition cas.Partition) (freed, objects int64, trash string, err error) {
	s.partitionMu.Lock()
	defer s.partitionMu.Unlock()

	b := s.db.NewBatch()
	defer b.Close()
	for _, t := range []byte{recordMeta, recordValue, recordFile, recordUsage} {
		lower, upper := partitionRange(t, partition)
		if err := b.DeleteRange(lower, upper, nil); err != nil {
			return 0, 0, "", err
		}
	}
	// Every write holds partitionMu shared, so the counters are exact here.
	s.usageMu.Lock()
	var changes []struct {
		p cas.Partition
		c counts
	}
	for p, c := range s.usage.byPartition {
		if partition.Contains(p) {
			changes = append(changes, struct {
				p cas.Partition
				c counts
			}{p, c})
		}
	}
	s.usageMu.Unlock()

	if err := s.db.Apply(b, writeOpts); err != nil {
		return 0, 0, "", err
	}
	s.usageMu.Lock()
	for _, ch := range changes {
		s.usage.apply(ch.p, counts{-ch.c.bytes, -ch.c.objects})
		freed += ch.c.bytes
		objects += ch.c.objects
	}
	s.signalRoomLocked()
	s.usageMu.Unlock()

	trash, err = s.moveToTrash(s.partitionFilesDir(partition))
	if errors.Is(err, fs.ErrNotExist) {
		return freed, objects, "", nil
	}
	if err != nil {
		// The records are gone; the files are orphans that the next start
		// after an unclean shutdown cannot find without their 'f' records,
		// so say where they are.
		return freed, objects, "", fmt.Errorf("the objects are deleted but moving their files (%s) aside failed: %w; remove that directory by hand",
			s.partitionFilesDir(partition), err)
	}
	return freed, objects, trash, nil
}
