// Package disk is the embedded default storage backend: one file per object
// in a local directory, with a size limit and least-recently-used eviction.
//
// # Layout
//
//	DIR/LOCK                                     flock held while a Store is open
//	DIR/tmp/                                     uploads in progress; emptied at Open
//	DIR/objects/ORG[/SEG...]/@cas/FN/HH/HASH-SIZE
//	DIR/objects/ORG[/SEG...]/@ac/iINSTANCE/FN/HH/HASH-SIZE
//
// ORG and SEG are the partition segments ([A-Za-z0-9_-]+). "@cas" and "@ac"
// contain a character no segment may contain, so a path always parses back
// into its key, and deleting a partition is deleting one directory (org1 and
// org10 are different directories). INSTANCE is the AC instance name in
// lowercase hex after an "i" (instance names may contain "/", may be empty,
// and hex is safe on case-insensitive file systems). FN is the digest
// function ("sha256"), HH the first two hash characters (fan-out).
//
// A Put writes DIR/tmp/put-* and renames it into place, so readers see either
// the old object or the whole new one; a failed or cancelled Put removes its
// temp file. Nothing is fsynced: after a machine crash a cache may lose
// recent objects, which only costs a rebuild. Temp files do not count toward
// the size limit while they are being written.
//
// # Index and LRU
//
// The Store keeps an in-memory index (path -> size, position in LRU order).
// Get and FindMissing hits move an object to the front; Put evicts from the
// back until the total fits the limit. At Open the index is rebuilt by
// walking the directory, taking sizes from the directory entries and the LRU
// order from file modification times, so no blob is re-read or re-hashed.
// To keep modification times meaningful, an access sets the file's mtime
// with os.Chtimes, at most once per TouchInterval per object, which keeps
// the cost of a hot object to one syscall a minute.
//
// One process owns a directory; Open fails if another holds DIR/LOCK.
// Unlinking a file that is being read is safe on Unix: the reader keeps its
// open file until it closes it.
package disk
