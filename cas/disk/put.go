package disk

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"github.com/cockroachdb/pebble/v2"

	"github.com/sealcache/sealcache/cas"
)

// copyBufSize is the chunk in which large uploads are written to their file.
const copyBufSize = 256 << 10

var copyBufs = sync.Pool{New: func() any { b := make([]byte, copyBufSize); return &b }}

// firstInlineBuf is where an upload of unknown size starts buffering.
const firstInlineBuf = 32 << 10

// upload is an object being received: its bytes end up either in memory
// (inline, at most InlineMaxSize) or in a file of their own.
type upload struct {
	s    *Store
	key  cas.Key
	mkey []byte // key's meta record key
	hint int64  // the size the caller announced, or cas.SizeUnknown
	res  reservation

	data []byte   // bytes kept in memory while the object may still be inline
	file *os.File // the object's file once it is known to be large
	id   fileID   // names file
	size int64    // bytes received
	// diskFullRetried is set once a write met a full disk: the first time
	// the store evicts and retries, the second time the Put fails.
	diskFullRetried bool
}

// Put stores the bytes r yields until io.EOF under key. Objects up to
// InlineMaxSize bytes are written inside Pebble with the record that names
// them, in one batch; larger ones go to a new file, and the record naming it
// is written once the file is whole. Either way nothing is visible before
// the whole object is, and a failed Put leaves the old object, if any.
func (s *Store) Put(ctx context.Context, key cas.Key, size int64, r io.Reader) (err error) {
	mkey, err := objectKey(recordMeta, key)
	if err != nil {
		return err
	}
	if size < cas.SizeUnknown {
		return fmt.Errorf("storing %s: size hint %d is neither a size nor unknown (-1)", key, size)
	}
	if size > s.maxSize {
		return s.tooLarge(key, size)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("storing %s: %w", key, err)
	}
	if err := s.enter(); err != nil {
		return err
	}
	defer s.lifeMu.RUnlock()

	up := &upload{s: s, key: key, mkey: mkey, hint: size}
	defer up.discard()
	first := size
	if size == cas.SizeUnknown {
		first = unknownSizeReserveStep
	}
	if err := s.reserve(ctx, &up.res, min(first, s.maxSize)); err != nil {
		return fmt.Errorf("storing %s: %w", key, err)
	}
	if err := up.receive(ctx, r); err != nil {
		return err
	}
	return s.commit(up)
}

// tooLarge is the error for an object that can never fit.
func (s *Store) tooLarge(key cas.Key, size int64) error {
	limit := fmt.Sprintf("the disk store's budget of %d bytes", s.maxSize)
	if s.maxSize < s.opts.MaxSize {
		limit += fmt.Sprintf(" (configured %d, lowered at start-up to fit the file system)", s.opts.MaxSize)
	}
	return fmt.Errorf("storing %s: %w: %d bytes is more than %s; raise the size limit", key, cas.ErrTooLarge, size, limit)
}

// receive reads r to io.EOF, checking the size hint and the context.
func (up *upload) receive(ctx context.Context, r io.Reader) error {
	inlineMax := up.s.opts.InlineMaxSize
	switch {
	case up.hint > inlineMax:
		if err := up.startFile(); err != nil {
			return err
		}
	case up.hint >= 0:
		up.data = make([]byte, 0, up.hint+1) // +1 to notice a byte too many
	default:
		up.data = make([]byte, 0, min(firstInlineBuf, inlineMax+1))
	}
	var bufp *[]byte
	defer func() {
		if bufp != nil {
			copyBufs.Put(bufp)
		}
	}()
	for {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("storing %s: %w", up.key, err)
		}
		var p []byte
		if up.file == nil {
			if len(up.data) == cap(up.data) {
				if int64(len(up.data)) > inlineMax {
					if err := up.spillToFile(ctx); err != nil {
						return err
					}
					continue
				}
				// Grow, but never past one byte more than fits inline.
				grown := make([]byte, len(up.data), min(2*cap(up.data), int(inlineMax)+1))
				copy(grown, up.data)
				up.data = grown
			}
			p = up.data[len(up.data):cap(up.data)]
		} else {
			if bufp == nil {
				bufp = copyBufs.Get().(*[]byte)
			}
			p = *bufp
		}
		n, rerr := r.Read(p)
		if n > 0 {
			if err := up.accept(ctx, p[:n]); err != nil {
				return err
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return fmt.Errorf("storing %s: reading the upload: %w", up.key, rerr)
		}
	}
	if up.hint >= 0 && up.size != up.hint {
		return fmt.Errorf("storing %s: the upload has %d bytes, not the %d announced", up.key, up.size, up.hint)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("storing %s: %w", up.key, err)
	}
	if up.file != nil {
		if err := up.file.Close(); err != nil {
			return up.writeErr(err)
		}
	}
	return nil
}

