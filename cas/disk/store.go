package disk

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/sstable"

	"github.com/sealcache/sealcache/cas"
)

// lockStripes is the number of per-object locks. Writers of one object (Put,
// Delete, eviction, access-time updates) take its stripe so that reading
// the old record and writing the new one is one step; readers take none.
const lockStripes = 256

// Store is a size-limited local store of objects: small ones inside Pebble,
// large ones in files. It implements cas.Backend and is safe for concurrent
// use.
type Store struct {
	dir, largeDir, trashDir string

	opts     Options
	log      *slog.Logger
	onEvict  func(objects int, bytes int64)
	lockFile *os.File
	db       *pebble.DB
	ballast  *ballast

	// lifeMu is held shared by every operation and exclusively by Close,
	// so Close waits for operations in progress and none starts after it.
	lifeMu sync.RWMutex
	closed atomic.Bool

	// partitionMu is held shared by every write of one object and
	// exclusively by DeletePartition, whose range deletes and counter
	// resets must not interleave with a write to the same partition.
	partitionMu sync.RWMutex
	stripes     [lockStripes]sync.Mutex

	usageMu   sync.Mutex // guards usage, maxSize, roomFreed
	usage     *usage
	maxSize   int64         // the budget after the clamp at Open
	roomFreed chan struct{} // closed when reservations shrink; Puts waiting for room watch it

	evictMu   sync.Mutex // one evictor at a time; guards rng
	rng       *rand.Rand
	evictions atomic.Uint64

	touches touchLog

	fileIDs fileIDs // reserved ids for large objects' files

	wake    chan struct{} // asks the maintenance loop to run now
	closing chan struct{}
	bg      sync.WaitGroup
}

var _ cas.Backend = (*Store)(nil)

var errClosed = errors.New("disk store is closed")

// Open opens, creating it if needed, the store in dir. It holds a lock on
// dir until Close: only one Store (in one process) may use a directory.
//
// Open is quick whatever the store holds: it reads one usage record per
// partition, not the objects. It clamps opts.MaxSize to what the file system
// can hold, removes the previous version's layout, and succeeds on a full
// disk (see the package doc); eviction down to the budget then runs in the
// background.
func Open(dir string, opts Options) (*Store, error) {
	if opts.MaxSize <= 0 {
		return nil, fmt.Errorf("disk store size limit is %d bytes; give a positive size", opts.MaxSize)
	}
	opts = opts.withDefaults()
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("creating disk store directory: %w", err)
	}
	lockFile, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	s := &Store{
		dir:       dir,
		largeDir:  filepath.Join(dir, largeName),
		trashDir:  filepath.Join(dir, trashName),
		opts:      opts,
		log:       opts.Logger,
		onEvict:   opts.OnEvict,
		lockFile:  lockFile,
		maxSize:   opts.MaxSize,
		roomFreed: make(chan struct{}),
		wake:      make(chan struct{}, 1),
		closing:   make(chan struct{}),
	}
	seed := opts.seed
	if seed == 0 {
		seed = rand.Uint64()
	}
	s.rng = rand.New(rand.NewPCG(seed, seed^0x5bd1e995))
	s.touches.init()
	s.touches.full = s.wakeMaintenance
	cleanShutdown, err := s.open()
	if err != nil {
		if s.db != nil {
			s.db.Close()
		}
		lockFile.Close()
		return nil, err
	}
	s.bg.Add(1)
	go s.maintain(cleanShutdown)
	st := s.Stats()
	s.log.Info("disk store opened", "dir", dir, "objects", st.Objects, "used_bytes", st.UsedBytes,
		"max_bytes", st.MaxBytes, "inline_max_bytes", opts.InlineMaxSize, "clean_shutdown", cleanShutdown)
	return s, nil
}

// open prepares the directory, opens Pebble and loads the counters. It
// reports whether the store was closed cleanly last time.
func (s *Store) open() (cleanShutdown bool, err error) {
	if err := emptyDir(s.trashDir); err != nil {
		return false, fmt.Errorf("emptying %s: %w", s.trashDir, err)
	}
	if err := s.removeOldLayout(); err != nil {
		return false, err
	}
	if err := emptyDir(s.trashDir); err != nil {
		return false, fmt.Errorf("emptying %s: %w", s.trashDir, err)
	}
	if err := os.MkdirAll(s.largeDir, 0o750); err != nil {
		return false, fmt.Errorf("creating %s: %w", s.largeDir, err)
	}
	cleanPath := filepath.Join(s.dir, cleanName)
	err = os.Remove(cleanPath) // it was there if the last Close was clean
	cleanShutdown = err == nil
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, fmt.Errorf("removing %s: %w", cleanPath, err)
	}
	_, dbErr := os.Stat(filepath.Join(s.dir, pebbleName))
	if errors.Is(dbErr, fs.ErrNotExist) {
		cleanShutdown = true // a new store has nothing to recover
	}

	s.ballast = newBallast(filepath.Join(s.dir, ballastName), s.opts.BallastSize)
	space, spaceErr := s.opts.diskUse(s.dir)
	if spaceErr == nil && space.available < memTablesInMargin*s.opts.MemTableSize {
		// Pebble writes a log, a manifest and an options file while it
		// opens; give it the ballast's room rather than fail.
		if freed := s.ballast.release(); freed > 0 {
			s.log.Warn("disk store: the disk is nearly full at start-up; released the ballast so the store can open",
				"available_bytes", space.available, "ballast_bytes", freed)
		}
	}
	db, err := pebble.Open(filepath.Join(s.dir, pebbleName), s.pebbleOptions())
	if err != nil {
		return false, fmt.Errorf("opening the disk store database in %s: %w", s.dir, err)
	}
	s.db = db
	if err := s.dropReservedFiles(); err != nil {
		return false, err
	}
	if s.usage, err = loadUsage(db); err != nil {
		return false, err
	}
	s.clampBudget()
	return cleanShutdown, nil
}

