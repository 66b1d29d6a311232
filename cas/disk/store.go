package disk

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/sealcache/sealcache/cas"
)

// TouchInterval is how often at most an access refreshes an object's file
// mtime, which is what orders the LRU after a restart.
const TouchInterval = time.Minute

// Stats is a snapshot of the store for metrics.
type Stats struct {
	UsedBytes int64  // bytes of all indexed objects
	Objects   int64  // number of indexed objects
	Evictions uint64 // objects evicted to make room since Open
}

// Store is a size-limited directory of objects. It implements
// cas.BlobStore and cas.PartitionStore and is safe for concurrent use.
type Store struct {
	dir        string
	objectsDir string
	tmpDir     string
	maxSize    int64
	logger     *slog.Logger
	lockFile   *os.File

	mu        sync.Mutex // guards everything below
	ix        *index
	evictions uint64
	closed    bool
}

var (
	_ cas.BlobStore      = (*Store)(nil)
	_ cas.PartitionStore = (*Store)(nil)
)

var errClosed = errors.New("disk store is closed")

// Open opens (creating if needed) the store in dir, holding at most
// maxSizeBytes of objects. It removes leftover temp files, rebuilds the index
// from the files present and evicts the oldest if they exceed the limit.
// A nil logger discards logs.
func Open(dir string, maxSizeBytes int64, logger *slog.Logger) (*Store, error) {
	if maxSizeBytes <= 0 {
		return nil, fmt.Errorf("disk store size limit is %d bytes; give a positive size", maxSizeBytes)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("creating disk store directory: %w", err)
	}
	lockFile, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	s := &Store{
		dir:        dir,
		objectsDir: filepath.Join(dir, "objects"),
		tmpDir:     filepath.Join(dir, "tmp"),
		maxSize:    maxSizeBytes,
		logger:     logger,
		lockFile:   lockFile,
		ix:         newIndex(),
	}
	if err := s.prepare(); err != nil {
		lockFile.Close()
		return nil, err
	}
	s.mu.Lock()
	s.evictLocked()
	st := s.statsLocked()
	s.mu.Unlock()
	logger.Info("disk store opened", "dir", dir, "objects", st.Objects, "used_bytes", st.UsedBytes, "max_bytes", maxSizeBytes)
	return s, nil
}

// prepare empties tmp/, creates objects/ and loads the index.
func (s *Store) prepare() error {
	if err := os.RemoveAll(s.tmpDir); err != nil {
		return fmt.Errorf("removing leftover temp files in %s: %w", s.tmpDir, err)
	}
	for _, d := range []string{s.tmpDir, s.objectsDir} {
		if err := os.MkdirAll(d, 0o750); err != nil {
			return fmt.Errorf("creating %s: %w", d, err)
		}
	}
	return s.load()
}

// load walks objects/ and indexes every object file, ordered by mtime.
func (s *Store) load() error {
	var found []*entry
	err := filepath.WalkDir(s.objectsDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		rel, err := filepath.Rel(s.objectsDir, path)
		if err != nil {
			return err
		}
		key, perr := parseRelPath(rel)
		if perr == nil && !d.Type().IsRegular() {
			perr = errors.New("not a regular file")
		}
		if perr != nil {
			s.logger.Warn("ignoring unexpected file in disk store", "path", path, "reason", perr.Error())
			return nil
		}
		info, err := d.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		found = append(found, &entry{rel: rel, key: key, size: info.Size(), touched: info.ModTime()})
		return nil
	})
	if err != nil {
		return fmt.Errorf("indexing disk store %s: %w", s.objectsDir, err)
	}
	slices.SortFunc(found, func(a, b *entry) int {
		return cmp.Or(a.touched.Compare(b.touched), cmp.Compare(a.rel, b.rel))
	})
	for _, e := range found {
		s.ix.addFront(e) // newest ends up at the front
	}
	return nil
}

// Close releases the directory lock. Readers already open stay valid.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	return s.lockFile.Close() // closing the file releases the flock
}

// Stats returns current usage figures.
func (s *Store) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.statsLocked()
}

// OrgUsage returns the bytes stored for an org (the first partition
// segment), plain and sealed together, from the index: no disk access.
func (s *Store) OrgUsage(ctx context.Context, org string) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ix.byOrg[org], nil
}

func (s *Store) statsLocked() Stats {
	return Stats{UsedBytes: s.ix.used, Objects: int64(s.ix.len()), Evictions: s.evictions}
}

