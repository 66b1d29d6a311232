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

func (f *fakeRecords) CurrentKey(ctx context.Context, org string) (encryption.KeyRecord, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if id, ok := f.keys[org]; ok {
		return encryption.KeyRecord{OrgID: org, KeyID: id}, nil
	}
	return encryption.KeyRecord{}, encryption.ErrNoKeyRecord
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

// invalidations records what was dropped from this node's caches.
type invalidations struct {
	mu    sync.Mutex
	orgs  []string
	auths int
}

func (i *invalidations) Invalidate(org string) { i.mu.Lock(); i.orgs = append(i.orgs, org); i.mu.Unlock() }
func (i *invalidations) InvalidateAll()        { i.mu.Lock(); i.auths++; i.mu.Unlock() }

type changesFixture struct {
	records *fakeRecords
	inv     *invalidations
	objects *memory.Store
	fenced  *fence.Fencer
	changes *orgChanges
}

func newChangesFixture(t *testing.T) *changesFixture {
	f := &changesFixture{records: &fakeRecords{keys: map[string]string{"cmekorg": "k1"}}, inv: &invalidations{}, objects: memory.New()}
	f.fenced = fence.New(f.objects)
	f.changes = &orgChanges{log: slog.New(slog.DiscardHandler), records: f.records, keys: f.inv, auth: f.inv, fence: f.fenced, objects: f.objects}
	if err := f.changes.load(t.Context()); err != nil {
		t.Fatal(err)
	}
	return f
}

// store puts one plain and one sealed object of each org and returns them.
func (f *changesFixture) store(t *testing.T, orgs ...string) []cas.Key {
	var keys []cas.Key
	for i, org := range orgs {
		for j, p := range []cas.Partition{cas.Partition(org), cas.Partition(org + "/k1")} {
			data := castest.Bytes(uint64(10*i+j), 100)
			k := castest.CASKey(p, data)
			f.objects.Put(t.Context(), k, 100, bytes.NewReader(data))
			keys = append(keys, k)
		}
	}
	return keys
}

func (f *changesFixture) left(org string) int { return len(f.objects.Keys(cas.Partition(org))) }

func TestEnableOrDisableElsewhereDeletesTheOrgsObjectsHere(t *testing.T) {
	f := newChangesFixture(t)
	ctx := t.Context()
	f.store(t, "plainorg", "cmekorg", "other")

	f.records.set("plainorg", "k9") // enabled through another node
	if err := f.changes.keysChanged(ctx, "plainorg"); err != nil {
		t.Fatal(err)
	}
	f.records.set("cmekorg", "") // disabled through another node
	if err := f.changes.keysChanged(ctx, "cmekorg"); err != nil {
		t.Fatal(err)
	}
	if n, m := f.left("plainorg"), f.left("cmekorg"); n != 0 || m != 0 {
		t.Fatalf("%d and %d objects left of the orgs whose encryption changed; want none", n, m)
	}
	if n := f.left("other"); n != 2 {
		t.Fatalf("another org kept %d of its 2 objects", n)
	}
	if !slices.Contains(f.inv.orgs, "plainorg") || !slices.Contains(f.inv.orgs, "cmekorg") {
		t.Fatalf("cached keys dropped for %v; want both orgs", f.inv.orgs)
	}
}

// Re-wrapping and KMS health updates change key records but not the key
// id: the org's sealed data stays.
func TestSameKeyIDKeepsTheObjects(t *testing.T) {
	f := newChangesFixture(t)
	f.store(t, "cmekorg")
	if err := f.changes.keysChanged(t.Context(), "cmekorg"); err != nil {
		t.Fatal(err)
	}
	if n := f.left("cmekorg"); n != 2 {
		t.Fatalf("a change that kept the key id deleted objects: %d of 2 left", n)
	}
	if len(f.inv.orgs) == 0 {
		t.Fatal("the cached key was not dropped; re-reading it is cheap and safe")
	}
}

func TestOrgDeletedElsewhere(t *testing.T) {
	f := newChangesFixture(t)
	f.store(t, "gone", "other")
	if err := f.changes.orgDeleted(t.Context(), "gone"); err != nil {
		t.Fatal(err)
	}
	if f.left("gone") != 0 || f.left("other") != 2 {
		t.Fatalf("after deleting org gone: %d of its objects left, other has %d of 2", f.left("gone"), f.left("other"))
	}
	if f.inv.auths != 1 {
		t.Fatal("the deleted org's API keys may still be cached: the auth cache was not dropped")
	}
}

// A lost notification is caught by the next reconciliation; a
// reconciliation that read the records before a notification was applied
// does not undo it.
func TestReconcileCatchesLostNotifications(t *testing.T) {
	f := newChangesFixture(t)
	ctx := t.Context()
	f.store(t, "plainorg")
	f.records.set("plainorg", "k9") // its notification never arrives
	if err := f.changes.reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if n := f.left("plainorg"); n != 0 {
		t.Fatalf("reconcile left %d objects of an org enabled elsewhere", n)
	}

	f.store(t, "plainorg") // sealed under k1 again: stands for new sealed data
	since := f.changes.notified
	f.records.set("plainorg", "")
	f.changes.keysChanged(ctx, "plainorg") // a notification is applied meanwhile
	f.store(t, "plainorg")
	if err := f.changes.apply(ctx, "plainorg", "k9", &since); err != nil { // the stale reconciliation
		t.Fatal(err)
	}
	if n := f.left("plainorg"); n != 2 {
		t.Fatalf("a reconciliation older than a notification deleted objects: %d of 2 left", n)
	}
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
	f.records.set("plainorg", "k9")
	if err := f.changes.keysChanged(t.Context(), "plainorg"); err != nil {
		t.Fatal(err)
	}
	pw.Write(data[500:])
	pw.Close()
	if err := <-done; !errors.Is(err, fence.ErrFenced) {
		t.Fatalf("an upload that spanned the change = %v; want fence.ErrFenced", err)
	}
	if f.objects.Raw(k) != nil {
		t.Fatal("the fenced upload published its object")
	}
}
