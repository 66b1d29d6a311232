package disk

import (
	"log/slog"
	"time"
)

// Options configures a Store. Only MaxSize is required; every other field
// has a default chosen for a dedicated cache disk.
type Options struct {
	// MaxSize is the budget for object bytes (plain and sealed, inline and
	// in files). Open clamps it to what the file system can hold and logs
	// the clamp. Pebble's own overhead (write-ahead log, tables waiting for
	// compaction) comes on top and is covered by FreeSpaceMargin.
	MaxSize int64

	// Logger receives the store's logs; nil discards them.
	Logger *slog.Logger

	// OnEvict, when set, is called after each eviction round with the
	// number of objects and bytes it evicted to stay under MaxSize (not
	// for deletes). The server sums these into one log line now and then.
	OnEvict func(objects int, bytes int64)

	// InlineMaxSize is the largest object kept inside Pebble; larger ones
	// get a file each. Default DefaultInlineMaxSize.
	InlineMaxSize int64

	// CacheSize is Pebble's block cache. Default: MaxSize/64, between
	// 8 MiB and 512 MiB.
	CacheSize int64

	// MemTableSize is the size of one Pebble memtable (and so of one
	// write-ahead log segment). Default: MaxSize/64, between 2 MiB and
	// 64 MiB.
	MemTableSize int64

	// BallastSize is the file kept in reserve so Pebble can still write
	// when the disk fills up (see the package doc). Default: MaxSize/100,
	// between 1 MiB and 1 GiB; negative disables the ballast.
	BallastSize int64

	// FreeSpaceMargin is what the budget clamp at Open leaves free on the
	// file system. Default: 5% of the file system, and at least four
	// memtables.
	FreeSpaceMargin int64

	// Tests replace these; zero values mean the real clock, a random seed
	// and the real file system figures.
	now     func() time.Time
	seed    uint64
	diskUse func(dir string) (diskSpace, error)
}

// DefaultInlineMaxSize is the default boundary between objects kept inside
// Pebble and objects in files of their own. BenchmarkMixedLoad picked it:
// see the package doc for the figures.
const DefaultInlineMaxSize = 64 << 10

// Bounds of the derived defaults.
const (
	minCacheSize    = 8 << 20
	maxCacheSize    = 512 << 20
	minMemTableSize = 2 << 20
	maxMemTableSize = 64 << 20
	minBallastSize  = 1 << 20
	maxBallastSize  = 1 << 30
	// defaultMarginPercent of the file system stays free after the clamp.
	defaultMarginPercent = 5
	// memTablesInMargin memtables' worth of space (write-ahead logs being
	// flushed) are always part of the margin.
	memTablesInMargin = 4
)

func clampInt64(v, lo, hi int64) int64 { return min(max(v, lo), hi) }

// withDefaults fills in every field that was left zero.
func (o Options) withDefaults() Options {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.InlineMaxSize <= 0 {
		o.InlineMaxSize = DefaultInlineMaxSize
	}
	if o.CacheSize <= 0 {
		o.CacheSize = clampInt64(o.MaxSize/64, minCacheSize, maxCacheSize)
	}
	if o.MemTableSize <= 0 {
		o.MemTableSize = clampInt64(o.MaxSize/64, minMemTableSize, maxMemTableSize)
	}
	if o.BallastSize == 0 {
		o.BallastSize = clampInt64(o.MaxSize/100, minBallastSize, maxBallastSize)
	}
	if o.BallastSize < 0 {
		o.BallastSize = 0
	}
	if o.now == nil {
		o.now = time.Now
	}
	if o.diskUse == nil {
		o.diskUse = statDisk
	}
	return o
}

// margin is what the clamp keeps free on a file system of fsSize bytes.
func (o Options) margin(fsSize int64) int64 {
	if o.FreeSpaceMargin > 0 {
		return o.FreeSpaceMargin
	}
	return max(fsSize*defaultMarginPercent/100, memTablesInMargin*o.MemTableSize)
}
