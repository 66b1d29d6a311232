package server

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"

	"github.com/sealcache/sealcache/cas"
	"github.com/sealcache/sealcache/cas/castest"
	"github.com/sealcache/sealcache/cas/fence"
	"github.com/sealcache/sealcache/cas/memory"
	"github.com/sealcache/sealcache/encryption"
	"github.com/sealcache/sealcache/orgs"
)

// fakeRecords is the metadata store's key records as another node left them.
type fakeRecords struct {
	mu   sync.Mutex
	keys map[string]string // org -> key id
}

func (f *fakeRecords) set(org, keyID string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if keyID == "" {
		delete(f.keys, org)
	} else {
		f.keys[org] = keyID
	}
}

func (f *fakeRecords) ListKeyRecords(ctx context.Context) ([]encryption.KeyRecord, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var recs []encryption.KeyRecord
	for org, id := range f.keys {
		recs = append(recs, encryption.KeyRecord{OrgID: org, KeyID: id})
	}
	return recs, nil
}

// invalidations records the orgs whose cached keys were dropped.
type invalidations struct {
	mu   sync.Mutex
	orgs []string
}

func (i *invalidations) Invalidate(org string) {
	i.mu.Lock()
	i.orgs = append(i.orgs, org)
	i.mu.Unlock()
}

type changesFixture struct {
	t       *testing.T
	records *fakeRecords
	inv     *invalidations
	objects *memory.Store
	fenced  *fence.Fencer
	changes *orgChanges
}

func newChangesFixture(t *testing.T) *changesFixture {
	f := &changesFixture{t: t, records: &fakeRecords{keys: map[string]string{"cmekorg": "k1"}}, inv: &invalidations{}, objects: memory.New()}
	f.fenced = fence.New(f.objects)
	f.changes = newOrgChanges(slog.New(slog.DiscardHandler), f.records, f.inv, f.fenced, f.objects)
	if err := f.changes.load(t.Context()); err != nil {
		t.Fatal(err)
	}
	return f
}

// deliver hands a change to the feed's callback and applies it as the
// worker does.
func (f *changesFixture) deliver(c orgs.Change) {
	f.t.Helper()
	f.changes.notify(c)
	if err := f.changes.apply(f.t.Context(), c); err != nil {
		f.t.Fatal(err)
	}
}

// store puts one plain and one sealed object of each org.
func (f *changesFixture) store(orgIDs ...string) {
	for i, org := range orgIDs {
		for j, p := range []cas.Partition{cas.Partition(org), cas.Partition(org + "/k1")} {
			data := castest.Bytes(uint64(10*i+j), 100)
			f.objects.Put(f.t.Context(), castest.CASKey(p, data), 100, bytes.NewReader(data))
		}
	}
}

func (f *changesFixture) left(org string) int { return len(f.objects.Keys(cas.Partition(org))) }

// After an enable, the plain objects and those sealed under older keys
// go; after a disable, the sealed ones. Objects under the new state stay:
// other nodes may have sealed them already.
func TestKeyChangesDeleteWhatTheNewStateCannotUse(t *testing.T) {
	f := newChangesFixture(t)
	f.store("plainorg", "cmekorg", "other")
	fresh := castest.CASKey("plainorg/kk9", []byte("sealed under the new key by another node"))
	f.objects.Put(t.Context(), fresh, 40, bytes.NewReader([]byte("sealed under the new key by another node")))

	f.deliver(orgs.Change{Kind: orgs.KeyRecordsChanged, OrgID: "plainorg", KeyID: "k9"}) // enabled through another node
	if keys := f.objects.Keys("plainorg"); len(keys) != 1 || keys[0] != fresh {
		t.Fatalf("after an enable the org holds %v; want only the object sealed under the new key", keys)
	}
	f.deliver(orgs.Change{Kind: orgs.KeyRecordsChanged, OrgID: "cmekorg"}) // disabled through another node
	if keys := f.objects.Keys("cmekorg"); len(keys) != 1 || keys[0].Partition != "cmekorg" {
		t.Fatalf("after a disable the org holds %v; want only its plain object", keys)
	}
	if n := f.left("other"); n != 2 {
		t.Fatalf("another org kept %d of its 2 objects", n)
	}
	if !slices.Contains(f.inv.orgs, "plainorg") || !slices.Contains(f.inv.orgs, "cmekorg") {
		t.Fatalf("cached keys dropped for %v; want both orgs", f.inv.orgs)
	}
}

