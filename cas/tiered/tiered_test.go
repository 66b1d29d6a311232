package tiered

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"

	"github.com/sealcache/sealcache/cas"
	"github.com/sealcache/sealcache/cas/castest"
	"github.com/sealcache/sealcache/cas/disk"
	"github.com/sealcache/sealcache/cas/memory"
	"github.com/sealcache/sealcache/cas/pgindex"
	"github.com/sealcache/sealcache/cas/shared"
	"github.com/sealcache/sealcache/internal/pgtest"
)

// fake is the in-memory store with hooks: a Put can be held between
// reading its last byte and publishing, or refused.
type fake struct {
	*memory.Store
	finds atomic.Int64
	// held, if set, receives a value when a Put has read everything and
	// waits for release before it publishes.
	held    chan struct{}
	release chan struct{}
	putErr  error
}

func newFake() *fake { return &fake{Store: memory.New()} }

func (f *fake) Put(ctx context.Context, k cas.Key, size int64, r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	if f.putErr != nil {
		return f.putErr
	}
	if f.held != nil {
		f.held <- struct{}{}
		<-f.release
	}
	return f.Store.Put(ctx, k, size, bytes.NewReader(data))
}

func (f *fake) FindMissing(ctx context.Context, keys []cas.Key) ([]cas.Key, error) {
	f.finds.Add(1)
	return f.Store.FindMissing(ctx, keys)
}

func newStore(t testing.TB) (*Store, *fake, *fake) {
	local, shared := newFake(), newFake()
	s := New(local, shared, slog.New(slog.DiscardHandler))
	t.Cleanup(func() { s.Close() })
	return s, local, shared
}

func TestConformance(t *testing.T) {
	castest.Run(t, castest.Options{}, func(t *testing.T) cas.Backend {
		s, _, _ := newStore(t)
		return s
	})
}

func blob(seed uint64, n int64) ([]byte, cas.Key) {
	data := castest.Bytes(seed, n)
	return data, castest.CASKey("org1", data)
}

func put(t testing.TB, s cas.BlobStore, k cas.Key, data []byte) {
	t.Helper()
	if err := s.Put(t.Context(), k, int64(len(data)), bytes.NewReader(data)); err != nil {
		t.Fatalf("Put(%s): %v", k, err)
	}
}

