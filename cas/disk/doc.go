// Package disk is the local storage backend: a size-limited store of
// objects in one directory, with least-recently-used eviction. It
// implements cas.Backend.
//
//	s, err := disk.Open(dir, disk.Options{MaxSize: 500 << 30, Logger: log})
//
// Small objects live inside a Pebble database, next to the record that
// names them; large objects get a file each. Pebble also holds every
// object's small record (size, where its bytes are, last access), the usage
// counters and a reverse index of the files, so nothing is kept in memory
// per object and Open reads nothing per object.
//
// # Files
//
//	DIR/LOCK        flock held while a Store is open (one process per directory)
//	DIR/pebble/     the database: records, inline objects, usage counters
//	DIR/large/XX/ID one file per large object; ID is random per Put, XX its first byte
//	DIR/ballast     disk space held in reserve for a full disk
//	DIR/CLEAN       present while the store is closed cleanly
//	DIR/trash/      directories being removed
//
// The record layout is described in keys.go and meta.go. Keys start with a
// record type and the partition, so the records of a partition and of every
// partition below it are one contiguous key range per type ("org1" holds
// "org1/kX" but not "org10").
//
// # Writing
//
// A Put reserves its size in the budget first (see Budget), then reads its
// reader to io.EOF, checking the size hint and the context as it goes.
// Objects of at most Options.InlineMaxSize bytes (DefaultInlineMaxSize) are
// buffered in memory and written as one Pebble batch: record, bytes and
// usage change together, so a reader sees all of it or nothing. Larger
// objects are written to a new file under their final name, but no record
// names that file until it is whole and closed; then one batch writes the
// record, the usage change and an 'f' record listing the file under its
// partition. File ids are reserved ('r' records) 64 at a time before any
// such file exists, and Open removes the file of every reservation left,
// so a crash in the middle of an upload leaks nothing and no directory is
// ever walked. A failed or cancelled Put removes its file; the old object,
// if any, stays.
//
// Deleting an object (Delete, eviction, a replacing Put, a broken object)
// removes its file first and then its records in one batch: a crash in
// between leaves a record naming a missing file, which reads as a miss and
// is dropped, never a file that nothing names.
//
// The boundary was chosen with BenchmarkMixedLoad (figures below). Pebble
// writes small objects far faster than the file system creates files, but
// every byte in Pebble is copied and checksummed several times (log,
// memtable, flush, compactions) and read back through its block cache,
// while a file is written once and read straight from the page cache. Past
// a few tens of KiB, files win.
//
// # Durability
//
// A Put that returned survives the process being killed (tested with
// SIGKILL in the middle of 64 concurrent Puts); after a machine crash the
// newest objects may be missing, which only costs a rebuild. No object is
// fsynced. Pebble's NoSync mode is not enough for the first promise: it
// returns while the batch is still in Pebble's own buffer, and the crash
// test loses acknowledged objects with it. The store commits with Sync
// instead, and its write-ahead log files ignore the per-commit syncs (see
// pebblefs.go): a commit returns once the log write reached the operating
// system. Logs are still fsynced when Pebble closes them, as under NoSync.
//
// A machine crash can tear a large object's file while its record
// survives. Get checks the file's size against the record: a mismatch (or
// a missing file) is a miss, and the record is deleted, so the client
// uploads the object again. Digests are checked above this package
// (cas/verify); this package only guarantees that it never serves a short
// object as whole.
//
// # Reading
//
// Get reads the record, then either copies the inline bytes out of Pebble
// into a pooled buffer (the reader holds no database resources) or opens
// the file, which stays readable if the object is evicted meanwhile.
// FindMissing sorts the keys and looks them up with one iterator per part
// of the list, in parallel. Neither waits for writers: they take no object
// lock (except to drop a broken object), only the shared hold that Close
// waits for and, to note an access time, one of 256 short-held shard
// locks.
//
// # Eviction and access times
//
// Eviction is sampled LRU: a round seeks to a few random positions in the
// records (within a partition records are in hash order, which is random)
// and evicts the least recently used few of the sample in one batch
// (evict.go). It runs when a Put needs room, and in the background when
// the store is over its budget (after Open with a smaller budget or a
// clamp).
//
// A hit does not write. Get and FindMissing note the access time in memory;
// a background loop writes the noted times into the records every
// maintenanceInterval, in one batch per lock stripe, and Close writes what
// is left. A record is only rewritten when its time is more than
// touchResolution (a minute) old, and an object's bytes are never rewritten
// for a hit. Eviction looks at noted times too.
//
// # Budget
//
// Options.MaxSize bounds the bytes of stored objects plus the bytes
// reserved by uploads in flight. A Put reserves its size hint before it
// reads (an upload of unknown size reserves 1 MiB at a time as its bytes
// arrive), evicting to make room; when the room is held by other uploads
// rather than by stored objects, a Put of known size waits for them (or
// for its context), and an upload of unknown size that cannot grow fails
// with cas.ErrFull rather than risk two such uploads waiting for each
// other. An object larger than the whole budget fails at once with
// cas.ErrTooLarge, naming the limit. Usage counters per partition are
// persisted in the same batch as each object, so OrgUsage and the budget
// need no scan, at Open either. Pebble's own overhead (logs, tables waiting
// for compaction) is not counted; FreeSpaceMargin covers it.
//
// # Full disks
//
// Open lowers the budget to what the file system can hold (free space plus
// what the store holds, less FreeSpaceMargin) and logs both figures. A Put
// whose file write meets ENOSPC or EDQUOT evicts (the object's remaining
// bytes, plus some slack) and retries once, then fails with cas.ErrFull.
//
// Pebble cannot survive a failed log write, and Open must write too. The
// ballast, a file of Options.BallastSize reserved blocks, is removed when
// Pebble meets a full disk (Pebble then retries the write once) and before
// Open when the disk is nearly full; the maintenance loop evicts until
// there is room again and then makes the ballast anew. So Open succeeds on
// a full disk, lowers the budget below what the store holds, and evicts
// down to it in the background.
//
// # Deleting partitions
//
// DeletePartition removes everything at or below a partition at once:
// range deletes of its records and counters in one batch, then the files
// named by its 'f' records. It then compacts the partition's key ranges so
// the bytes leave the disk before it returns: deleting an org, or its plain
// data when it turns encryption on, leaves nothing waiting for eviction.
// For the same reason Pebble's obsolete log files are removed rather than
// recycled (a recycled log keeps old bytes until it is overwritten).
//
// # Upgrading
//
// The previous version kept one file per object in DIR/objects and DIR/tmp.
// Open removes both with one log line; the cache starts empty.
//
// # Measured
//
// See the figures in bench_test.go.
package disk