// accept takes n freshly read bytes: it checks them against the hint and
// the budget, and writes them to the temp file if there is one (in memory
// they are already in place).
func (up *upload) accept(ctx context.Context, p []byte) error {
	up.size += int64(len(p))
	if up.hint >= 0 && up.size > up.hint {
		return fmt.Errorf("storing %s: the upload has more than the %d bytes announced", up.key, up.hint)
	}
	if up.size > up.s.maxSize {
		return up.s.tooLarge(up.key, up.size)
	}
	if up.size > up.res.bytes {
		need := (up.size - up.res.bytes + unknownSizeReserveStep - 1) / unknownSizeReserveStep * unknownSizeReserveStep
		need = min(need, up.s.maxSize-up.res.bytes)
		if err := up.s.growReservation(ctx, &up.res, need, false); err != nil {
			return fmt.Errorf("storing %s: %w", up.key, err)
		}
	}
	if up.file == nil {
		up.data = up.data[:len(up.data)+len(p)]
		return nil
	}
	return up.write(ctx, p)
}

// startFile creates the large object's file under its final name, with a
// reserved id (see fileids.go). No record names the file until commit,
// so no reader can see it before it is whole.
func (up *upload) startFile() error {
	s := up.s
	id, err := s.takeFileID()
	if err != nil {
		return fmt.Errorf("storing %s: %w", up.key, err)
	}
	up.id = id
	path := s.objectFilePath(up.id)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o640)
	if errors.Is(err, fs.ErrNotExist) {
		if err = os.MkdirAll(filepath.Dir(path), 0o750); err == nil {
			f, err = os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o640)
		}
	}
	if err != nil {
		s.db.Delete(reservedKey(up.id), writeOpts)
		return up.writeErr(err)
	}
	up.file = f
	return nil
}

// spillToFile moves what an upload of unknown size has buffered so far into
// a file, once it has grown past InlineMaxSize.
func (up *upload) spillToFile(ctx context.Context) error {
	if err := up.startFile(); err != nil {
		return err
	}
	data := up.data
	up.data = nil
	return up.write(ctx, data)
}

// write appends p to the object's file. On a full disk it evicts and tries once
// more before failing with ErrFull.
func (up *upload) write(ctx context.Context, p []byte) error {
	n, err := up.file.Write(p)
	if err != nil && isDiskFull(err) && !up.diskFullRetried {
		up.diskFullRetried = true
		still := int64(len(p) - n)
		if up.hint > up.size {
			still += up.hint - up.size
		}
		up.s.makeDiskRoom(ctx, still)
		_, err = up.file.Write(p[n:])
	}
	if err != nil {
		return up.writeErr(err)
	}
	return nil
}

func (up *upload) writeErr(err error) error {
	if isDiskFull(err) {
		return fmt.Errorf("storing %s: %w: the disk is full even after evicting (%v); lower the store's size limit or free disk space", up.key, cas.ErrFull, err)
	}
	return fmt.Errorf("storing %s: writing its file: %w", up.key, err)
}

