// Package bench measures a REAPI cache server from the client side: large
// blob ByteStream throughput and small-blob FindMissing and batch rates. It
// talks to any REAPI server, so the same figures can be taken of Sealcache
// and of other caches on the same machine.
package bench

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"strconv"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	bspb "google.golang.org/genproto/googleapis/bytestream"
	"google.golang.org/grpc"
)

// Options say how much to send.
type Options struct {
	Instance   string
	LargeSize  int64 // bytes of the large blob (0 skips the large-blob test)
	SmallCount int   // number of small blobs
	SmallMin   int   // smallest small blob
	SmallMax   int   // largest small blob
	FindBatch  int   // digests per FindMissingBlobs call
	FindRounds int   // FindMissingBlobs calls over the small blobs
	Seed       uint64
}

// DefaultOptions are sized for a quick run on one machine.
func DefaultOptions() Options {
	return Options{LargeSize: 256 << 20, SmallCount: 5000, SmallMin: 1000, SmallMax: 100_000, FindBatch: 1000, FindRounds: 200, Seed: uint64(time.Now().UnixNano())}
}

// Report holds the measured rates.
type Report struct {
	LargeUploadMBps, LargeDownloadMBps float64
	SmallUploadBlobsPerSec             float64
	SmallUploadMBps                    float64
	SmallReadBlobsPerSec               float64
	FindMissingDigestsPerSec           float64
}

func (r Report) String() string {
	return fmt.Sprintf("large upload %.0f MB/s, large download %.0f MB/s, small upload %.0f blobs/s (%.0f MB/s), small batch read %.0f blobs/s, FindMissing %.0f digests/s",
		r.LargeUploadMBps, r.LargeDownloadMBps, r.SmallUploadBlobsPerSec, r.SmallUploadMBps, r.SmallReadBlobsPerSec, r.FindMissingDigestsPerSec)
}

// Run measures the server behind conn.
func Run(ctx context.Context, conn *grpc.ClientConn, o Options) (Report, error) {
	var r Report
	bs := bspb.NewByteStreamClient(conn)
	cas := repb.NewContentAddressableStorageClient(conn)
	rng := rand.New(rand.NewPCG(o.Seed, 1))
	if o.LargeSize > 0 {
		up, down, err := Large(ctx, bs, o.Instance, o.LargeSize, o.Seed)
		if err != nil {
			return r, err
		}
		r.LargeUploadMBps, r.LargeDownloadMBps = up, down
	}
	if o.SmallCount > 0 {
		blobs := make([][]byte, o.SmallCount)
		digests := make([]*repb.Digest, o.SmallCount)
		var total int
		for i := range blobs {
			b := make([]byte, o.SmallMin+rng.IntN(o.SmallMax-o.SmallMin+1))
			fill(rng, b)
			blobs[i] = b
			sum := sha256.Sum256(b)
			digests[i] = &repb.Digest{Hash: hex.EncodeToString(sum[:]), SizeBytes: int64(len(b))}
			total += len(b)
		}
		start := time.Now()
		for i := 0; i < len(blobs); {
			req := &repb.BatchUpdateBlobsRequest{InstanceName: o.Instance}
			size := 0
			for ; i < len(blobs) && size+len(blobs[i]) < 3<<20; i++ {
				req.Requests = append(req.Requests, &repb.BatchUpdateBlobsRequest_Request{Digest: digests[i], Data: blobs[i]})
				size += len(blobs[i])
			}
			resp, err := cas.BatchUpdateBlobs(ctx, req)
			if err != nil {
				return r, fmt.Errorf("BatchUpdateBlobs: %w", err)
			}
			for _, s := range resp.Responses {
				if s.Status.GetCode() != 0 {
					return r, fmt.Errorf("BatchUpdateBlobs: blob %s: %s", s.Digest.GetHash(), s.Status.GetMessage())
				}
			}
		}
		el := time.Since(start).Seconds()
		r.SmallUploadBlobsPerSec = float64(len(blobs)) / el
		r.SmallUploadMBps = float64(total) / 1e6 / el

		start = time.Now()
		for i := 0; i < len(digests); {
			req := &repb.BatchReadBlobsRequest{InstanceName: o.Instance}
			size := int64(0)
			for ; i < len(digests) && size+digests[i].SizeBytes < 3<<20; i++ {
				req.Digests = append(req.Digests, digests[i])
				size += digests[i].SizeBytes
			}
			if _, err := cas.BatchReadBlobs(ctx, req); err != nil {
				return r, fmt.Errorf("BatchReadBlobs: %w", err)
			}
		}
		r.SmallReadBlobsPerSec = float64(len(digests)) / time.Since(start).Seconds()

		start = time.Now()
		n := 0
		for round := 0; round < o.FindRounds; round++ {
			off := (round * o.FindBatch) % len(digests)
			end := min(off+o.FindBatch, len(digests))
			if _, err := cas.FindMissingBlobs(ctx, &repb.FindMissingBlobsRequest{InstanceName: o.Instance, BlobDigests: digests[off:end]}); err != nil {
				return r, fmt.Errorf("FindMissingBlobs: %w", err)
			}
			n += end - off
		}
		r.FindMissingDigestsPerSec = float64(n) / time.Since(start).Seconds()
	}
	return r, nil
}

