package server

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sealcache/sealcache/cas"
	"github.com/sealcache/sealcache/cas/memory"
)

// barrierStore lets no Put or Get finish until want of them are in
// progress at once: a batch whose entries were handled one after another
// would never finish.
type barrierStore struct {
	cas.BlobStore
	want    int
	mu      sync.Mutex
	arrived int
	open    chan struct{}
}

func newBarrierStore(inner cas.BlobStore, want int) *barrierStore {
	return &barrierStore{BlobStore: inner, want: want, open: make(chan struct{})}
}

func (b *barrierStore) wait(ctx context.Context) error {
	b.mu.Lock()
	b.arrived++
	if b.arrived == b.want {
		close(b.open)
	}
	b.mu.Unlock()
	select {
	case <-b.open:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (b *barrierStore) Put(ctx context.Context, key cas.Key, size int64, r io.Reader) error {
	if err := b.wait(ctx); err != nil {
		return err
	}
	return b.BlobStore.Put(ctx, key, size, r)
}

func (b *barrierStore) Get(ctx context.Context, key cas.Key, offset int64) (io.ReadCloser, int64, error) {
	if err := b.wait(ctx); err != nil {
		return nil, 0, err
	}
	return b.BlobStore.Get(ctx, key, offset)
}

// The entries of one batch are stored, and read, concurrently (up to
// batchConcurrency at once): with a remote store a batch then costs about
// one round trip rather than one per entry.
func TestBatchEntriesAreHandledConcurrently(t *testing.T) {
	ctx := withPrincipal(context.Background(), principal{OrgID: "org1"})
	var update repb.BatchUpdateBlobsRequest
	var read repb.BatchReadBlobsRequest
	for i := range batchConcurrency {
		data := []byte(fmt.Sprintf("blob %d", i))
		update.Requests = append(update.Requests, &repb.BatchUpdateBlobsRequest_Request{Digest: sha(data).Proto(), Data: data})
		read.Digests = append(read.Digests, sha(data).Proto())
	}
	mem := memory.New()
	c := newCASServer(newBarrierStore(mem, batchConcurrency), BlobLimit{}, newMetrics(prometheus.NewRegistry()))
	resp, err := c.BatchUpdateBlobs(ctx, &update)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range resp.Responses {
		if r.Status.GetCode() != 0 {
			t.Fatalf("entry %s: %s", r.Digest.Hash, r.Status.GetMessage())
		}
	}
	c = newCASServer(newBarrierStore(mem, batchConcurrency), BlobLimit{}, newMetrics(prometheus.NewRegistry()))
	got, err := c.BatchReadBlobs(ctx, &read)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range got.Responses {
		if r.Status.GetCode() != 0 || !bytes.Equal(r.Data, update.Requests[i].Data) {
			t.Fatalf("entry %d: %v, %q", i, r.Status, r.Data)
		}
	}
}

// slowStore adds a fixed delay to every Put and Get, like a remote object
// store's round trip.
type slowStore struct {
	cas.BlobStore
	delay time.Duration
}

func (s slowStore) Put(ctx context.Context, key cas.Key, size int64, r io.Reader) error {
	time.Sleep(s.delay)
	return s.BlobStore.Put(ctx, key, size, r)
}

func (s slowStore) Get(ctx context.Context, key cas.Key, offset int64) (io.ReadCloser, int64, error) {
	time.Sleep(s.delay)
	return s.BlobStore.Get(ctx, key, offset)
}

// BenchmarkBatchOverRemoteStore: BatchUpdateBlobs and BatchReadBlobs of 100
// blobs over a store with a 2 ms round trip (an object store in the same
// region). Handled one entry after another a batch would take 200 ms;
// batchConcurrency entries at a time take about 100/16 round trips.
func BenchmarkBatchOverRemoteStore(b *testing.B) {
	ctx := withPrincipal(context.Background(), principal{OrgID: "org1"})
	c := newCASServer(slowStore{memory.New(), 2 * time.Millisecond}, BlobLimit{}, newMetrics(prometheus.NewRegistry()))
	var update repb.BatchUpdateBlobsRequest
	var read repb.BatchReadBlobsRequest
	for i := range 100 {
		data := []byte(fmt.Sprintf("blob %d of the batch", i))
		update.Requests = append(update.Requests, &repb.BatchUpdateBlobsRequest_Request{Digest: sha(data).Proto(), Data: data})
		read.Digests = append(read.Digests, sha(data).Proto())
	}
	b.Run("update", func(b *testing.B) {
		for b.Loop() {
			if _, err := c.BatchUpdateBlobs(ctx, &update); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/batch")
	})
	b.Run("read", func(b *testing.B) {
		for b.Loop() {
			if _, err := c.BatchReadBlobs(ctx, &read); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/batch")
	})
}