// clampBudget lowers the budget to what the file system can hold: its free
// space plus what the store already holds (objects and ballast), less the
// margin. A budget below the store's contents makes the maintenance loop
// evict down to it.
func (s *Store) clampBudget() {
	space, err := s.opts.diskUse(s.dir)
	if err != nil {
		s.log.Warn("disk store: cannot read the file system's size; keeping the configured budget", "error", err.Error())
		return
	}
	used := s.usage.total.bytes
	margin := s.opts.margin(space.total)
	fits := max(space.available+used+s.ballast.bytesHeld()-margin, 0)
	if s.opts.MaxSize <= fits {
		return
	}
	s.maxSize = fits
	s.log.Warn("disk store: the configured size does not fit on the file system; using a smaller budget",
		"configured_bytes", s.opts.MaxSize, "budget_bytes", fits, "available_bytes", space.available,
		"store_bytes", used, "margin_bytes", margin)
}

// pebbleOptions tunes Pebble for values of up to InlineMaxSize bytes written
// by many clients at once.
func (s *Store) pebbleOptions() *pebble.Options {
	o := &pebble.Options{
		FS:                          newPebbleFS(s.onPebbleDiskFull),
		CacheSize:                   s.opts.CacheSize,
		MemTableSize:                uint64(s.opts.MemTableSize),
		MemTableStopWritesThreshold: 4,
		L0CompactionThreshold:       4,
		L0StopWritesThreshold:       64,
		Merger:                      usageMerger,
		FormatMajorVersion:          pebble.FormatNewest,
		Logger:                      pebbleLogger{s.log},
		// Obsolete files are removed, logs are not recycled (see pebbleFS).
		Cleaner: pebble.ArchiveCleaner{},
	}
	for i := range o.Levels {
		l := &o.Levels[i]
		l.BlockSize = 32 << 10
		l.FilterPolicy = bloom.FilterPolicy(10)
		// Cache blobs are mostly compressed already (archives, images,
		// sealed data), and the CPU is better spent serving requests.
		l.Compression = func() *sstable.CompressionProfile { return sstable.NoCompression }
	}
	o.EventListener = &pebble.EventListener{
		BackgroundError: func(err error) {
			s.log.Warn("disk store: background database error", "error", err.Error())
			if isDiskFull(err) {
				s.wakeMaintenance()
			}
		},
	}
	o.EnsureDefaults()
	return o
}

// onPebbleDiskFull runs when Pebble meets ENOSPC; Pebble retries once after.
func (s *Store) onPebbleDiskFull() {
	if freed := s.ballast.release(); freed > 0 {
		s.log.Warn("disk store: the disk is full; released the ballast so the database can keep writing while objects are evicted",
			"ballast_bytes", freed)
	}
	s.wakeMaintenance()
}

// pebbleLogger sends Pebble's logs to the store's logger.
type pebbleLogger struct{ log *slog.Logger }

func (l pebbleLogger) Infof(format string, args ...any) {
	l.log.Debug("pebble: " + fmt.Sprintf(format, args...))
}

func (l pebbleLogger) Errorf(format string, args ...any) {
	l.log.Error("pebble: " + fmt.Sprintf(format, args...))
}

// Fatalf is what Pebble calls when it cannot go on (a failed log write
// leaves its commit pipeline broken). Exiting keeps every acknowledged
// write: they are in the log, and the next Open replays it.
func (l pebbleLogger) Fatalf(format string, args ...any) {
	l.log.Error("pebble: fatal: " + fmt.Sprintf(format, args...))
	os.Exit(1)
}

// Close waits for operations in progress, writes pending access times and
// closes the database and the directory lock. Readers already returned by
// Get stay valid.
func (s *Store) Close() error {
	if !s.closed.CompareAndSwap(false, true) {
		return nil
	}
	close(s.closing)
	s.bg.Wait()
	s.lifeMu.Lock()
	defer s.lifeMu.Unlock()
	s.flushTouches()
	err := s.db.Close()
	if err == nil {
		if f, cerr := os.Create(filepath.Join(s.dir, cleanName)); cerr == nil {
			f.Close()
		}
	}
	if lerr := s.lockFile.Close(); err == nil {
		err = lerr
	}
	if err != nil {
		return fmt.Errorf("closing the disk store: %w", err)
	}
	return nil
}

// enter starts an operation; the caller must call s.lifeMu.RUnlock when it
// ends. It fails once Close has begun.
func (s *Store) enter() error {
	s.lifeMu.RLock()
	if s.closed.Load() {
		s.lifeMu.RUnlock()
		return errClosed
	}
	return nil
}

// wakeMaintenance asks the maintenance loop to run soon.
func (s *Store) wakeMaintenance() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// maintenanceInterval is how often the maintenance loop runs unasked: it
// writes access times, evicts down to the budget, remakes the ballast.
const maintenanceInterval = 10 * time.Second

// maintain runs background work until Close.
func (s *Store) maintain(cleanShutdown bool) {
	defer s.bg.Done()
	if !cleanShutdown {
		s.removeOrphanFiles()
	}
	t := time.NewTicker(maintenanceInterval)
	defer t.Stop()
	for {
		s.maintainOnce()
		select {
		case <-s.closing:
			return
		case <-t.C:
		case <-s.wake:
		}
	}
}

func (s *Store) maintainOnce() {
	if err := s.enter(); err != nil {
		return
	}
	defer s.lifeMu.RUnlock()
	s.flushTouches()
	s.evictToBudget()
	s.relieveFullDisk()
	s.restoreBallast()
}
