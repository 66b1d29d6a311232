package server

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc"

	"github.com/sealcache/sealcache/encryption/kms"
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

// BenchmarkCacheThroughput runs the client bench (as `sealcache bench`
// does) against an in-process server, with small workloads: a quick check
// that every measurement runs. Figures that count come from `make bench`,
// with the server in its own process.
func BenchmarkCacheThroughput(b *testing.B) {
	env := startBenchServer(b, AnonymousNone)
	o := bench.DefaultOptions()
	o.Runs = 1
	o.Large.Size = 64 << 20
	o.Mixed.Blobs = 500
	o.FindMissing.Calls = 10
	o.Zstd.StreamSize = 8 << 20
	dial := func() (*grpc.ClientConn, error) { return env.dial(env.adminKey), nil }
	for b.Loop() {
		r, err := bench.Run(context.Background(), []bench.Target{{Name: "plain", Dial: dial}}, o)
		if err != nil {
			b.Fatal(err)
		}
		var table strings.Builder
		bench.Table(&table, r, nil)
		b.Log("\n" + table.String())
	}
}

func startBenchServer(b *testing.B, anonymous string) *testEnv {
	return startServer(b, func(c *Config) { c.AnonymousAccess = anonymous })
}

// benchSeed makes every benchmark round upload new content, so no round
// finds its blobs already stored by an earlier one.
var benchSeed = func() *atomic.Uint64 {
	var a atomic.Uint64
	a.Store(uint64(time.Now().UnixNano()))
	return &a
}()

// smallBlobs makes n blobs of 1 to 100 KB.
func smallBlobs(n int) [][]byte {
	blobs := make([][]byte, n)
	for i := range blobs {
		b := make([]byte, 1000+(i*7919)%99_001)
		for j := range b {
			b[j] = byte(i*31 + j*17 + j>>8)
		}
		blobs[i] = b
	}
	return blobs
}

// BenchmarkSealedVsPlain measures ByteStream upload and download through
// the whole server, for an org without CMEK and an org with it, in one
// process on one machine. SEALCACHE_BENCH_LARGE sets the large blob size
// (default 1GiB); SEALCACHE_BENCH_DIR puts the data directory elsewhere,
// such as /dev/shm.
func BenchmarkSealedVsPlain(b *testing.B) {
	large := int64(1 << 30)
	if v := os.Getenv("SEALCACHE_BENCH_LARGE"); v != "" {
		large = must(ParseSize(v))
	}
	for _, sealed := range []bool{false, true} {
		name := "plain"
		if sealed {
			name = "sealed"
		}
		env := startServer(b, func(c *Config) {
			c.MaxSize = 4 << 30
			if dir := os.Getenv("SEALCACHE_BENCH_DIR"); dir != "" {
				// Put the data on tmpfs (/dev/shm) to take the disk out of the comparison.
				c.DataDir = must(os.MkdirTemp(dir, "sealcache-bench-"))
				b.Cleanup(func() { os.RemoveAll(c.DataDir) })
			}
		})
		if sealed {
			if err := kms.CreateLocalKey(env.s.cfg.LocalKMSDir, "bench"); err != nil {
				b.Fatal(err)
			}
			if _, err := env.s.storage.manager.Enable(context.Background(), env.defaultOrg(), "bench", "local-kms://bench"); err != nil {
				b.Fatal(err)
			}
		}
		b.Run(name+"/large", func(b *testing.B) {
			for b.Loop() {
				seed := benchSeed.Add(1)
				o := bench.DefaultLarge()
				o.Size, o.Seed = large, seed
				r, err := bench.Large(context.Background(), env.bs(), o)
				if err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(r.UploadMBps, "up-MB/s")
				b.ReportMetric(r.DownloadMBps, "down-MB/s")
			}
		})
		b.Run(name+"/small", func(b *testing.B) {
			ctx := context.Background()
			blobs := smallBlobs(2000)
			var total int64
			for _, blob := range blobs {
				total += int64(len(blob))
			}
			var upSec, downSec float64
			round := 0
			for b.Loop() {
				round++
				stamp := benchSeed.Add(1)
				start := time.Now()
				for i, blob := range blobs {
					binary.LittleEndian.PutUint64(blob, stamp) // new content every round
					if _, err := writeBlob(ctx, env.bs(), "", sha(blob), blob); err != nil {
						b.Fatalf("blob %d: %v", i, err)
					}
				}
				upSec += time.Since(start).Seconds()
				start = time.Now()
				for _, blob := range blobs {
					if _, err := readBlob(ctx, env.bs(), readName("", sha(blob)), 0, 0); err != nil {
						b.Fatal(err)
					}
				}
				downSec += time.Since(start).Seconds()
			}
			b.ReportMetric(float64(total)*float64(round)/1e6/upSec, "up-MB/s")
			b.ReportMetric(float64(total)*float64(round)/1e6/downSec, "down-MB/s")
			b.ReportMetric(float64(len(blobs)*round)/upSec, "up-blobs/s")
		})
	}
}

