// Package shared is the storage backend that many nodes share: objects in
// an object store (the S3 backend, cas/s3) and an index of them in
// PostgreSQL (cas/pgindex). The index is authoritative: an object exists
// when its row does, so FindMissing is one query, usage figures are
// counters and the evictor (cas/eviction) can keep the bucket within a
// budget by least recent use.
//
// Order of operations (the index's tombstones make them safe when nodes
// race; see cas/pgindex):
//
//   - Put: take a write ticket, write the object, then commit its row. A
//     commit the index refuses (a delete of the key overlapped the write)
//     deletes the object again and fails the Put: upload it again.
//   - Delete, eviction, DeletePartition: tombstone and delete the rows,
//     then delete the objects, then finish the tombstones.
//   - Get: look up the row (a read is a use), then read the object. An
//     object without a row (a write that died before its commit) is a
//     miss; a row whose object is gone (deleted behind the store's back) is
//     a miss too, and the row is deleted.
package shared

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/sealcache/sealcache/cas"
	"github.com/sealcache/sealcache/cas/pgindex"
)

// commitTimeout bounds the commit of a written object's row. The commit
// outlives the request: once the object is written, recording it is
// cheaper than leaving it unindexed.
const commitTimeout = 30 * time.Second

// deleteConcurrency is how many object deletes run at once.
const deleteConcurrency = 16

// Store is the shared backend. It is safe for concurrent use.
type Store struct {
	objects cas.Backend
	index   *pgindex.Index
	log     *slog.Logger
}

var _ cas.Backend = (*Store)(nil)

// New returns the store over objects and index; it owns both and closes
// them on Close.
func New(objects cas.Backend, index *pgindex.Index, log *slog.Logger) *Store {
	if log == nil {
		log = slog.Default()
	}
	return &Store{objects: objects, index: index, log: log}
}

// Index is the store's index, for the evictor and metrics.
func (s *Store) Index() *pgindex.Index { return s.index }

// Get reads key's object when the index has it.
func (s *Store) Get(ctx context.Context, key cas.Key, offset int64) (io.ReadCloser, int64, error) {
	_, found, err := s.index.Lookup(ctx, key)
	if err != nil {
		return nil, 0, err
	}
	if !found {
		return nil, 0, cas.NotFound(key)
	}
	rc, size, err := s.objects.Get(ctx, key, offset)
	if errors.Is(err, cas.ErrNotFound) {
		if has, herr := s.index.Has(ctx, []cas.Key{key}); herr != nil || !has[0] {
			return nil, 0, cas.NotFound(key) // deleted meanwhile, row first: a plain miss
		}
		s.log.Warn("the object store lost an indexed object; deleting its index row. Objects must only be deleted by Sealcache: remove expiration rules from the bucket",
			"key", key.String())
		if derr := s.Delete(context.WithoutCancel(ctx), key); derr != nil {
			s.log.Warn("deleting the index row of a lost object failed", "key", key.String(), "err", derr)
		}
		return nil, 0, cas.NotFound(key)
	}
	return rc, size, err
}

// Put writes the object, then commits its row.
//
// The write ticket must be taken before the object store publishes the
// object, which it does only after its reader returned io.EOF. So the
// ticket is fetched while the bytes stream in, and the reader holds back
// io.EOF until it has arrived: the round trip costs the upload nothing.
func (s *Store) Put(ctx context.Context, key cas.Key, size int64, r io.Reader) error {
	tickets := make(chan ticketResult, 1)
	go func() {
		t, err := s.index.BeginWrite(ctx)
		tickets <- ticketResult{t, err}
	}()
	cr := &countingReader{r: r, tickets: tickets}
	if err := s.objects.Put(ctx, key, size, cr); err != nil {
		if !cr.ticketed {
			<-tickets // the goroutine ends before Put returns
		}
		return err
	}
	if !cr.ticketed {
		<-tickets
		return fmt.Errorf("storing %s: the object store published it before reading to the end; its index row is not written", key)
	}
	if cr.ticket.err != nil {
		return cr.ticket.err
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), commitTimeout)
	defer cancel()
	err := s.index.CommitWrite(cctx, cr.ticket.t, key, cr.n)
	if errors.Is(err, pgindex.ErrDeletedWhileWriting) {
		// The object just written may outlive the delete that raced it:
		// delete it under the same protocol, so no byte of it stays.
		if derr := s.Delete(cctx, key); derr != nil {
			s.log.Warn("deleting an object whose write raced a delete failed; the evictor retries", "key", key.String(), "err", derr)
		}
	}
	return err
}

