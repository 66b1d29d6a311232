package bench

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	bspb "google.golang.org/genproto/googleapis/bytestream"
)

// LargeOptions shape the large-blob measurement (target 2).
type LargeOptions struct {
	Instance string
	Size     int64 // bytes of the blob
	Chunk    int   // WriteRequest data size
	Seed     uint64
	// RSS, when set, is sampled every RSSInterval during both transfers;
	// the report holds the largest sample. See ProcRSS and MetricsRSS.
	RSS         func() (int64, error)
	RSSInterval time.Duration
}

// DefaultLarge is issue 12's transfer: 1 GiB in 1 MiB messages.
func DefaultLarge() LargeOptions {
	return LargeOptions{Size: 1 << 30, Chunk: 1 << 20, RSSInterval: 20 * time.Millisecond}
}

// LargeReport holds throughput each way and the server's peak RSS (0
// when not sampled).
type LargeReport struct {
	UploadMBps, DownloadMBps float64
	PeakRSS                  int64
}

// Large uploads one blob of o.Size bytes with ByteStream Write, then
// downloads it with ByteStream Read, hashing what arrives (a client checks
// what it downloads) and comparing the hash with the digest.
func Large(ctx context.Context, bs bspb.ByteStreamClient, o LargeOptions) (LargeReport, error) {
	var r LargeReport
	h := sha256.New()
	io.Copy(h, randomStream(o.Seed, o.Size))
	d := &repb.Digest{Hash: hex.EncodeToString(h.Sum(nil)), SizeBytes: o.Size}

	stopRSS := sampleRSS(o.RSS, o.RSSInterval)
	defer stopRSS()

	start := time.Now()
	stream, err := bs.Write(ctx)
	if err != nil {
		return r, err
	}
	name := uploadName(o.Instance, d, false)
	src := randomStream(o.Seed, o.Size)
	buf := make([]byte, o.Chunk)
	var off int64
	for off < o.Size {
		n, _ := io.ReadFull(src, buf)
		req := &bspb.WriteRequest{WriteOffset: off, Data: buf[:n], FinishWrite: off+int64(n) == o.Size}
		if off == 0 {
			req.ResourceName = name
		}
		if err := stream.Send(req); err != nil {
			break // CloseAndRecv reports why
		}
		off += int64(n)
	}
	if _, err := stream.CloseAndRecv(); err != nil {
		return r, fmt.Errorf("ByteStream Write of %d bytes: %w", o.Size, err)
	}
	r.UploadMBps = float64(o.Size) / 1e6 / time.Since(start).Seconds()

	start = time.Now()
	rs, err := bs.Read(ctx, &bspb.ReadRequest{ResourceName: readName(o.Instance, d, false)})
	if err != nil {
		return r, err
	}
	h.Reset()
	var got int64
	for {
		resp, err := rs.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			return r, fmt.Errorf("ByteStream Read: %w", err)
		}
		h.Write(resp.Data)
		got += int64(len(resp.Data))
	}
	r.DownloadMBps = float64(o.Size) / 1e6 / time.Since(start).Seconds()
	if got != o.Size || hex.EncodeToString(h.Sum(nil)) != d.Hash {
		return r, fmt.Errorf("ByteStream Read returned %d bytes that do not hash to the %d uploaded", got, o.Size)
	}
	r.PeakRSS = stopRSS()
	return r, nil
}

// sampleRSS samples rss every interval until the returned function is
// called, which returns the largest sample.
func sampleRSS(rss func() (int64, error), interval time.Duration) (stop func() int64) {
	if rss == nil {
		return func() int64 { return 0 }
	}
	if interval <= 0 {
		interval = 20 * time.Millisecond
	}
	done := make(chan struct{})
	var peak int64
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			if v, err := rss(); err == nil {
				peak = max(peak, v)
			}
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	})
	var once sync.Once
	return func() int64 {
		once.Do(func() { close(done); wg.Wait() })
		return peak
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