// discard releases what a finished or failed upload still holds; the file
// of an upload that did not commit is removed.
func (up *upload) discard() {
	if up.file != nil {
		up.file.Close()
		if err := os.Remove(up.s.objectFilePath(up.id)); err == nil || errors.Is(err, fs.ErrNotExist) {
			up.s.db.Delete(reservedKey(up.id), writeOpts)
		} // else the reservation stays, and the next Open removes the file
	}
	up.s.release(&up.res)
}

// commit publishes a received object in one batch: its record, which
// makes it visible; its bytes (inline) or, for a file that is whole and
// closed, the 'f' record that lists the file under its partition and the
// end of the id's reservation; the removal of what it replaces; and the
// usage change.
func (s *Store) commit(up *upload) error {
	unlock := s.lockObject(up.mkey)
	defer unlock()
	if err := s.commitLocked(up); err != nil {
		return fmt.Errorf("storing %s: %w", up.key, err)
	}
	return nil
}

// commitLocked is commit under the object's lock.
func (s *Store) commitLocked(up *upload) error {
	old, had, err := s.readMeta(up.mkey)
	if err != nil {
		return err
	}
	p := up.key.Partition
	b := s.db.NewBatch()
	defer b.Close()
	m := meta{size: up.size, accessed: s.opts.now().UnixNano()}
	if up.file != nil {
		m.inFile, m.file = true, up.id
		b.Set(fileKey(p, up.id), up.mkey, nil)
		b.Delete(reservedKey(up.id), nil)
	} else {
		b.Set(withRecordType(up.mkey, recordValue), up.data, nil)
	}
	b.Set(up.mkey, m.encode(), nil)
	switch {
	case had && old.inFile:
		s.dropFile(b, p, old.file)
	case had && m.inFile:
		b.Delete(withRecordType(up.mkey, recordValue), nil)
	}
	d := usageChange(m, old, had)
	if err := mergeUsage(b, p, d); err != nil {
		return err
	}
	if err := s.db.Apply(b, writeOpts); err != nil {
		return err
	}
	s.commitUsage(p, d, &up.res)
	up.file = nil // published: discard must not remove it
	return nil
}

// dropFile removes a large object's file that no record will name once b
// is applied (a Put replaced its object, or no record names it any more)
// and adds the delete of its 'f' record to b. It runs before b is applied
// (like addDelete): if b then fails, a record that still names the file
// reads as a miss. If the file cannot be removed, its 'f' record stays, so
// the sweep after the next unclean shutdown tries again.
func (s *Store) dropFile(b *pebble.Batch, p cas.Partition, id fileID) {
	if err := os.Remove(s.objectFilePath(id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		s.log.Warn("disk store: removing an object's file failed; it is tried again after the next unclean restart",
			"partition", string(p), "file", id.String(), "error", err.Error())
		return
	}
	b.Delete(fileKey(p, id), nil)
}

// usageChange is what replacing old (if had) by m changes in a partition.
func usageChange(m, old meta, had bool) counts {
	if had {
		return counts{bytes: m.size - old.size}
	}
	return counts{bytes: m.size, objects: 1}
}

// lockObject takes the locks a write of one object needs and returns the
// function that releases them.
func (s *Store) lockObject(mkey []byte) (unlock func()) {
	s.partitionMu.RLock()
	mu := &s.stripes[stripeOf(mkey)]
	mu.Lock()
	return func() {
		mu.Unlock()
		s.partitionMu.RUnlock()
	}
}

// readMeta reads an object's record; found is false for a miss.
func (s *Store) readMeta(mkey []byte) (m meta, found bool, err error) {
	v, closer, err := s.db.Get(mkey)
	if errors.Is(err, pebble.ErrNotFound) {
		return meta{}, false, nil
	}
	if err != nil {
		return meta{}, false, fmt.Errorf("reading the object's record: %w", err)
	}
	defer closer.Close()
	m, err = decodeMeta(v)
	if err != nil {
		return meta{}, false, err
	}
	return m, true, nil
}