type ticketResult struct {
	t   pgindex.Ticket
	err error
}

// countingReader counts the bytes read (the stored size) and returns
// io.EOF only once the write ticket is taken; if that failed, it returns
// the failure instead, so the object store publishes nothing.
type countingReader struct {
	r        io.Reader
	n        int64
	tickets  <-chan ticketResult
	ticket   ticketResult
	ticketed bool
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if err == io.EOF {
		if !c.ticketed {
			c.ticket, c.ticketed = <-c.tickets, true
		}
		if c.ticket.err != nil {
			return n, c.ticket.err
		}
	}
	return n, err
}

// FindMissing asks the index only: one query for all keys.
func (s *Store) FindMissing(ctx context.Context, keys []cas.Key) ([]cas.Key, error) {
	present, err := s.index.Present(ctx, keys)
	if err != nil {
		return nil, err
	}
	var missing []cas.Key
	for i, k := range keys {
		if !present[i] {
			missing = append(missing, k)
		}
	}
	return missing, nil
}

// Delete removes one object: row, then object.
func (s *Store) Delete(ctx context.Context, key cas.Key) error {
	d, err := s.index.DeleteKey(ctx, key)
	if err != nil {
		return err
	}
	if err := s.objects.Delete(ctx, key); err != nil {
		return fmt.Errorf("deleting %s from the object store (its index row is gone; the evictor retries the delete): %w", key, err)
	}
	return s.index.FinishKeys(ctx, d)
}

// WalkPartition walks the index.
func (s *Store) WalkPartition(ctx context.Context, partition cas.Partition, fn func(cas.StoredObject) error) error {
	return s.index.Walk(ctx, partition, fn)
}

// DeletePartition removes the partition's rows, then every object under it
// in the object store (also objects without rows), and returns the bytes
// freed.
func (s *Store) DeletePartition(ctx context.Context, partition cas.Partition) (int64, error) {
	d, err := s.index.DeletePartition(ctx, partition)
	if err != nil {
		return 0, err
	}
	freed, err := s.objects.DeletePartition(ctx, partition)
	if err != nil {
		return 0, fmt.Errorf("deleting partition %s from the object store (its index rows are gone): %w", partition, err)
	}
	if err := s.index.FinishPartition(ctx, d); err != nil {
		return 0, err
	}
	return max(freed, d.Bytes), nil
}

// OrgUsage reads the index's counters.
func (s *Store) OrgUsage(ctx context.Context, orgID string) (int64, error) {
	return s.index.OrgUsage(ctx, orgID)
}

// Close closes the index and the object store.
func (s *Store) Close() error {
	s.index.Close()
	return s.objects.Close()
}

// probeKey is a key no client can store (its partition is no org id the
// metadata store hands out), read by Ping.
var probeKey = cas.Key{Partition: "_readyz", Kind: cas.KindCAS, Digest: cas.EmptyDigest(cas.SupportedDigestFunctions[0])}

// Ping checks that the index and the object store answer.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.index.Ping(ctx); err != nil {
		return fmt.Errorf("object index: %w", err)
	}
	if _, err := s.objects.FindMissing(ctx, []cas.Key{probeKey}); err != nil {
		return fmt.Errorf("object store: %w", err)
	}
	return nil
}

// Evict deletes up to limit least recently used objects outside the
// minimum retention (of org only, when not "") and returns how many
// objects and bytes went. It returns 0 objects when none is old enough.
func (s *Store) Evict(ctx context.Context, org string, limit int) (int, int64, error) {
	d, err := s.index.EvictLRU(ctx, org, limit)
	if err != nil || d == nil {
		return 0, 0, err
	}
	if err := s.deleteObjects(ctx, d.Keys); err != nil {
		return 0, 0, fmt.Errorf("deleting evicted objects (their index rows are gone; the next pass retries): %w", err)
	}
	if err := s.index.FinishKeys(ctx, d); err != nil {
		return 0, 0, err
	}
	return len(d.Objects), d.Bytes(), nil
}

