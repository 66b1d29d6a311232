package disk

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"sync"

	"github.com/cockroachdb/pebble/v2"

	"github.com/sealcache/sealcache/cas"
)

// getAttempts bounds how often Get follows an object that is replaced while
// it is being opened (its record names bytes that a newer Put has removed).
const getAttempts = 4

// Get opens the object at offset and returns its whole size. Inline objects
// are copied out of Pebble, so the reader holds no database resources; large
// objects are returned as their open *os.File, which stays readable even if
// the object is evicted meanwhile. A file whose size differs from its record
// (torn by a machine crash) is a miss, and its record is deleted.
func (s *Store) Get(ctx context.Context, key cas.Key, offset int64) (io.ReadCloser, int64, error) {
	mkey, err := objectKey(recordMeta, key)
	if err != nil {
		return nil, 0, err
	}
	if offset < 0 {
		return nil, 0, fmt.Errorf("reading %s: negative offset %d", key, offset)
	}
	if err := ctx.Err(); err != nil {
		return nil, 0, err
	}
	if err := s.enter(); err != nil {
		return nil, 0, err
	}
	defer s.lifeMu.RUnlock()
	for range getAttempts {
		rc, size, err := s.openObject(key, mkey)
		if errors.Is(err, errReplaced) {
			continue
		}
		if err != nil {
			return nil, 0, err
		}
		if offset > size {
			rc.Close()
			return nil, 0, fmt.Errorf("reading %s: offset %d is beyond the end of the object (%d bytes)", key, offset, size)
		}
		if err := skip(rc, offset); err != nil {
			rc.Close()
			return nil, 0, fmt.Errorf("reading %s: %w", key, err)
		}
		return rc, size, nil
	}
	return nil, 0, fmt.Errorf("reading %s: the object was replaced %d times while being opened; retry", key, getAttempts)
}

// openObject opens the object's bytes, as its record says: from Pebble for
// an inline object, from its file otherwise.
func (s *Store) openObject(key cas.Key, mkey []byte) (io.ReadCloser, int64, error) {
	m, found, err := s.readMeta(mkey)
	if err != nil {
		return nil, 0, fmt.Errorf("reading %s: %w", key, err)
	}
	if !found {
		return nil, 0, cas.NotFound(key)
	}
	s.noteUse(mkey, m)
	if m.inFile {
		return s.openFile(key, mkey, m)
	}
	v, closer, err := s.db.Get(withRecordType(mkey, recordValue))
	if errors.Is(err, pebble.ErrNotFound) {
		// Replaced by a large object since the record was read, or broken.
		return nil, 0, s.checkBroken(key, mkey, m, "its inline bytes are missing")
	}
	if err != nil {
		return nil, 0, fmt.Errorf("reading %s: %w", key, err)
	}
	// The bytes may be newer than the record read a moment ago. They are
	// whole by themselves (written in one batch), so their own length is
	// the object's size.
	r := newInlineReader(v)
	closer.Close()
	return r, int64(len(r.buf)), nil
}

// errReplaced says the record read a moment ago no longer names the bytes
// found: a concurrent Put or delete won, and the lookup starts again.
var errReplaced = errors.New("object replaced while opening it")

// openFile opens a large object's file and checks it against the record.
func (s *Store) openFile(key cas.Key, mkey []byte, m meta) (io.ReadCloser, int64, error) {
	f, err := os.Open(s.objectFilePath(m.file))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, 0, s.checkBroken(key, mkey, m, "its file is missing")
	}
	if err != nil {
		return nil, 0, fmt.Errorf("reading %s: %w", key, err)
	}
	info, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("reading %s: %w", key, err)
	}
	if info.Size() != m.size {
		f.Close()
		return nil, 0, s.checkBroken(key, mkey, m, fmt.Sprintf("its file has %d bytes, not the %d recorded", info.Size(), m.size))
	}
	return f, m.size, nil
}

// skip moves a fresh reader offset bytes forward.
func skip(rc io.ReadCloser, offset int64) error {
	if offset == 0 {
		return nil
	}
	if seeker, ok := rc.(io.Seeker); ok {
		_, err := seeker.Seek(offset, io.SeekStart)
		return err
	}
	_, err := io.CopyN(io.Discard, rc, offset)
	return err
}

// checkBroken decides what a record whose bytes do not match means. If the
// record changed meanwhile, a concurrent write explains it (errReplaced).
// If not, the object is broken: a machine crash tore it, or someone removed
// or truncated its file. Its record is deleted and the read is a miss, so
// the client uploads it again.
func (s *Store) checkBroken(key cas.Key, mkey []byte, seen meta, why string) error {
	unlock := s.lockObject(mkey)
	cur, found, err := s.readMeta(mkey)
	if err != nil {
		unlock()
		return fmt.Errorf("reading %s: %w", key, err)
	}
	if !found || cur != seen {
		unlock()
		return errReplaced
	}
	if !cur.inFile {
		if _, closer, err := s.db.Get(withRecordType(mkey, recordValue)); err == nil {
			closer.Close()
			unlock()
			return errReplaced // stored between the caller's two lookups
		}
	}
	err = s.deleteLocked(key.Partition, mkey, cur)
	unlock()
	if err != nil {
		return fmt.Errorf("reading %s: removing its broken record: %w", key, err)
	}
	s.log.Warn("disk store: dropped a broken object; clients will upload it again",
		"partition", string(key.Partition), "size", cur.size, "reason", why)
	return cas.NotFound(key)
}

