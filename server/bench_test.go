package server

import (
	"context"
	"fmt"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc"

	"github.com/sealcache/sealcache/server/bench"
)

// benchmarkFindMissing asks for 100 small-blob digests per call, half of
// them stored, the way Bazel checks an action's inputs.
func benchmarkFindMissing(b *testing.B, conn *grpc.ClientConn) {
	ctx := context.Background()
	client := repb.NewContentAddressableStorageClient(conn)
	var digests []*repb.Digest
	var upload []*repb.BatchUpdateBlobsRequest_Request
	for i := range 100 {
		data := []byte(fmt.Sprintf("small blob %d", i))
		digests = append(digests, sha(data).Proto())
		if i%2 == 0 {
			upload = append(upload, &repb.BatchUpdateBlobsRequest_Request{Digest: sha(data).Proto(), Data: data})
		}
	}
	if _, err := client.BatchUpdateBlobs(ctx, &repb.BatchUpdateBlobsRequest{Requests: upload}); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		if _, err := client.FindMissingBlobs(ctx, &repb.FindMissingBlobsRequest{BlobDigests: digests}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*len(digests))/b.Elapsed().Seconds(), "digests/s")
}

// BenchmarkFindMissing compares an API key (checked on every call, served
// from the auth cache) with anonymous access.
func BenchmarkFindMissing(b *testing.B) {
	b.Run("authenticated", func(b *testing.B) {
		env := startBenchServer(b, AnonymousNone)
		benchmarkFindMissing(b, env.conn)
	})
	b.Run("anonymous", func(b *testing.B) {
		env := startBenchServer(b, AnonymousWrite)
		benchmarkFindMissing(b, env.dial(""))
	})
}

// BenchmarkCacheThroughput runs the client-side bench (as `sealcache bench`
// does) against an in-process server.
func BenchmarkCacheThroughput(b *testing.B) {
	env := startBenchServer(b, AnonymousNone)
	o := bench.DefaultOptions()
	o.LargeSize = 256 << 20
	for b.Loop() {
		r, err := bench.Run(context.Background(), env.conn, o)
		if err != nil {
			b.Fatal(err)
		}
		b.Log(r)
		b.ReportMetric(r.LargeUploadMBps, "up-MB/s")
		b.ReportMetric(r.LargeDownloadMBps, "down-MB/s")
		b.ReportMetric(r.FindMissingDigestsPerSec, "findmissing-digests/s")
		b.ReportMetric(r.SmallUploadBlobsPerSec, "small-upload-blobs/s")
	}
}

func startBenchServer(b *testing.B, anonymous string) *testEnv {
	return startServer(b, func(c *Config) { c.AnonymousAccess = anonymous })
}