// deleteObjects deletes keys' objects, deleteConcurrency at a time.
func (s *Store) deleteObjects(ctx context.Context, keys []cas.Key) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(deleteConcurrency)
	for _, k := range keys {
		g.Go(func() error { return s.objects.Delete(gctx, k) })
	}
	return g.Wait()
}

// Recover finishes deletes whose node died or failed part way (their rows
// are gone, their objects may not be), and forgets old tombstones. It
// returns how many deletes it finished.
func (s *Store) Recover(ctx context.Context) (int, error) {
	keys, parts, err := s.index.Unfinished(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, d := range keys {
		if err := s.deleteObjects(ctx, d.Keys); err != nil {
			return n, err
		}
		if err := s.index.FinishKeys(ctx, d); err != nil {
			return n, err
		}
		n++
	}
	for _, d := range parts {
		if _, err := s.objects.DeletePartition(ctx, d.Partition); err != nil {
			return n, err
		}
		if err := s.index.FinishPartition(ctx, d); err != nil {
			return n, err
		}
		n++
	}
	if _, err := s.index.ForgetFinished(ctx); err != nil {
		return n, err
	}
	if due, err := s.index.JobDue(ctx, "orphan_sweep", SweepEvery); err != nil || !due {
		return n, err
	}
	orphans, bytes, err := s.Sweep(ctx, orphanAge)
	if orphans > 0 {
		s.log.Info("deleted objects of the object store that had no index row (writes whose node died before recording them)", "objects", orphans, "bytes", bytes)
	}
	return n, err
}

// SweepEvery is how often, across all nodes, the object store is swept for
// objects without an index row.
const SweepEvery = 24 * time.Hour

// orphanAge is how old an object without a row must be to be swept: a write
// records its row within seconds of the object store publishing it.
const orphanAge = time.Hour

// objectLister is an object store that can list everything it holds
// (cas/s3).
type objectLister interface {
	ListObjects(ctx context.Context, fn func(key cas.Key, size int64, modified time.Time) error) (skipped int, err error)
}

// sweepBatch is how many listed objects one index query checks.
const sweepBatch = 1000

// Sweep deletes the objects of the object store that have no index row and
// were last modified more than olderThan ago: writes whose node died
// between publishing the object and recording it. No client can see them
// (the index decides what exists), but they take space the budget does not
// count. An object store that cannot list its objects is not swept.
func (s *Store) Sweep(ctx context.Context, olderThan time.Duration) (objects int, bytes int64, err error) {
	lister, ok := s.objects.(objectLister)
	if !ok {
		return 0, 0, nil
	}
	cutoff := time.Now().Add(-olderThan)
	var batch []cas.StoredObject
	check := func() error {
		keys := make([]cas.Key, len(batch))
		for i, o := range batch {
			keys[i] = o.Key
		}
		has, err := s.index.Has(ctx, keys)
		if err != nil {
			return err
		}
		for i, o := range batch {
			if has[i] {
				continue
			}
			if err := s.Delete(ctx, o.Key); err != nil {
				return err
			}
			objects++
			bytes += o.Size
		}
		batch = batch[:0]
		return nil
	}
	skipped, err := lister.ListObjects(ctx, func(key cas.Key, size int64, modified time.Time) error {
		if !modified.Before(cutoff) {
			return nil
		}
		batch = append(batch, cas.StoredObject{Key: key, Size: size})
		if len(batch) == sweepBatch {
			return check()
		}
		return nil
	})
	if err == nil && len(batch) > 0 {
		err = check()
	}
	if skipped > 0 {
		s.log.Warn("the object store holds objects under this deployment's prefix that Sealcache did not write; give each deployment its own prefix", "objects", skipped)
	}
	if err != nil {
		return objects, bytes, fmt.Errorf("sweeping the object store for objects without index rows: %w", err)
	}
	return objects, bytes, nil
}

// TryEvictorLock takes the lock that lets one node at a time evict.
func (s *Store) TryEvictorLock(ctx context.Context) (release func(), ok bool, err error) {
	return s.index.TryEvictorLock(ctx)
}

// Usage is the number of objects and stored bytes of the whole store.
func (s *Store) Usage(ctx context.Context) (objects, bytes int64, err error) {
	return s.index.Usage(ctx)
}

// OrgsOver lists the orgs storing more than quota bytes.
func (s *Store) OrgsOver(ctx context.Context, quota int64) ([]pgindex.OrgBytes, error) {
	return s.index.OrgsOver(ctx, quota)
}
