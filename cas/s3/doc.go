// Package s3 is a storage backend that keeps objects in an S3 bucket, on
// AWS or on any S3-compatible service (MinIO, Ceph RGW, versitygw, R2...):
// --blob_store s3://BUCKET/PREFIX with the --s3_* flags (see Config).
//
// # Object names
//
//	[PREFIX/]PARTITION/@cas/FN/HH/HASH-SIZE
//	[PREFIX/]PARTITION/@ac/iINSTANCE/FN/HH/HASH-SIZE
//
// the disk store's layout under the bucket prefix; Layout maps keys to
// names and back and is usable without a Store (see layout.go). A
// partition's objects are exactly those under "PREFIX/PARTITION/", so
// walking, deleting and measuring a partition are prefix listings that
// never meet another partition's objects (org1/ is no prefix of org10/).
//
// # Reads
//
// Get is one GetObject, ranged from the offset when there is one; the
// object's whole length comes from the answer's headers. A missing object
// (NoSuchKey, or a HEAD's 404) wraps cas.ErrNotFound; nothing else does:
// denied access wraps ErrAccessDenied, an unreachable endpoint
// ErrUnreachable, a missing bucket ErrNoSuchBucket, each with a message
// naming the bucket, the object and what to check. FindMissing sends
// HeadConcurrency HEAD requests at a time.
//
// # Writes and memory
//
// S3 publishes an object only when its PutObject or CompleteMultipartUpload
// succeeds, and a Put sends that request only after its reader returned
// io.EOF with the announced byte count; see put.go. An object that fits one
// part is buffered whole and sent with one PutObject; larger or
// unknown-size ones stream as a multipart upload of PartSize parts, aborted
// on any failure. One upload holds at most PartSize x PartConcurrency bytes
// (32 MiB by default) and all uploads together at most UploadMemory (512
// MiB by default): an upload waits for room before its first part, never
// after, so uploads cannot starve each other into a deadlock.
//
// # What the bucket should have
//
// The store never creates or configures the bucket. Recommended:
// a lifecycle rule with AbortIncompleteMultipartUpload (a day is plenty),
// which removes parts of uploads whose abort failed (the process died
// mid-upload); versioning off, since overwritten AC entries and deleted
// orgs would otherwise stay billed (and readable by the bucket's owner);
// and, only when this store is used alone, an expiration rule if the cache
// should forget old blobs, as S3 keeps no access order for an LRU. Under
// the shared index (cas/shared) there must be no expiration rule: the
// index evicts by least recent use, and an object expired behind its back
// is one it still lists. Credentials need s3:ListBucket on the bucket
// and s3:GetObject, s3:PutObject, s3:DeleteObject and
// s3:AbortMultipartUpload on PREFIX/*.
package s3