// FindMissing looks keys up in sorted order with one iterator per part of
// the list: each seek starts where the previous one ended, which is several
// times cheaper than independent lookups. Lists longer than
// findMissingChunk are split into parts looked up in parallel.
const findMissingChunk = 2500

// lookupKey is one key of a FindMissing call: its record key and its index
// in the call's list.
type lookupKey struct {
	mkey  []byte
	index int
}

// sortLookupKeys sorts keys by mkey. The keys of one call nearly always
// share a long prefix (record type and partition), which bytes.Compare
// would step over in every comparison, and moving the keys themselves
// costs write barriers: a comparison sort of 10,000 keys took 2-3 ms, a
// quarter of a large FindMissingBlobs. So the 8 bytes after the shared
// prefix (random: hash bytes) are taken as an integer and pointer-free
// (integer, position) pairs are radix-sorted, a byte per pass; keys whose
// 8 bytes tie are then put in order by their whole bytes.
func sortLookupKeys(keys []lookupKey) {
	if len(keys) < 2 {
		return
	}
	common := len(keys[0].mkey)
	for _, k := range keys[1:] {
		n := 0
		for n < common && n < len(k.mkey) && k.mkey[n] == keys[0].mkey[n] {
			n++
		}
		common = n
	}
	type head struct {
		prefix uint64 // big-endian, zero-padded bytes [common, common+8)
		pos    int
	}
	heads, tmp := make([]head, len(keys)), make([]head, len(keys))
	for i := range keys {
		var b [8]byte
		copy(b[:], keys[i].mkey[common:])
		heads[i] = head{binary.BigEndian.Uint64(b[:]), i}
	}
	for shift := 0; shift < 64; shift += 8 {
		var count [257]int
		for _, h := range heads {
			count[int(byte(h.prefix>>shift))+1]++
		}
		if count[int(byte(heads[0].prefix>>shift))+1] == len(heads) {
			continue // every key has the same byte here
		}
		for i := 1; i < len(count); i++ {
			count[i] += count[i-1]
		}
		for _, h := range heads {
			d := byte(h.prefix >> shift)
			tmp[count[d]] = h
			count[d]++
		}
		heads, tmp = tmp, heads
	}
	sorted := make([]lookupKey, len(keys))
	for i, h := range heads {
		sorted[i] = keys[h.pos]
	}
	// Runs of equal prefixes (rare with hashes): order them by their bytes.
	for start := 0; start < len(heads); {
		end := start + 1
		for end < len(heads) && heads[end].prefix == heads[start].prefix {
			end++
		}
		if end-start > 1 {
			slices.SortFunc(sorted[start:end], func(a, b lookupKey) int { return bytes.Compare(a.mkey, b.mkey) })
		}
		start = end
	}
	copy(keys, sorted)
}

// FindMissing returns the keys that are not stored, in input order. Every
// hit counts as a use. It reads only the small records and takes no lock.
func (s *Store) FindMissing(ctx context.Context, keys []cas.Key) ([]cas.Key, error) {
	// Encode every key into one buffer: one allocation for the whole list.
	// The keys of one call nearly always share their partition: it is
	// validated and encoded once.
	buf := make([]byte, 0, len(keys)*64)
	ends := make([]int, len(keys))
	var prefix []byte // record type and partition of partitionOf
	var partitionOf cas.Partition
	for i, k := range keys {
		if prefix == nil || k.Partition != partitionOf {
			if err := validatePartition(k.Partition); err != nil {
				return nil, err
			}
			prefix, partitionOf = appendPartition([]byte{recordMeta}, k.Partition), k.Partition
		}
		var err error
		if buf, err = appendObjectPart(append(buf, prefix...), len(buf), k); err != nil {
			return nil, err
		}
		ends[i] = len(buf)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.lifeMu.RUnlock()
	keyAt := func(i int) []byte {
		start := 0
		if i > 0 {
			start = ends[i-1]
		}
		return buf[start:ends[i]:ends[i]]
	}
	order := make([]lookupKey, len(keys))
	for i := range order {
		order[i] = lookupKey{mkey: keyAt(i), index: i}
	}
	sortLookupKeys(order)

	found := make([]bool, len(keys))
	lookup := func(part []lookupKey) error {
		it, err := s.db.NewIterWithContext(ctx, &pebble.IterOptions{LowerBound: []byte{recordMeta}, UpperBound: []byte{recordMeta + 1}})
		if err != nil {
			return err
		}
		defer it.Close()
		for _, lk := range part {
			i, mkey := lk.index, lk.mkey
			if !it.SeekGE(mkey) || !bytes.Equal(it.Key(), mkey) {
				continue
			}
			v, err := it.ValueAndErr()
			if err != nil {
				return fmt.Errorf("looking up %s: %w", keys[i], err)
			}
			m, err := decodeMeta(v)
			if err != nil {
				return fmt.Errorf("looking up %s: %w", keys[i], err)
			}
			found[i] = true
			s.noteUse(mkey, m)
		}
		return it.Error()
	}
	parts := (len(order) + findMissingChunk - 1) / findMissingChunk
	if parts <= 1 {
		if err := lookup(order); err != nil {
			return nil, err
		}
	} else {
		var wg sync.WaitGroup
		errs := make([]error, parts)
		per := (len(order) + parts - 1) / parts
		for p := range parts {
			wg.Go(func() { errs[p] = lookup(order[p*per : min((p+1)*per, len(order))]) })
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			return nil, err
		}
	}
	var missing []cas.Key
	for i, k := range keys {
		if !found[i] {
			missing = append(missing, k)
		}
	}
	return missing, nil
}
