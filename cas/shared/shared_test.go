package shared

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sealcache/sealcache/cas"
	"github.com/sealcache/sealcache/cas/castest"
	"github.com/sealcache/sealcache/cas/memory"
	"github.com/sealcache/sealcache/cas/pgindex"
	"github.com/sealcache/sealcache/cas/pgindex/pgindextest"
	"github.com/sealcache/sealcache/cas/s3"
	"github.com/sealcache/sealcache/internal/pgtest"
	"github.com/sealcache/sealcache/internal/s3test"
)

// objectStore is the in-memory fake with counted calls and hooks.
type objectStore struct {
	*memory.Store
	gets, finds atomic.Int64
	// beforePublish, if set, runs when a Put has read its last byte and
	// before the object becomes visible.
	beforePublish func(cas.Key)
	deleteErr     error
}

func (o *objectStore) Get(ctx context.Context, k cas.Key, off int64) (io.ReadCloser, int64, error) {
	o.gets.Add(1)
	return o.Store.Get(ctx, k, off)
}

func (o *objectStore) FindMissing(ctx context.Context, keys []cas.Key) ([]cas.Key, error) {
	o.finds.Add(1)
	return o.Store.FindMissing(ctx, keys)
}

func (o *objectStore) Put(ctx context.Context, k cas.Key, size int64, r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	if o.beforePublish != nil {
		o.beforePublish(k)
	}
	return o.Store.Put(ctx, k, size, bytes.NewReader(data))
}

func (o *objectStore) Delete(ctx context.Context, k cas.Key) error {
	if o.deleteErr != nil {
		return o.deleteErr
	}
	return o.Store.Delete(ctx, k)
}

// indexURLs remembers each test store's database, for ageing it.
var indexURLs sync.Map // *Store -> string