func read(t testing.TB, s cas.BlobStore, k cas.Key, offset int64) []byte {
	t.Helper()
	rc, _, err := s.Get(t.Context(), k, offset)
	if err != nil {
		t.Fatalf("Get(%s): %v", k, err)
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// Uploads land in both tiers, byte for byte as given: sealed bytes stay
// sealed on both.
func TestPutStoresTheSameBytesInBothTiers(t *testing.T) {
	s, local, shared := newStore(t)
	data, k := blob(1, 100_000)
	put(t, s, k, data)
	if !bytes.Equal(local.Raw(k), data) || !bytes.Equal(shared.Raw(k), data) {
		t.Fatal("the upload is not stored as given in both tiers")
	}
}

// The local copy publishes only after the shared Put succeeded.
func TestLocalCopyPublishesOnlyAfterTheSharedPut(t *testing.T) {
	s, local, shared := newStore(t)
	shared.held, shared.release = make(chan struct{}), make(chan struct{})
	data, k := blob(2, 50_000)
	done := make(chan error, 1)
	go func() { done <- s.Put(context.Background(), k, int64(len(data)), bytes.NewReader(data)) }()
	<-shared.held // the shared Put has every byte and has not published
	if local.Raw(k) != nil {
		t.Fatal("the local copy was published before the shared Put succeeded")
	}
	close(shared.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if local.Raw(k) == nil {
		t.Fatal("after the shared Put succeeded the local store has no copy")
	}

	shared.held = nil
	shared.putErr = errors.New("object store down")
	data, k = blob(3, 50_000)
	if err := s.Put(t.Context(), k, int64(len(data)), bytes.NewReader(data)); err == nil {
		t.Fatal("Put succeeded while the shared store failed")
	}
	if local.Raw(k) != nil {
		t.Fatal("a Put the shared store refused left a local copy")
	}
}

func TestLocalFailureDoesNotFailThePut(t *testing.T) {
	s, local, shared := newStore(t)
	local.putErr = errors.New("disk full")
	data, k := blob(4, 10_000)
	put(t, s, k, data)
	if shared.Raw(k) == nil {
		t.Fatal("the shared store has no copy")
	}
	if !bytes.Equal(read(t, s, k, 0), data) {
		t.Fatal("read back wrong")
	}
}

// A complete read of a shared object fills the local tier; a read that
// stops early or starts at an offset does not.
func TestCompleteReadsFillTheLocalTier(t *testing.T) {
	s, local, shared := newStore(t)
	data, k := blob(5, 200_000)
	put(t, shared, k, data) // written through another node

	rc, _, err := s.Get(t.Context(), k, 0)
	if err != nil {
		t.Fatal(err)
	}
	io.ReadFull(rc, make([]byte, 1000))
	rc.Close()
	if local.Raw(k) != nil {
		t.Fatal("a read that stopped after 1000 bytes filled the local tier")
	}
	if got := read(t, s, k, 1000); !bytes.Equal(got, data[1000:]) || local.Raw(k) != nil {
		t.Fatal("a read at an offset returned wrong bytes or filled the local tier")
	}
	if got := read(t, s, k, 0); !bytes.Equal(got, data) {
		t.Fatal("read back wrong")
	}
	if !bytes.Equal(local.Raw(k), data) {
		t.Fatal("a complete read did not fill the local tier")
	}
	if st := s.Stats(); st.Fills != 1 {
		t.Fatalf("Stats = %+v; want 1 fill", st)
	}
	read(t, s, k, 0)
	if st := s.Stats(); st.LocalHits != 1 {
		t.Fatalf("Stats = %+v; want the second read served locally", st)
	}
}

// A local copy counts only while the shared store has the object: never
// for FindMissing, and a read of it asks the shared index (which records
// the use there).
func TestLocalOnlyObjectsAreMissing(t *testing.T) {
	s, local, shared := newStore(t)
	data, k := blob(6, 1000)
	put(t, s, k, data)
	shared.Store.Delete(t.Context(), k) // evicted from the shared store
	missing, err := s.FindMissing(t.Context(), []cas.Key{k})
	if err != nil || len(missing) != 1 {
		t.Fatalf("FindMissing of an object only the local tier has = %v, %v; want it missing", missing, err)
	}
	if _, _, err := s.Get(t.Context(), k, 0); !errors.Is(err, cas.ErrNotFound) {
		t.Fatalf("Get of an object only the local tier has = %v; want a miss", err)
	}
	if local.Raw(k) != nil {
		t.Fatal("the stale local copy was kept")
	}

	data, k = blob(7, 1000)
	put(t, s, k, data)
	before := shared.finds.Load()
	read(t, s, k, 0)
	if shared.finds.Load() != before+1 {
		t.Fatal("a local hit did not ask the shared store whether the object still exists")
	}
}

// Action results are read from and written to the shared store only.
func TestActionResultsBypassTheLocalTier(t *testing.T) {
	s, local, shared := newStore(t)
	k := castest.ACKey("org1", "", 1)
	put(t, s, k, []byte("result v1"))
	if local.Raw(k) != nil || shared.Raw(k) == nil {
		t.Fatal("an action result was stored locally, or not shared")
	}
	put(t, shared, k, []byte("result v2")) // another node overwrote it
	if got := read(t, s, k, 0); string(got) != "result v2" {
		t.Fatalf("read %q; want the shared store's newest result", got)
	}
	if local.Raw(k) != nil {
		t.Fatal("reading an action result filled the local tier")
	}
}

func TestDeletesReachBothTiers(t *testing.T) {
	s, local, shared := newStore(t)
	a, ka := blob(8, 100)
	b, kb := blob(9, 100)
	put(t, s, ka, a)
	put(t, s, kb, b)
	if err := s.Delete(t.Context(), ka); err != nil {
		t.Fatal(err)
	}
	if local.Raw(ka) != nil || shared.Raw(ka) != nil {
		t.Fatal("Delete left a copy")
	}
	if _, err := s.DeletePartition(t.Context(), "org1"); err != nil {
		t.Fatal(err)
	}
	if local.Raw(kb) != nil || shared.Raw(kb) != nil {
		t.Fatal("DeletePartition left a copy")
	}
}

// The tier as deployed, but for the object store: the disk backend in
// front of the shared store over a real PostgreSQL index.
func TestConformanceOverDiskAndSharedIndex(t *testing.T) {
	castest.Run(t, castest.Options{}, func(t *testing.T) cas.Backend {
		log := slog.New(slog.DiscardHandler)
		d, err := disk.Open(t.TempDir(), disk.Options{MaxSize: 1 << 30, Logger: log})
		if err != nil {
			t.Fatal(err)
		}
		ix, err := pgindex.Open(t.Context(), pgindex.Config{URL: pgtest.NewDatabase(t)})
		if err != nil {
			t.Fatal(err)
		}
		s := New(d, shared.New(memory.New(), ix, log), log)
		t.Cleanup(func() { s.Close() })
		return s
	})
}
