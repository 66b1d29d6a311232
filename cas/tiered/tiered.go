// Package tiered puts a node's local store (the disk backend) in front of
// the store all nodes share (cas/shared): a read-through and write-through
// cache of CAS blobs, bounded by the local store's own size limit.
//
// The shared store is authoritative. FindMissing, WalkPartition and
// OrgUsage ask it alone, and a local copy is served only while the shared
// index still has the object, so a node never serves what FindMissing says
// is missing on another node behind the load balancer: not an evicted
// object, not one of an org that was deleted or changed its encryption
// while this node was down. That check is one index query (which also
// records the use, keeping the shared copy's place in the LRU order); it
// saves the object store read, which is the expensive part.
//
//   - Get: the local copy, else the shared one, streamed to the client
//     while it fills the local store. Only a complete read publishes the
//     local copy; reads from an offset do not fill.
//   - Put: to both at once from one stream; the local copy publishes only
//     after the shared Put succeeded. A local failure (disk full) does not
//     fail the Put.
//   - Delete, DeletePartition: both.
//
// Action cache entries bypass the local store: they are small, and unlike
// CAS blobs they are overwritten, so every node must read the shared copy.
//
// The tier sits below the encryption wrapper, so sealed objects are sealed
// on both.
package tiered

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"

	"github.com/sealcache/sealcache/cas"
)

// Store is a local store in front of a shared one. It is safe for
// concurrent use.
type Store struct {
	local, shared cas.Backend
	log           *slog.Logger

	localHits, fills, staleLocal atomic.Uint64
}

var _ cas.Backend = (*Store)(nil)

// New returns the tiered store; it owns both stores and closes them.
func New(local, shared cas.Backend, log *slog.Logger) *Store {
	if log == nil {
		log = slog.Default()
	}
	return &Store{local: local, shared: shared, log: log}
}

// Stats are counters since New.
type Stats struct {
	LocalHits  uint64 // reads served from the local store
	Fills      uint64 // complete shared reads copied into the local store
	StaleLocal uint64 // local copies dropped because the shared store no longer has the object
}

func (s *Store) Stats() Stats {
	return Stats{LocalHits: s.localHits.Load(), Fills: s.fills.Load(), StaleLocal: s.staleLocal.Load()}
}

func cached(key cas.Key) bool { return key.Kind == cas.KindCAS }

// Get serves the local copy while the shared store has the object, else
// the shared copy, filling the local store on a complete read.
func (s *Store) Get(ctx context.Context, key cas.Key, offset int64) (io.ReadCloser, int64, error) {
	if !cached(key) {
		return s.shared.Get(ctx, key, offset)
	}
	rc, size, err := s.local.Get(ctx, key, offset)
	switch {
	case err == nil:
		missing, ferr := s.shared.FindMissing(ctx, []cas.Key{key})
		if ferr != nil {
			rc.Close()
			return nil, 0, ferr
		}
		if len(missing) == 0 {
			s.localHits.Add(1)
			return rc, size, nil
		}
		rc.Close()
		s.staleLocal.Add(1)
		if derr := s.local.Delete(ctx, key); derr != nil {
			s.log.Warn("deleting a local copy the shared store no longer has failed", "key", key.String(), "err", derr)
		}
	case !errors.Is(err, cas.ErrNotFound):
		s.log.Warn("reading the local store failed; reading the shared store instead", "key", key.String(), "err", err)
	}
	rc, size, err = s.shared.Get(ctx, key, offset)
	if err != nil || offset != 0 {
		return rc, size, err
	}
	return s.fill(ctx, key, size, rc), size, nil
}

// fill returns a reader of src that copies what it reads into a local Put.
func (s *Store) fill(ctx context.Context, key cas.Key, size int64, src io.ReadCloser) io.ReadCloser {
	pr, pw := io.Pipe()
	f := &filling{src: src, pw: pw, active: true, done: make(chan error, 1)}
	go func() {
		err := s.local.Put(context.WithoutCancel(ctx), key, size, pr)
		pr.CloseWithError(errLocalStopped) // a Put that gave up early reads no more
		if err == nil {
			s.fills.Add(1)
		}
		f.done <- err
	}()
	return f
}

var (
	errLocalStopped = errors.New("the local store stopped reading")
	errIncomplete   = errors.New("the read of the shared copy ended before its end")
)

// filling passes a shared read through to the client and into the local
// store. The local copy sees io.EOF, and publishes, only when the client's
// read did.
type filling struct {
	src    io.ReadCloser
	pw     *io.PipeWriter
	active bool // still copying into the local store
	done   chan error
	waited bool
}

