// Package pgindex is the shared object index in PostgreSQL: which objects
// the shared object store holds, their stored sizes and when each was last
// used. Every node of a deployment reads and writes the same index, so
// FindMissing of 10,000 digests is one indexed query instead of 10,000
// HEAD requests, per-org usage is a sum over a few counter rows, and the
// evictor can pick the least recently used objects of the whole bucket.
//
// The package knows SQL and cas.Key, not the object store: cas/shared
// composes the two and owns the order of operations. This package keeps
// the rules that make that order safe under concurrency.
//
// # Tables
//
//	sealcache_objects            one row per stored object: partition, kind, instance,
//	                             digest function, hash (bytea), digest size (the primary
//	                             key), stored size, created, last access
//	sealcache_usage              objects and bytes per org, in 16 shard rows per org,
//	                             kept by statement-level triggers on sealcache_objects
//	sealcache_deleted_objects    tombstones of single objects being or recently deleted
//	sealcache_deleted_partitions tombstones of whole partitions, likewise
//	sealcache_index_migrations   the schema versions applied (see migrations.go)
//
// Text columns use the "C" collation, so partition ranges are byte ranges
// whatever the database's locale.
//
// # Writes and deletes across nodes
//
// An object store has no transactions and no conditional delete, so a
// delete of an object (eviction, Delete, DeletePartition) could remove the
// bytes of an upload of the same object that another node is finishing,
// leaving an index row for an object that is gone: the "missing digest"
// a client must never see. Tombstones and one sequence close that race:
//
//   - A write takes a ticket (the sequence's next value) before the object
//     store publishes the object (a store publishes only after its reader
//     returned io.EOF, so the ticket can be fetched while the bytes stream
//     in), and commits its row with CommitWrite after the object store has
//     published the object.
//   - A delete first writes its tombstone and deletes the rows in one
//     transaction, then deletes the objects, then marks the tombstone done
//     with a fresh value of the same sequence.
//   - CommitWrite upserts the row and then, in a new snapshot, looks for a
//     tombstone covering the key that is not done, or done after the ticket
//     was taken. Such a delete may have removed the bytes just written, so
//     the row is rolled back and ErrDeletedWhileWriting returned.
//
// A delete that started after a write's row was committed deletes that
// row, so it never leaves a row without an object either. Tombstones are
// kept for TombstoneTTL; a write may take at most MaxWriteDuration, so no
// tombstone it must see has been forgotten. A delete whose node died before
// it finished leaves a tombstone that is not done and blocks writes of its
// keys; the evictor finishes such deletes (Unfinished) after
// UnfinishedAfter.
//
// # Access times
//
// Reads, FindMissing hits and the outputs named by an action result served
// (the completeness check's FindMissing) are uses. A use is written only
// when the row's last access is older than TouchAfter, so a hot object
// costs one row write per TouchAfter across all nodes:
//
//   - uses of objects last used more than UrgentAfter ago (close to the
//     minimum retention) are written by the same statement that found
//     them, so an object a client was just told exists cannot be evicted
//     between the answer and the write;
//   - other uses go to an in-memory set that is written every
//     FlushInterval with one statement.
//
// The evictor only deletes rows last used more than the minimum retention
// ago, locking them with FOR UPDATE SKIP LOCKED; UrgentAfter is half of it.
package pgindex
