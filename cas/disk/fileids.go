package disk

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync"

	"github.com/cockroachdb/pebble/v2"
)

// A large object's file exists before any record names it: the upload
// writes it under its final name, and only the commit writes the record.
// A crash in between must not leak the file, and finding it must not take
// a directory walk. So every file id is reserved first with an 'r' record,
// which the commit deletes; Open removes the file of every 'r' record left.
// Reserving fileIDBatch ids per commit keeps that to one small write per
// fileIDBatch large uploads.
const (
	recordReserved byte = 'r' // 'r' FILEID: a file of this id may exist without a record
	fileIDBatch         = 64
)

func reservedKey(id fileID) []byte { return append([]byte{recordReserved}, id[:]...) }

// fileIDs hands out reserved file ids.
type fileIDs struct {
	mu    sync.Mutex
	spare []fileID
}

// take returns a reserved id, reserving a new batch when none is left.
func (s *Store) takeFileID() (fileID, error) {
	p := &s.fileIDs
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.spare) == 0 {
		b := s.db.NewBatch()
		defer b.Close()
		fresh := make([]fileID, fileIDBatch)
		for i := range fresh {
			fresh[i] = newFileID()
			b.Set(reservedKey(fresh[i]), nil, nil)
		}
		if err := s.db.Apply(b, writeOpts); err != nil {
			return fileID{}, fmt.Errorf("reserving file names: %w", err)
		}
		p.spare = fresh
	}
	id := p.spare[len(p.spare)-1]
	p.spare = p.spare[:len(p.spare)-1]
	return id, nil
}

// dropReservedFiles runs at Open, before any upload: the file of every id
// still reserved belongs to an upload that never committed (or to no
// upload at all), so it goes, and so does the reservation.
func (s *Store) dropReservedFiles() error {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{recordReserved}, UpperBound: []byte{recordReserved + 1}})
	if err != nil {
		return err
	}
	defer it.Close()
	b := s.db.NewBatch()
	defer b.Close()
	removed := 0
	for it.First(); it.Valid(); it.Next() {
		key := it.Key()
		if len(key) != 1+fileIDLen {
			continue
		}
		var id fileID
		copy(id[:], key[1:])
		err := os.Remove(s.objectFilePath(id))
		if err == nil {
			removed++
		} else if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("removing the file of an upload that did not finish: %w", err)
		}
		b.Delete(reservedKey(id), nil)
	}
	if err := it.Error(); err != nil {
		return err
	}
	if removed > 0 {
		s.log.Info("disk store: removed files of uploads that did not finish before the last shutdown", "files", removed)
	}
	if b.Empty() {
		return nil
	}
	return s.db.Apply(b, writeOpts)
}