func (f *filling) Read(p []byte) (int, error) {
	n, err := f.src.Read(p)
	if f.active && n > 0 {
		if _, werr := f.pw.Write(p[:n]); werr != nil {
			f.active = false // the local Put failed; the client's read goes on
		}
	}
	if err != nil && f.active {
		f.active = false
		if err == io.EOF {
			f.pw.Close()
		} else {
			f.pw.CloseWithError(err)
		}
		f.wait()
	}
	return n, err
}

func (f *filling) Close() error {
	if f.active {
		f.active = false
		f.pw.CloseWithError(errIncomplete)
	}
	err := f.src.Close()
	f.wait()
	return err
}

// wait waits for the local Put to end.
func (f *filling) wait() {
	if !f.waited {
		f.waited = true
		<-f.done
	}
}

// Put stores r's bytes in the shared store and, for CAS blobs, in the
// local store from the same stream.
func (s *Store) Put(ctx context.Context, key cas.Key, size int64, r io.Reader) error {
	if !cached(key) {
		return s.shared.Put(ctx, key, size, r)
	}
	pr, pw := io.Pipe()
	publish := make(chan bool, 1)
	localDone := make(chan error, 1)
	go func() {
		err := s.local.Put(ctx, key, size, &gatedReader{r: pr, publish: publish})
		pr.CloseWithError(errLocalStopped)
		localDone <- err
	}()
	tee := &teeReader{r: r, w: pw, active: true}
	err := s.shared.Put(ctx, key, size, tee)
	if err == nil && tee.eof {
		pw.Close()
		publish <- true
	} else {
		pw.CloseWithError(errNotShared)
		publish <- false
	}
	if lerr := <-localDone; lerr != nil && err == nil {
		s.log.Debug("the local store did not keep a copy of an upload", "key", key.String(), "err", lerr)
	}
	return err
}

var errNotShared = errors.New("the shared store did not store the object, so the local store does not either")

// teeReader copies what the shared Put reads into the local Put's pipe,
// until the local Put stops reading.
type teeReader struct {
	r      io.Reader
	w      *io.PipeWriter
	active bool
	eof    bool
}

func (t *teeReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if t.active && n > 0 {
		if _, werr := t.w.Write(p[:n]); werr != nil {
			t.active = false
		}
	}
	if err == io.EOF {
		t.eof = true
	}
	return n, err
}

// gatedReader is the local Put's reader: it holds back io.EOF until the
// shared Put has succeeded, and fails instead when it has not.
type gatedReader struct {
	r       io.Reader
	publish chan bool
	decided bool
	ok      bool
}

func (g *gatedReader) Read(p []byte) (int, error) {
	n, err := g.r.Read(p)
	if err != io.EOF {
		return n, err
	}
	if !g.decided {
		g.ok, g.decided = <-g.publish, true
	}
	if !g.ok {
		return n, errNotShared
	}
	return n, io.EOF
}

// FindMissing asks the shared store: a local-only object is missing for
// the other nodes.
func (s *Store) FindMissing(ctx context.Context, keys []cas.Key) ([]cas.Key, error) {
	return s.shared.FindMissing(ctx, keys)
}

// Delete deletes from both stores.
func (s *Store) Delete(ctx context.Context, key cas.Key) error {
	err := s.shared.Delete(ctx, key)
	if lerr := s.local.Delete(ctx, key); lerr != nil {
		err = errors.Join(err, fmt.Errorf("local store: %w", lerr))
	}
	return err
}

// WalkPartition walks the shared store.
func (s *Store) WalkPartition(ctx context.Context, partition cas.Partition, fn func(cas.StoredObject) error) error {
	return s.shared.WalkPartition(ctx, partition, fn)
}

// DeletePartition deletes from both stores and returns the bytes the
// shared store freed.
func (s *Store) DeletePartition(ctx context.Context, partition cas.Partition) (int64, error) {
	freed, err := s.shared.DeletePartition(ctx, partition)
	if _, lerr := s.local.DeletePartition(ctx, partition); lerr != nil {
		err = errors.Join(err, fmt.Errorf("local store: %w", lerr))
	}
	return freed, err
}

// OrgUsage is the shared store's figure.
func (s *Store) OrgUsage(ctx context.Context, orgID string) (int64, error) {
	return s.shared.OrgUsage(ctx, orgID)
}

// Close closes both stores.
func (s *Store) Close() error {
	return errors.Join(s.shared.Close(), s.local.Close())
}
