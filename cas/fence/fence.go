// Package fence is the storage behaviour that lets the server change an
// org's storage state (enable or disable CMEK, delete the org) without an
// upload that started before the change landing after it.
//
// A slow upload routed to the org's plain partition before CMEK was
// enabled would otherwise publish plaintext after enabling had deleted the
// plain data, and it would come back after a later disable. Fence closes
// that race: it bumps the org's epoch and runs its function (the deletes)
// while no upload of the org can publish. Every Put records the epoch when
// it starts and checks it again when its reader reaches io.EOF, which is
// the moment before a store publishes (cas.BlobStore promises to read to
// EOF first); from that check until the Put returns it holds the org's
// gate open, so a Fence waits for publishes in progress, never for whole
// uploads. A Put that started before a Fence fails with ErrFenced and
// publishes nothing; it fails at its next read, so the store drops what it
// wrote of it without waiting for the rest.
package fence

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"github.com/sealcache/sealcache/cas"
)

// ErrFenced is wrapped by Put errors for uploads that started before the
// org's storage state changed. Retrying the upload is the right answer.
var ErrFenced = errors.New("the org's storage changed while this upload was in progress (encryption turned on or off, or the org deleted); upload it again")

// Fencer wraps a BlobStore with per-org write fences.
type Fencer struct {
	inner cas.BlobStore

	mu    sync.Mutex
	gates map[string]*gate // by org id
}

// gate is one org's fence state.
type gate struct {
	publishing sync.RWMutex // read-held by Puts between EOF and return; written by Fence
	epoch      atomic.Uint64
}

var _ cas.BlobStore = (*Fencer)(nil)

// New returns inner with fences.
func New(inner cas.BlobStore) *Fencer {
	return &Fencer{inner: inner, gates: map[string]*gate{}}
}

func (f *Fencer) gate(orgID string) *gate {
	f.mu.Lock()
	defer f.mu.Unlock()
	g, ok := f.gates[orgID]
	if !ok {
		g = &gate{}
		f.gates[orgID] = g
	}
	return g
}

// Fence runs fn while no upload of the org can publish, and makes every
// upload of the org that started before the call fail with ErrFenced.
// Uploads that start after Fence returns are not affected.
func (f *Fencer) Fence(ctx context.Context, orgID string, fn func(context.Context) error) error {
	g := f.gate(orgID)
	g.publishing.Lock()
	defer g.publishing.Unlock()
	g.epoch.Add(1)
	return fn(ctx)
}

// Put stores r's bytes unless the org is fenced before they are complete.
func (f *Fencer) Put(ctx context.Context, key cas.Key, size int64, r io.Reader) error {
	g := f.gate(key.Partition.Org())
	fr := &fencedReader{r: r, gate: g, epoch: g.epoch.Load()}
	err := f.inner.Put(ctx, key, size, fr)
	fr.release()
	if fr.fenced {
		return fmt.Errorf("storing %s: %w", key, ErrFenced)
	}
	return err
}

// fencedReader passes r through until the org is fenced; at r's EOF it
// checks the epoch once more and holds the gate until release.
type fencedReader struct {
	r      io.Reader
	gate   *gate
	epoch  uint64
	held   bool // the gate is read-held: EOF was returned
	fenced bool
}

func (r *fencedReader) Read(p []byte) (int, error) {
	if r.fenced {
		return 0, ErrFenced
	}
	if r.held {
		return 0, io.EOF
	}
	if r.fencedMidway() {
		return 0, ErrFenced
	}
	n, err := r.r.Read(p)
	if err != io.EOF {
		if r.fencedMidway() {
			return 0, ErrFenced // drop n, read while the fence came
		}
		return n, err
	}
	r.gate.publishing.RLock()
	if r.gate.epoch.Load() != r.epoch {
		r.gate.publishing.RUnlock()
		r.fenced = true
		return 0, ErrFenced // drop n: the bytes before it are not published either
	}
	r.held = true
	return n, io.EOF
}

// fencedMidway reports whether the org was fenced since the upload began.
// Checking before and after each read stops a fenced upload at once, so
// that the store drops what it wrote of it instead of adding to it until
// the client finishes.
func (r *fencedReader) fencedMidway() bool {
	r.fenced = r.gate.epoch.Load() != r.epoch
	return r.fenced
}

func (r *fencedReader) release() {
	if r.held {
		r.held = false
		r.gate.publishing.RUnlock()
	}
}

func (f *Fencer) Get(ctx context.Context, key cas.Key, offset int64) (io.ReadCloser, int64, error) {
	return f.inner.Get(ctx, key, offset)
}

func (f *Fencer) FindMissing(ctx context.Context, keys []cas.Key) ([]cas.Key, error) {
	return f.inner.FindMissing(ctx, keys)
}

func (f *Fencer) Delete(ctx context.Context, key cas.Key) error {
	return f.inner.Delete(ctx, key)
}
