package bench

import (
	"context"
	"fmt"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"

	"github.com/sealcache/sealcache/internal/loadgen"
)

// BatchOptions shape the batch RPC measurement (target 5).
type BatchOptions struct {
	Instance   string
	Batches    int // batches, sent one after the other by one client
	BatchBlobs int // blobs per batch
	MinSize    int
	MaxSize    int
	Seed       uint64
}

// DefaultBatch sends 20 batches of 100 blobs of 1 to 60 KB (about 3 MB a
// batch, under the 4 MiB batch limit), one at a time: what the server does
// with the blobs of one batch is all that is measured.
func DefaultBatch() BatchOptions {
	return BatchOptions{Batches: 20, BatchBlobs: 100, MinSize: 1000, MaxSize: 60_000}
}

// BatchReport has one phase for BatchUpdateBlobs and one for
// BatchReadBlobs; Ops counts blobs, latencies are per call.
type BatchReport struct {
	Update, Read Phase
}

// Batch writes o.Batches batches of incompressible blobs with
// BatchUpdateBlobs, then reads them back with BatchReadBlobs, one call at
// a time.
func Batch(ctx context.Context, dial Dialer, o BatchOptions) (BatchReport, error) {
	var r BatchReport
	conn, err := dial()
	if err != nil {
		return r, err
	}
	defer conn.Close()
	cas := repb.NewContentAddressableStorageClient(conn)
	all := randomBlobs(o.Seed, o.Batches*o.BatchBlobs, o.MinSize, o.MaxSize)
	batch := func(i int) []blob { return all[i*o.BatchBlobs : (i+1)*o.BatchBlobs] }

	r.Update, err = loadgen.Run(1, o.Batches, func(_, i int) (int64, error) {
		req := &repb.BatchUpdateBlobsRequest{InstanceName: o.Instance}
		var n int64
		for _, b := range batch(i) {
			req.Requests = append(req.Requests, &repb.BatchUpdateBlobsRequest_Request{Digest: b.digest, Data: b.data})
			n += int64(len(b.data))
		}
		return n, checkBatchUpdate(cas.BatchUpdateBlobs(ctx, req))
	})
	if err != nil {
		return r, err
	}
	r.Read, err = loadgen.Run(1, o.Batches, func(_, i int) (int64, error) {
		req := &repb.BatchReadBlobsRequest{InstanceName: o.Instance}
		for _, b := range batch(i) {
			req.Digests = append(req.Digests, b.digest)
		}
		resp, err := cas.BatchReadBlobs(ctx, req)
		if err != nil {
			return 0, fmt.Errorf("BatchReadBlobs: %w", err)
		}
		var n int64
		for _, e := range resp.Responses {
			n += int64(len(e.Data))
		}
		return n, checkBatchRead(resp, batch(i))
	})
	// Ops count blobs, so that rates compare with the mixed load.
	r.Update.Ops *= o.BatchBlobs
	r.Read.Ops *= o.BatchBlobs
	return r, err
}
