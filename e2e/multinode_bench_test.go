package e2e_test

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"github.com/google/uuid"
	bspb "google.golang.org/genproto/googleapis/bytestream"
	"google.golang.org/grpc/metadata"

	"github.com/sealcache/sealcache/e2e/e2etest"
	"github.com/sealcache/sealcache/internal/loadgen"
)

// A casload-style mixed load against real server processes: 3,000 blobs
// of 1-200 KB written with ByteStream by 32 workers, then each read 3 times
// (in random order, by 32 workers). "local": one node, its disk only (the
// embedded default, SQLite); "shared-1-node": one node over PostgreSQL and
// versitygw; "shared-2-nodes": the workers split over two such nodes, so a
// blob is often read on a node that did not write it (a shared read that
// fills its disk tier). Everything runs on this machine: the figures say
// what the shared store costs relative to the disk alone here, not what a
// deployment with its own database and object store would do.
//
//	go test -run '^$' -bench MultiNodeLoad -benchtime 1x ./e2e/
func BenchmarkMultiNodeLoad(b *testing.B) {
	const blobs, workers, reads = 3000, 32, 3
	for _, setup := range []struct {
		name  string
		nodes func(b *testing.B) []*e2etest.Server
	}{
		{"local", func(b *testing.B) []*e2etest.Server { return []*e2etest.Server{e2etest.StartServer(b)} }},
		{"shared-1-node", func(b *testing.B) []*e2etest.Server { return e2etest.StartNodes(b, e2etest.NewShared(b), 1) }},
		{"shared-2-nodes", func(b *testing.B) []*e2etest.Server { return e2etest.StartNodes(b, e2etest.NewShared(b), 2) }},
	} {
		b.Run(setup.name, func(b *testing.B) {
			for b.Loop() {
				nodes := setup.nodes(b)
				key := nodes[0].AdminKey()
				clients := make([]bspb.ByteStreamClient, len(nodes))
				for i, n := range nodes {
					clients[i] = bspb.NewByteStreamClient(n.Client(key).Conn())
				}
				ctx := metadata.AppendToOutgoingContext(context.Background(), "x-api-key", key)
				rng := rand.New(rand.NewPCG(1, 2))
				sizes := make([]int, blobs)
				for i := range sizes {
					sizes[i] = 1000 + rng.IntN(199_001)
				}
				digests := make([]*repb.Digest, blobs)

				write, err := loadgen.Run(workers, blobs, func(w, i int) (int64, error) {
					data := benchBlob(i, sizes[i])
					digests[i] = e2etest.DigestOf(data)
					return int64(len(data)), bsWrite(ctx, clients[w%len(clients)], digests[i], data)
				})
				if err != nil {
					b.Fatal(err)
				}
				order := make([]int, 0, blobs*reads)
				for range reads {
					for i := range blobs {
						order = append(order, i)
					}
				}
				rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
				read, err := loadgen.Run(workers, len(order), func(w, j int) (int64, error) {
					d := digests[order[j]]
					return d.SizeBytes, bsRead(ctx, clients[w%len(clients)], d)
				})
				if err != nil {
					b.Fatal(err)
				}

				b.ReportMetric(write.OpsPerSec(), "write-blobs/s")
				b.ReportMetric(write.MBPerSec(), "write-MB/s")
				b.ReportMetric(ms(write.P50), "write-p50-ms")
				b.ReportMetric(ms(write.P99), "write-p99-ms")
				b.ReportMetric(read.OpsPerSec(), "read-blobs/s")
				b.ReportMetric(read.MBPerSec(), "read-MB/s")
				b.ReportMetric(ms(read.P50), "read-p50-ms")
				b.ReportMetric(ms(read.P99), "read-p99-ms")
				b.ReportMetric(0, "ns/op")
			}
		})
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// benchBlob is blob i's n bytes: distinct per blob, not compressible.
func benchBlob(i, n int) []byte {
	r := rand.New(rand.NewPCG(uint64(i), 0x5eac))
	b := make([]byte, n)
	for j := 0; j < n; j += 8 {
		v := r.Uint64()
		for k := 0; k < 8 && j+k < n; k++ {
			b[j+k] = byte(v >> (8 * k))
		}
	}
	return b
}

// bsChunk is the ByteStream message size, as Bazel sends.
const bsChunk = 16 << 10

func bsWrite(ctx context.Context, bs bspb.ByteStreamClient, d *repb.Digest, data []byte) error {
	stream, err := bs.Write(ctx)
	if err != nil {
		return err
	}
	name := fmt.Sprintf("uploads/%s/blobs/%s/%d", uuid.NewString(), d.Hash, d.SizeBytes)
	for off := 0; ; off += bsChunk {
		end := min(off+bsChunk, len(data))
		req := &bspb.WriteRequest{WriteOffset: int64(off), Data: data[off:end], FinishWrite: end == len(data)}
		if off == 0 {
			req.ResourceName = name
		}
		if err := stream.Send(req); err != nil {
			break // the answer says why
		}
		if end == len(data) {
			break
		}
	}
	resp, err := stream.CloseAndRecv()
	if err != nil {
		return fmt.Errorf("writing %s: %w", e2etest.String(d), err)
	}
	if resp.CommittedSize != d.SizeBytes {
		return fmt.Errorf("writing %s: committed %d bytes", e2etest.String(d), resp.CommittedSize)
	}
	return nil
}

func bsRead(ctx context.Context, bs bspb.ByteStreamClient, d *repb.Digest) error {
	stream, err := bs.Read(ctx, &bspb.ReadRequest{ResourceName: fmt.Sprintf("blobs/%s/%d", d.Hash, d.SizeBytes)})
	if err != nil {
		return err
	}
	var n int64
	for {
		resp, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("reading %s: %w", e2etest.String(d), err)
		}
		n += int64(len(resp.Data))
	}
	if n != d.SizeBytes {
		return fmt.Errorf("reading %s: got %d bytes", e2etest.String(d), n)
	}
	return nil
}