func openIndex(t testing.TB) (*pgindex.Index, string) {
	t.Helper()
	url := pgtest.NewDatabase(t)
	ix, err := pgindex.Open(t.Context(), pgindex.Config{URL: url, FlushInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return ix, url
}

func ageRows(t testing.TB, s *Store, d time.Duration) {
	url, _ := indexURLs.Load(s)
	pgindextest.AgeObjects(t, url.(string), d)
}

func ageTombstones(t testing.TB, s *Store, d time.Duration) {
	url, _ := indexURLs.Load(s)
	pgindextest.AgeTombstones(t, url.(string), d)
}

// openStore returns a store over the in-memory fake and a real index.
func openStore(t testing.TB) (*Store, *objectStore) {
	t.Helper()
	objects := &objectStore{Store: memory.New()}
	ix, url := openIndex(t)
	s := New(objects, ix, slog.New(slog.DiscardHandler))
	indexURLs.Store(s, url)
	t.Cleanup(func() { s.Close() })
	return s, objects
}

func TestConformanceOverMemory(t *testing.T) {
	castest.Run(t, castest.Options{}, func(t *testing.T) cas.Backend {
		s, _ := openStore(t)
		return s
	})
}

// The store as deployed: versitygw and PostgreSQL.
func TestConformanceOverS3(t *testing.T) {
	castest.Run(t, castest.Options{LargeSize: 5*s3.MinPartSize/2 + 17}, func(t *testing.T) cas.Backend {
		return openS3Store(t)
	})
}

func openS3Store(t testing.TB) *Store {
	t.Helper()
	srv, bucket := s3test.NewBucket(t)
	objects, err := s3.New(t.Context(), s3.Config{
		Bucket: bucket, Prefix: "cache", Endpoint: srv.Endpoint, Region: s3test.Region, PathStyle: true,
		AccessKeyID: srv.AccessKeyID, SecretAccessKey: srv.SecretAccessKey, PartSize: s3.MinPartSize,
	})
	if err != nil {
		t.Fatal(err)
	}
	ix, url := openIndex(t)
	s := New(objects, ix, slog.New(slog.DiscardHandler))
	indexURLs.Store(s, url)
	t.Cleanup(func() { s.Close() })
	return s
}

func put(t testing.TB, s cas.BlobStore, k cas.Key, data []byte) {
	t.Helper()
	if err := s.Put(t.Context(), k, int64(len(data)), bytes.NewReader(data)); err != nil {
		t.Fatalf("Put(%s): %v", k, err)
	}
}

func isMissing(t testing.TB, s cas.BlobStore, k cas.Key) bool {
	t.Helper()
	missing, err := s.FindMissing(t.Context(), []cas.Key{k})
	if err != nil {
		t.Fatal(err)
	}
	return len(missing) == 1
}

// FindMissing is answered by the index alone: no request reaches the
// object store, however many keys.
func TestFindMissingAsksOnlyTheIndex(t *testing.T) {
	s, objects := openStore(t)
	var keys []cas.Key
	for i := range 2000 {
		data := castest.Bytes(uint64(i), 30)
		k := castest.CASKey("org1", data)
		keys = append(keys, k)
		if i%2 == 0 {
			put(t, s, k, data)
		}
	}
	missing, err := s.FindMissing(t.Context(), keys)
	if err != nil {
		t.Fatal(err)
	}
	if len(missing) != 1000 {
		t.Fatalf("FindMissing reported %d missing; want 1000", len(missing))
	}
	if n := objects.finds.Load() + objects.gets.Load(); n != 0 {
		t.Fatalf("FindMissing sent %d requests to the object store; want none", n)
	}
}

// An object without a row (its node died between writing and committing)
// does not exist for clients.
func TestObjectsWithoutRowsAreMisses(t *testing.T) {
	s, objects := openStore(t)
	data := []byte("written, never committed")
	k := castest.CASKey("org1", data)
	objects.Store.Put(t.Context(), k, int64(len(data)), bytes.NewReader(data))
	if !isMissing(t, s, k) {
		t.Fatal("FindMissing found an object that has no index row")
	}
	if _, _, err := s.Get(t.Context(), k, 0); !errors.Is(err, cas.ErrNotFound) {
		t.Fatalf("Get of an object without a row = %v; want a miss", err)
	}
}

// A row whose object was deleted behind the store's back (a bucket
// expiration rule) is a miss at the first read, and its row goes, so
// FindMissing stops claiming the object.
func TestRowsOfLostObjectsAreDeletedAtTheFirstRead(t *testing.T) {
	s, objects := openStore(t)
	data := []byte("expired by a lifecycle rule")
	k := castest.CASKey("org1", data)
	put(t, s, k, data)
	objects.Store.Delete(t.Context(), k)
	if isMissing(t, s, k) {
		t.Fatal("before any read the index still has the row; this test expects that")
	}
	if _, _, err := s.Get(t.Context(), k, 0); !errors.Is(err, cas.ErrNotFound) {
		t.Fatalf("Get of a lost object = %v; want a miss", err)
	}
	if !isMissing(t, s, k) {
		t.Fatal("after a read found the object lost, FindMissing still reports it present")
	}
}

// A Put whose object was deleted while it was being written (an eviction
// or a partition delete on another node) fails and leaves nothing.
func TestPutRacingADeleteFailsAndLeavesNothing(t *testing.T) {
	s, objects := openStore(t)
	data := []byte("uploaded while org1's data is deleted")
	k := castest.CASKey("org1", data)
	var once sync.Once
	objects.beforePublish = func(cas.Key) {
		once.Do(func() {
			if _, err := s.DeletePartition(context.Background(), "org1"); err != nil {
				t.Error(err)
			}
		})
	}
	err := s.Put(t.Context(), k, int64(len(data)), bytes.NewReader(data))
	if !errors.Is(err, pgindex.ErrDeletedWhileWriting) {
		t.Fatalf("Put racing a partition delete = %v; want ErrDeletedWhileWriting", err)
	}
	if objects.Raw(k) != nil {
		t.Fatal("the raced Put left its object in the object store")
	}
	if !isMissing(t, s, k) {
		t.Fatal("the raced Put left an index row")
	}
	put(t, s, k, data) // the client's retry
	if isMissing(t, s, k) {
		t.Fatal("the retried Put is missing")
	}
}

// A delete whose object store delete failed is finished by Recover once
// it counts as unfinished; until then writes of the key are refused.
func TestFailedDeletesAreRecovered(t *testing.T) {
	s, objects := openStore(t)
	data := []byte("delete me")
	k := castest.CASKey("org1", data)
	put(t, s, k, data)
	objects.deleteErr = errors.New("object store down")
	if err := s.Delete(t.Context(), k); err == nil {
		t.Fatal("Delete succeeded while the object store failed")
	}
	if !isMissing(t, s, k) {
		t.Fatal("after a failed Delete the key is still found")
	}
	if err := s.Put(t.Context(), k, int64(len(data)), bytes.NewReader(data)); !errors.Is(err, pgindex.ErrDeletedWhileWriting) {
		t.Fatalf("Put while the delete is unfinished = %v; want ErrDeletedWhileWriting", err)
	}
	objects.deleteErr = nil
	if n, err := s.Recover(t.Context()); err != nil || n != 0 {
		t.Fatalf("Recover right away = %d, %v; a delete counts as unfinished only after %v", n, err, pgindex.UnfinishedAfter)
	}
	// The same recovery, as it runs after UnfinishedAfter: pretend the
	// delete started that long ago.
	ageTombstones(t, s, pgindex.UnfinishedAfter+time.Minute)
	if n, err := s.Recover(t.Context()); err != nil || n != 1 {
		t.Fatalf("Recover = %d, %v; want the one delete finished", n, err)
	}
	if objects.Raw(k) != nil {
		t.Fatal("Recover did not delete the object")
	}
	put(t, s, k, data)
}

func TestEvictDeletesRowsAndObjects(t *testing.T) {
	s, objects := openStore(t)
	var keys []cas.Key
	for i := range 5 {
		data := castest.Bytes(uint64(i), 1000)
		k := castest.CASKey("org1", data)
		put(t, s, k, data)
		keys = append(keys, k)
	}
	if n, _, err := s.Evict(t.Context(), "", 10); n != 0 || err != nil {
		t.Fatalf("Evict inside the retention = %d, %v; want nothing", n, err)
	}
	ageRows(t, s, 2*time.Hour)
	n, bytes, err := s.Evict(t.Context(), "", 3)
	if err != nil || n != 3 || bytes != 3000 {
		t.Fatalf("Evict(3) = %d objects, %d bytes, %v", n, bytes, err)
	}
	if left := len(objects.Keys("org1")); left != 2 {
		t.Fatalf("%d objects left in the object store; want 2", left)
	}
	if used, _ := s.OrgUsage(t.Context(), "org1"); used != 2000 {
		t.Fatalf("OrgUsage after eviction = %d; want 2000", used)
	}
}

func TestPingChecksBothStores(t *testing.T) {
	s := openS3Store(t)
	if err := s.Ping(t.Context()); err != nil {
		t.Fatalf("Ping: %v", err)
	}
}

// An object whose node died between writing it and recording it is
// deleted by the sweep; recorded objects and young ones stay.
func TestSweepDeletesObjectsWithoutRows(t *testing.T) {
	s := openS3Store(t)
	ctx := t.Context()
	indexed := []byte("written and recorded")
	orphan := []byte("written, never recorded: its node died")
	put(t, s, castest.CASKey("org1", indexed), indexed)
	if err := s.objects.Put(ctx, castest.CASKey("org2", orphan), int64(len(orphan)), bytes.NewReader(orphan)); err != nil {
		t.Fatal(err)
	}
	if n, _, err := s.Sweep(ctx, time.Hour); err != nil || n != 0 {
		t.Fatalf("Sweep of young objects = %d, %v; want nothing swept", n, err)
	}
	n, size, err := s.Sweep(ctx, 0)
	if err != nil || n != 1 || size != int64(len(orphan)) {
		t.Fatalf("Sweep = %d objects, %d bytes, %v; want the one orphan", n, size, err)
	}
	if missing, _ := s.objects.FindMissing(ctx, []cas.Key{castest.CASKey("org2", orphan), castest.CASKey("org1", indexed)}); len(missing) != 1 || missing[0].Partition != "org2" {
		t.Fatalf("after the sweep the object store misses %v; want only the orphan gone", missing)
	}
}

// Of several nodes, one sweeps a day: the job is due once per period.
func TestSweepRunsOncePerPeriod(t *testing.T) {
	ix, _ := openIndex(t)
	defer ix.Close()
	for i, want := range []bool{true, false} {
		due, err := ix.JobDue(t.Context(), "orphan_sweep", SweepEvery)
		if err != nil || due != want {
			t.Fatalf("JobDue call %d = %v, %v; want %v", i+1, due, err, want)
		}
	}
}
