package disk

import (
	"strings"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// Durability. A Put that returned must survive the process being killed;
// surviving a machine crash is not required (a cache that loses its newest
// objects only costs a rebuild), and an fsync per object would cost more
// than the object.
//
// Pebble offers NoSync, which returns once the batch is queued in Pebble's
// own log buffer, still inside the process, and Sync, which waits until the
// log is written and fsynced. The store commits with writeOpts (Sync), and
// the log files Pebble writes through pebbleFS ignore the sync calls made
// after each commit: Apply then returns once the batch is in the operating
// system (a SIGKILL cannot lose it), without an fsync. A log is still
// fsynced when Pebble closes it (rotation, shutdown), so older logs are
// exactly as safe against machine crashes as under NoSync.
var writeOpts = pebble.Sync

// walSuffix ends the names of Pebble's write-ahead log files.
const walSuffix = ".log"

// pebbleFS is the file system Pebble runs on. It wraps vfs.Default with:
//   - OnDiskFull, which releases the ballast when a write meets a full disk
//     and retries it once;
//   - log files whose sync after each commit writes but does not fsync
//     (see writeOpts);
//   - removal instead of archiving (see pebbleArchiveDir).
type pebbleFS struct{ vfs.FS }

func newPebbleFS(onDiskFull func()) pebbleFS {
	return pebbleFS{vfs.OnDiskFull(vfs.Default, onDiskFull)}
}

func isWAL(name string) bool { return strings.HasSuffix(name, walSuffix) }

func (fs pebbleFS) Create(name string, category vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.Create(name, category)
	if err != nil || !isWAL(name) {
		return f, err
	}
	return walFile{f}, nil
}

func (fs pebbleFS) ReuseForWrite(oldname, newname string, category vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.ReuseForWrite(oldname, newname, category)
	if err != nil || !isWAL(newname) {
		return f, err
	}
	return walFile{f}, nil
}

// Pebble recycles obsolete write-ahead logs: a recycled log keeps the old
// bytes, those of deleted partitions among them, until they are overwritten.
// Recycling is off when the Cleaner needs file contents, as ArchiveCleaner
// does; ArchiveCleaner then renames obsolete files into an "archive"
// directory, and pebbleFS turns exactly that rename into a removal.
// (Pebble's FileType is internal, so a Cleaner of our own could not be
// written.)
const pebbleArchiveDir = "archive"

func (fs pebbleFS) Rename(oldname, newname string) error {
	if fs.PathBase(fs.PathDir(newname)) == pebbleArchiveDir {
		return fs.FS.Remove(oldname)
	}
	return fs.FS.Rename(oldname, newname)
}

// walFile is a write-ahead log whose per-commit syncs only make sure the
// data was written (Pebble writes before it syncs), and whose Close fsyncs.
type walFile struct{ vfs.File }

func (f walFile) Sync() error                       { return nil }
func (f walFile) SyncData() error                   { return nil }
func (f walFile) SyncTo(length int64) (bool, error) { return true, nil }
func (f walFile) Close() error {
	err := f.File.Sync()
	if cerr := f.File.Close(); err == nil {
		err = cerr
	}
	return err
}
