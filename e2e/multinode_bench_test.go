package e2e_test

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"github.com/google/uuid"
	bspb "google.golang.org/genproto/googleapis/bytestream"
	"google.golang.org/grpc/metadata"

	"github.com/sealcache/sealcache/e2e/e2etest"
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
				var total int64
				for i := range sizes {
					sizes[i] = 1000 + rng.IntN(199_001)
					total += int64(sizes[i])
				}
				digests := make([]*repb.Digest, blobs)

				writeLat, writeTook := runWorkers(b, workers, blobs, func(w, i int) error {
					data := benchBlob(i, sizes[i])
					digests[i] = e2etest.DigestOf(data)
					return bsWrite(ctx, clients[w%len(clients)], digests[i], data)
				})
				order := make([]int, 0, blobs*reads)
				for range reads {
					for i := range blobs {
						order = append(order, i)
					}
				}
				rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
				readLat, readTook := runWorkers(b, workers, len(order), func(w, j int) error {
					return bsRead(ctx, clients[w%len(clients)], digests[order[j]])
				})

				b.ReportMetric(float64(blobs)/writeTook.Seconds(), "write-blobs/s")
				b.ReportMetric(float64(total)/1e6/writeTook.Seconds(), "write-MB/s")
				b.ReportMetric(ms(writeLat, 50), "write-p50-ms")
				b.ReportMetric(ms(writeLat, 99), "write-p99-ms")
				b.ReportMetric(float64(len(order))/readTook.Seconds(), "read-blobs/s")
				b.ReportMetric(float64(total*reads)/1e6/readTook.Seconds(), "read-MB/s")
				b.ReportMetric(ms(readLat, 50), "read-p50-ms")
				b.ReportMetric(ms(readLat, 99), "read-p99-ms")
				b.ReportMetric(0, "ns/op")
			}
		})
	}
}

// runWorkers runs op(worker, i) for i in [0, n) on workers goroutines and
// returns each call's latency and the wall time.
func runWorkers(b *testing.B, workers, n int, op func(w, i int) error) ([]time.Duration, time.Duration) {
	lat := make([]time.Duration, n)
	var next atomic.Int64
	var failed atomic.Pointer[error]
	start := time.Now()
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n || failed.Load() != nil {
					return
				}
				t0 := time.Now()
				if err := op(w, i); err != nil {
					failed.Store(&err)
					return
				}
				lat[i] = time.Since(t0)
			}
		})
	}
	wg.Wait()
	if err := failed.Load(); err != nil {
		b.Fatal(*err)
	}
	return lat, time.Since(start)
}

func ms(lat []time.Duration, pct int) float64 {
	s := slices.Clone(lat)
	slices.Sort(s)
	return float64(s[(len(s)-1)*pct/100].Microseconds()) / 1000
}

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