// The callback drops the cached key before the worker gets to the change,
// so the node stops using it as soon as it hears.
func TestNotifyDropsTheCachedKeyAtOnce(t *testing.T) {
	f := newChangesFixture(t)
	f.changes.notify(orgs.Change{Kind: orgs.KeyRecordsChanged, OrgID: "cmekorg"})
	if !slices.Contains(f.inv.orgs, "cmekorg") {
		t.Fatal("the feed's callback did not drop the org's cached key")
	}
}

// Re-wrapping changes key records but not the key id: the org's sealed
// data stays.
func TestSameKeyIDKeepsTheObjects(t *testing.T) {
	f := newChangesFixture(t)
	f.store("cmekorg")
	f.deliver(orgs.Change{Kind: orgs.KeyRecordsChanged, OrgID: "cmekorg", KeyID: "k1"})
	if n := f.left("cmekorg"); n != 2 {
		t.Fatalf("a re-wrap deleted objects: %d of 2 left", n)
	}
}

func TestOrgDeletedElsewhere(t *testing.T) {
	f := newChangesFixture(t)
	f.store("gone", "other")
	f.deliver(orgs.Change{Kind: orgs.OrgDeleted, OrgID: "gone"})
	if f.left("gone") != 0 || f.left("other") != 2 {
		t.Fatalf("after deleting org gone: %d of its objects left, other has %d of 2", f.left("gone"), f.left("other"))
	}
}

// A change whose notification was lost is applied at the next Resync.
func TestResyncAppliesLostChanges(t *testing.T) {
	f := newChangesFixture(t)
	f.store("plainorg", "cmekorg")
	f.records.set("plainorg", "k9") // its notification never arrives
	f.deliver(orgs.Change{Kind: orgs.Resync})
	if n := f.left("plainorg"); n != 0 {
		t.Fatalf("a Resync left %d objects of an org enabled elsewhere; want its plain and old sealed ones gone", n)
	}
	if n := f.left("cmekorg"); n != 2 {
		t.Fatalf("a Resync deleted objects of an org that did not change: %d of 2 left", n)
	}
}

// The worker applies what the callback queued, in order.
func TestWorkerAppliesQueuedChanges(t *testing.T) {
	f := newChangesFixture(t)
	f.store("plainorg")
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { f.changes.run(ctx); close(done) }()
	deleted := make(chan struct{})
	f.changes.fence = fencerFunc(func(ctx context.Context, org string, fn func(context.Context) error) error {
		err := f.fenced.Fence(ctx, org, fn)
		close(deleted)
		return err
	})
	f.changes.notify(orgs.Change{Kind: orgs.KeyRecordsChanged, OrgID: "plainorg", KeyID: "k9"})
	<-deleted
	cancel()
	<-done
	if n := f.left("plainorg"); n != 0 {
		t.Fatalf("the worker left %d objects", n)
	}
}

type fencerFunc func(ctx context.Context, org string, fn func(context.Context) error) error

func (f fencerFunc) Fence(ctx context.Context, org string, fn func(context.Context) error) error {
	return f(ctx, org, fn)
}

// An upload on this node that started before the change publishes nothing.
func TestUploadsInFlightAreFenced(t *testing.T) {
	f := newChangesFixture(t)
	data := castest.Bytes(1, 1000)
	k := castest.CASKey("plainorg", data)
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- f.fenced.Put(context.Background(), k, int64(len(data)), pr) }()
	pw.Write(data[:500])
	f.deliver(orgs.Change{Kind: orgs.KeyRecordsChanged, OrgID: "plainorg", KeyID: "k9"})
	// The fence stops the upload at its next read; the client's rest is
	// never read.
	pw.Close()
	if err := <-done; !errors.Is(err, fence.ErrFenced) {
		t.Fatalf("an upload that spanned the change = %v; want fence.ErrFenced", err)
	}
	if f.objects.Raw(k) != nil {
		t.Fatal("the fenced upload published its object")
	}
}