// Large uploads and downloads one blob of size bytes and returns MB/s each way.
func Large(ctx context.Context, bs bspb.ByteStreamClient, instance string, size int64, seed uint64) (upMBps, downMBps float64, err error) {
	h := sha256.New()
	io.Copy(h, randomStream(seed, size))
	hash := hex.EncodeToString(h.Sum(nil))
	prefix := ""
	if instance != "" {
		prefix = instance + "/"
	}
	start := time.Now()
	stream, err := bs.Write(ctx)
	if err != nil {
		return 0, 0, err
	}
	name := prefix + "uploads/bench-" + strconv.FormatUint(seed, 36) + "/blobs/" + hash + "/" + strconv.FormatInt(size, 10)
	src := randomStream(seed, size)
	buf := make([]byte, 1<<20)
	var off int64
	for off < size {
		n, _ := io.ReadFull(src, buf)
		if err := stream.Send(&bspb.WriteRequest{ResourceName: name, WriteOffset: off, Data: buf[:n], FinishWrite: off+int64(n) == size}); err != nil {
			break // CloseAndRecv reports why
		}
		off += int64(n)
	}
	if _, err := stream.CloseAndRecv(); err != nil {
		return 0, 0, fmt.Errorf("ByteStream Write: %w", err)
	}
	upMBps = float64(size) / 1e6 / time.Since(start).Seconds()

	start = time.Now()
	rs, err := bs.Read(ctx, &bspb.ReadRequest{ResourceName: prefix + "blobs/" + hash + "/" + strconv.FormatInt(size, 10)})
	if err != nil {
		return 0, 0, err
	}
	var got int64
	for {
		resp, err := rs.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			return 0, 0, fmt.Errorf("ByteStream Read: %w", err)
		}
		got += int64(len(resp.Data))
	}
	if got != size {
		return 0, 0, fmt.Errorf("ByteStream Read returned %d of %d bytes", got, size)
	}
	downMBps = float64(size) / 1e6 / time.Since(start).Seconds()
	return upMBps, downMBps, nil
}

func fill(rng *rand.Rand, b []byte) {
	for i := 0; i < len(b); i += 8 {
		v := rng.Uint64()
		for j := 0; j < 8 && i+j < len(b); j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
}

// randomStream yields n bytes that differ for every seed and every MiB,
// cheaply: one random MiB repeated, each copy stamped with its index, so
// the client spends its CPU on sending rather than on making data.
func randomStream(seed uint64, n int64) io.Reader {
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], seed)
	block := make([]byte, 1<<20)
	rand.NewChaCha8(key).Read(block)
	return io.LimitReader(&stampedBlocks{block: block}, n)
}

type stampedBlocks struct {
	block []byte
	index uint64 // which copy of block is being read
	off   int
}

func (s *stampedBlocks) Read(p []byte) (int, error) {
	if s.off == 0 {
		binary.LittleEndian.PutUint64(s.block, s.index)
	}
	n := copy(p, s.block[s.off:])
	s.off += n
	if s.off == len(s.block) {
		s.off = 0
		s.index++
	}
	return n, nil
}