// BenchmarkMixedLoad is issue 12's mixed small-blob load through an
// in-process server: 32 clients (a connection each) write 3,000 blobs of
// 1–200 KB with ByteStream, then read each 3 times. One iteration is one
// whole load; ops/s and p99 are reported per phase. SEALCACHE_BENCH_DIR
// puts the data directory elsewhere (/dev/shm for CPU-bound figures).
func BenchmarkMixedLoad(b *testing.B) {
	env := startBenchServerIn(b)
	dial := func() (*grpc.ClientConn, error) { return env.dial(env.adminKey), nil }
	for b.Loop() {
		o := bench.DefaultMixed()
		o.Seed = benchSeed.Add(1)
		r, err := bench.Mixed(context.Background(), dial, o)
		if err != nil {
			b.Fatal(err)
		}
		b.Logf("write: %v; read: %v", r.Write, r.Read)
		b.ReportMetric(r.Write.OpsPerSec(), "write-ops/s")
		b.ReportMetric(float64(r.Write.P99.Microseconds())/1000, "write-p99-ms")
		b.ReportMetric(r.Read.OpsPerSec(), "read-ops/s")
		b.ReportMetric(float64(r.Read.P99.Microseconds())/1000, "read-p99-ms")
	}
}

// BenchmarkFindMissing10k times FindMissingBlobs of 10,000 digests (half
// stored) through an in-process server, idle and under the load of 32
// clients writing and reading blobs.
func BenchmarkFindMissing10k(b *testing.B) {
	env := startBenchServerIn(b)
	dial := func() (*grpc.ClientConn, error) { return env.dial(env.adminKey), nil }
	for b.Loop() {
		o := bench.DefaultFindMissing()
		o.Seed = benchSeed.Add(1)
		r, err := bench.FindMissing(context.Background(), dial, o)
		if err != nil {
			b.Fatal(err)
		}
		b.Logf("idle: %v; under load: %v", r.Idle, r.Loaded)
		b.ReportMetric(float64(r.Idle.P50.Microseconds())/1000, "idle-p50-ms")
		b.ReportMetric(float64(r.Loaded.P50.Microseconds())/1000, "load-p50-ms")
		b.ReportMetric(float64(r.Loaded.P99.Microseconds())/1000, "load-p99-ms")
	}
}

// startBenchServerIn starts a server whose data directory is under
// SEALCACHE_BENCH_DIR when set.
func startBenchServerIn(b *testing.B) *testEnv {
	return startServer(b, func(c *Config) {
		if dir := os.Getenv("SEALCACHE_BENCH_DIR"); dir != "" {
			c.DataDir = must(os.MkdirTemp(dir, "sealcache-bench-"))
			b.Cleanup(func() { os.RemoveAll(c.DataDir) })
		}
	})
}