func (s *Store) abs(rel string) string { return filepath.Join(s.objectsDir, rel) }

func notFound(k cas.Key) error { return fmt.Errorf("%s: %w", k, cas.ErrNotFound) }

// Get opens the object at offset.
func (s *Store) Get(ctx context.Context, key cas.Key, offset int64) (io.ReadCloser, int64, error) {
	rel, err := relPath(key)
	if err != nil {
		return nil, 0, err
	}
	if offset < 0 {
		return nil, 0, fmt.Errorf("reading %s: negative offset %d", key, offset)
	}
	if err := ctx.Err(); err != nil {
		return nil, 0, err
	}
	found, refresh, err := s.markUsed([]string{rel})
	if err != nil {
		return nil, 0, err
	}
	if !found[0] {
		return nil, 0, notFound(key)
	}
	path := s.abs(rel)
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, 0, notFound(key) // evicted or deleted since the index lookup
	}
	if err != nil {
		return nil, 0, fmt.Errorf("reading %s: %w", key, err)
	}
	s.refreshMtimes(refresh)
	info, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("reading %s: %w", key, err)
	}
	if offset > info.Size() {
		f.Close()
		return nil, 0, fmt.Errorf("reading %s: offset %d is beyond the end of the object (%d bytes)", key, offset, info.Size())
	}
	if offset > 0 {
		if _, err := f.Seek(offset, io.SeekStart); err != nil {
			f.Close()
			return nil, 0, fmt.Errorf("reading %s: %w", key, err)
		}
	}
	return f, info.Size(), nil
}

// FindMissing reports the keys not stored; every hit counts as a use, which
// is how Bazel keeps the blobs it references alive.
func (s *Store) FindMissing(ctx context.Context, keys []cas.Key) ([]cas.Key, error) {
	rels := make([]string, len(keys))
	for i, k := range keys {
		rel, err := relPath(k)
		if err != nil {
			return nil, err
		}
		rels[i] = rel
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	found, refresh, err := s.markUsed(rels)
	if err != nil {
		return nil, err
	}
	s.refreshMtimes(refresh)
	var missing []cas.Key
	for i, k := range keys {
		if rels[i] != "" && !found[i] {
			missing = append(missing, k)
		}
	}
	return missing, nil
}

// markUsed moves every indexed rel to the front of the LRU order and returns
// which were found and which files need their mtime refreshed. Empty rels
// are skipped.
func (s *Store) markUsed(rels []string) (found []bool, refresh []string, err error) {
	now := time.Now()
	found = make([]bool, len(rels))
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, nil, errClosed
	}
	for i, rel := range rels {
		if rel == "" {
			continue
		}
		e, needsTouch := s.ix.use(rel, now, TouchInterval)
		found[i] = e != nil
		if needsTouch {
			refresh = append(refresh, rel)
		}
	}
	return found, refresh, nil
}

// refreshMtimes sets the files' mtimes to now. Failures (a file evicted in
// the meantime) only cost LRU precision after a restart.
func (s *Store) refreshMtimes(rels []string) {
	now := time.Now()
	for _, rel := range rels {
		if err := os.Chtimes(s.abs(rel), now, now); err != nil && !errors.Is(err, fs.ErrNotExist) {
			s.logger.Debug("could not refresh object mtime", "path", rel, "error", err.Error())
		}
	}
}

// Delete removes one object; a missing object is not an error.
func (s *Store) Delete(ctx context.Context, key cas.Key) error {
	rel, err := relPath(key)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errClosed
	}
	s.ix.remove(rel)
	if err := os.Remove(s.abs(rel)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("deleting %s: %w", key, err)
	}
	return nil
}

// evictLocked removes least recently used objects until the total fits.
func (s *Store) evictLocked() {
	for s.ix.used > s.maxSize {
		e := s.ix.oldest()
		if e == nil {
			return
		}
		s.ix.remove(e.rel)
		// Unlinking a file that someone is reading is fine: their open file
		// stays readable until they close it.
		if err := os.Remove(s.abs(e.rel)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			s.logger.Warn("evicting object failed; its bytes stay on disk until the next restart", "key", e.key.String(), "error", err.Error())
		}
		s.evictions++
		s.logger.Debug("evicted object", "key", e.key.String(), "size", e.size)
	}
}

// isDiskFull reports whether err means the file system has no room.
func isDiskFull(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}
