package s3

import (
	"bytes"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/sealcache/sealcache/cas"
	"github.com/sealcache/sealcache/cas/castest"
)

// putMany stores n small distinct objects in partition p, 16 at a time,
// and returns their total size.
func putMany(t *testing.T, s *Store, p cas.Partition, n int) int64 {
	t.Helper()
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		total int64
		errs  = make(chan error, n)
		next  = make(chan int)
	)
	for range 16 {
		wg.Go(func() {
			for i := range next {
				// At least 32 random bytes, so no two objects share a key.
				data := castest.Bytes(uint64(i), int64(32+i%50))
				if err := s.Put(t.Context(), castest.CASKey(p, data), int64(len(data)), bytes.NewReader(data)); err != nil {
					errs <- err
					return
				}
				mu.Lock()
				total += int64(len(data))
				mu.Unlock()
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	return total
}

// Walking, measuring and deleting a partition page through listings of
// 1,000 names and delete in batches of 1,000, so partitions of any size
// work; the bytes freed are the bytes stored.
func TestPartitionsLargerThanOnePage(t *testing.T) {
	const n = 2*deleteBatch + 7
	s, srv, bucket := openStore(t)
	stored := putMany(t, s, "org1/kA", n)
	other := putMany(t, s, "org10", 3)

	walked, walkedBytes := 0, int64(0)
	err := s.WalkPartition(t.Context(), "org1", func(o cas.StoredObject) error {
		walked++
		walkedBytes += o.Size
		return nil
	})
	if err != nil || walked != n || walkedBytes != stored {
		t.Fatalf("WalkPartition(org1) saw %d objects of %d bytes, err %v; want %d of %d", walked, walkedBytes, err, n, stored)
	}
	if usage, err := s.OrgUsage(t.Context(), "org1"); err != nil || usage != stored {
		t.Fatalf("OrgUsage(org1) = %d, %v; want %d", usage, err, stored)
	}
	freed, err := s.DeletePartition(t.Context(), "org1")
	if err != nil || freed != stored {
		t.Fatalf("DeletePartition(org1) = %d, %v; want %d bytes freed", freed, err, stored)
	}
	names := listNames(t, srv, bucket)
	if len(names) != 3 {
		t.Fatalf("after deleting org1 the bucket holds %d objects; want org10's 3", len(names))
	}
	if usage, err := s.OrgUsage(t.Context(), "org10"); err != nil || usage != other {
		t.Fatalf("OrgUsage(org10) = %d, %v; want %d", usage, err, other)
	}
}

// An object under a partition that this store did not write fails the
// walk (which backs the check that an org's data is gone) with a message
// naming it; deleting the partition removes it with the rest.
func TestForeignObjectsInAPartition(t *testing.T) {
	s, srv, bucket := openStore(t)
	data := []byte("a cache entry")
	if err := s.Put(t.Context(), castest.CASKey("org1", data), int64(len(data)), bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	const foreign = "sealcache/org1/notes.txt"
	_, err := srv.Client().PutObject(t.Context(), &s3.PutObjectInput{
		Bucket: aws.String(bucket), Key: aws.String(foreign), Body: strings.NewReader("left by hand"),
	})
	if err != nil {
		t.Fatal(err)
	}
	err = s.WalkPartition(t.Context(), "org1", func(cas.StoredObject) error { return nil })
	if err == nil || !strings.Contains(err.Error(), foreign) {
		t.Fatalf("WalkPartition over a foreign object = %v; want an error naming %s", err, foreign)
	}
	if _, err := s.DeletePartition(t.Context(), "org1"); err != nil {
		t.Fatal(err)
	}
	if names := listNames(t, srv, bucket); len(names) != 0 {
		t.Fatalf("after DeletePartition(org1) the bucket holds %v", names)
	}
}

// A Store refuses work once closed.
func TestClosedStoreRefusesWork(t *testing.T) {
	s, _, _ := openStore(t)
	s.Close()
	k := castest.CASKey("org1", []byte("x"))
	if _, _, err := s.Get(t.Context(), k, 0); err == nil || isNotFound(err) {
		t.Fatalf("Get after Close = %v; want an error that is no miss", err)
	}
	if err := s.Put(t.Context(), k, 1, strings.NewReader("x")); err == nil {
		t.Fatal("Put after Close succeeded")
	}
	if _, err := s.FindMissing(t.Context(), []cas.Key{k}); err == nil {
		t.Fatal("FindMissing after Close succeeded")
	}
}
