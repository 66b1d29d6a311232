// Package bench measures a REAPI cache server from the client side, the
// way issue 12 states its targets: a mixed small-blob load from 32 clients,
// one 1 GiB blob over ByteStream, FindMissingBlobs of 10,000 digests idle
// and under load, zstd-compressed transfers next to zstd's own speed, and
// batch RPCs. It talks to any REAPI server, so the same figures can be
// taken of Sealcache, of an older Sealcache, and of other caches.
//
// Each measurement is a function of its own (Mixed, Large, FindMissing,
// Zstd, Batch) returning a report; Suite runs them all for one or two
// API keys (a plain org and a CMEK org) and Table prints the figures next
// to the targets. `sealcache bench` is the command line for it, and
// `make bench` starts a server and runs it (see server/bench/run.sh).
//
// The client shares the machine with the server in these measurements, so
// it does as little as it can while a figure is being taken: blobs are made
// and hashed before the clock starts, and reads are compared byte for byte
// rather than hashed, except for the 1 GiB download, which hashes what it
// receives as a real client would.
package bench

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"strconv"
	"sync/atomic"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	bspb "google.golang.org/genproto/googleapis/bytestream"
	"google.golang.org/grpc"

	"github.com/sealcache/sealcache/internal/loadgen"
)

// Dialer opens a new connection to the server under test. Benchmarks with
// many clients open one connection per client, as separate Bazel processes
// would.
type Dialer func() (*grpc.ClientConn, error)

// Phase sums up one timed phase: operations, bytes, time and latencies.
type Phase = loadgen.Phase

// blob is one blob of a workload, with its digest.
type blob struct {
	digest *repb.Digest
	data   []byte
}

// randomBlobs makes n incompressible blobs (loadgen.RandomData) with their
// digests.
func randomBlobs(seed uint64, n, minSize, maxSize int) []blob {
	data := loadgen.RandomData(seed, n, minSize, maxSize)
	blobs := make([]blob, n)
	for i, d := range data {
		blobs[i] = blob{digest: sha256Digest(d), data: d}
	}
	return blobs
}

func sha256Digest(data []byte) *repb.Digest {
	sum := sha256.Sum256(data)
	return &repb.Digest{Hash: hex.EncodeToString(sum[:]), SizeBytes: int64(len(data))}
}

// resourcePrefix is what an instance name adds in front of resource names.
func resourcePrefix(instance string) string {
	if instance == "" {
		return ""
	}
	return instance + "/"
}

var uploadCounter atomic.Uint64

// uploadName is a fresh ByteStream upload resource name for d.
func uploadName(instance string, d *repb.Digest, compressed bool) string {
	id := fmt.Sprintf("%x-%d", time.Now().UnixNano(), uploadCounter.Add(1))
	return resourcePrefix(instance) + "uploads/" + id + "/" + readName("", d, compressed)
}

// readName is the ByteStream read resource name of d.
func readName(instance string, d *repb.Digest, compressed bool) string {
	blobs := "blobs/"
	if compressed {
		blobs = "compressed-blobs/zstd/"
	}
	return resourcePrefix(instance) + blobs + d.Hash + "/" + strconv.FormatInt(d.SizeBytes, 10)
}

// writeBlob uploads data (or its compressed form) with one ByteStream
// Write stream, in messages of at most chunk bytes.
func writeBlob(ctx context.Context, bs bspb.ByteStreamClient, instance string, d *repb.Digest, data []byte, compressed bool, chunk int) error {
	stream, err := bs.Write(ctx)
	if err != nil {
		return err
	}
	name := uploadName(instance, d, compressed)
	off := 0
	for {
		n := min(chunk, len(data)-off)
		req := &bspb.WriteRequest{WriteOffset: int64(off), Data: data[off : off+n], FinishWrite: off+n == len(data)}
		if off == 0 {
			req.ResourceName = name
		}
		if err := stream.Send(req); err != nil {
			break // CloseAndRecv says why
		}
		off += n
		if off == len(data) {
			break
		}
	}
	if _, err := stream.CloseAndRecv(); err != nil {
		return fmt.Errorf("ByteStream Write %s: %w", name, err)
	}
	return nil
}

// readBlob reads a blob with ByteStream Read into buf (reused) and returns it.
func readBlob(ctx context.Context, bs bspb.ByteStreamClient, name string, buf []byte) ([]byte, error) {
	rs, err := bs.Read(ctx, &bspb.ReadRequest{ResourceName: name})
	if err != nil {
		return nil, err
	}
	buf = buf[:0]
	for {
		resp, err := rs.Recv()
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return nil, fmt.Errorf("ByteStream Read %s: %w", name, err)
		}
		buf = append(buf, resp.Data...)
	}
}

// dialAll opens n connections.
func dialAll(dial Dialer, n int) ([]*grpc.ClientConn, func(), error) {
	conns := make([]*grpc.ClientConn, 0, n)
	closeAll := func() {
		for _, c := range conns {
			c.Close()
		}
	}
	for range n {
		c, err := dial()
		if err != nil {
			closeAll()
			return nil, nil, err
		}
		conns = append(conns, c)
	}
	return conns, closeAll, nil
}
