package server

import (
	"context"
	"encoding/hex"
	"io"
	"math/rand/v2"
	"os"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"github.com/zeebo/blake3"
	bspb "google.golang.org/genproto/googleapis/bytestream"

	"github.com/sealcache/sealcache/cas"
)

// pseudoRandom yields n deterministic bytes without holding them.
func pseudoRandom(seed uint64, n int64) io.Reader {
	return io.LimitReader(&chachaReader{r: rand.NewChaCha8([32]byte{byte(seed)})}, n)
}

type chachaReader struct{ r *rand.ChaCha8 }

func (c *chachaReader) Read(p []byte) (int, error) { return c.r.Read(p) }

// heapPeak samples the heap while a test runs. Sampling only observes; the
// test never waits on it.
type heapPeak struct {
	peak atomic.Uint64
	stop chan struct{}
	done chan struct{}
}

func watchHeap() *heapPeak {
	h := &heapPeak{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(h.done)
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > h.peak.Load() {
				h.peak.Store(ms.HeapInuse)
			}
			select {
			case <-h.stop:
				return
			case <-t.C:
			}
		}
	}()
	return h
}

func (h *heapPeak) Stop() uint64 { close(h.stop); <-h.done; return h.peak.Load() }

// TestOneGiBBlobKeepsMemoryFlat uploads and downloads 1 GiB through
// ByteStream and checks that the heap of the process (server and client)
// stays far below the blob size.
func TestOneGiBBlobKeepsMemoryFlat(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 1 GiB to disk")
	}
	if os.Getenv("SEALCACHE_SKIP_LARGE") != "" {
		t.Skip("SEALCACHE_SKIP_LARGE is set")
	}
	const size = 1 << 30
	env := startServer(t, func(c *Config) { c.MaxSize = 2 << 30 })
	ctx := context.Background()
	h := blake3.New()
	io.Copy(h, pseudoRandom(1, size))
	d := cas.Digest{Function: repb.DigestFunction_BLAKE3, Hash: hex.EncodeToString(h.Sum(nil)), Size: size}

	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	watch := watchHeap()

	stream, err := env.bs().Write(ctx)
	if err != nil {
		t.Fatal(err)
	}
	src := pseudoRandom(1, size)
	buf := make([]byte, 1<<20)
	var off int64
	for {
		n, err := io.ReadFull(src, buf)
		if n > 0 {
			if err := stream.Send(&bspb.WriteRequest{ResourceName: uploadName("", d, "big"), WriteOffset: off, Data: buf[:n], FinishWrite: off+int64(n) == size}); err != nil {
				t.Fatal(err)
			}
			off += int64(n)
		}
		if err != nil {
			break
		}
	}
	if _, err := stream.CloseAndRecv(); err != nil {
		t.Fatalf("upload: %v", err)
	}

	rs, err := env.bs().Read(ctx, &bspb.ReadRequest{ResourceName: readName("", d)})
	if err != nil {
		t.Fatal(err)
	}
	h.Reset()
	var got int64
	for {
		resp, err := rs.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		h.Write(resp.Data)
		got += int64(len(resp.Data))
	}
	peak := watch.Stop()
	if got != size || hex.EncodeToString(h.Sum(nil)) != d.Hash {
		t.Fatalf("downloaded %d bytes with another hash", got)
	}
	growth := int64(peak) - int64(before.HeapInuse)
	t.Logf("1 GiB upload+download: heap in use before %d MiB, peak %d MiB (growth %d MiB)", before.HeapInuse>>20, peak>>20, growth>>20)
	if growth > 128<<20 {
		t.Errorf("heap grew by %d MiB for a 1 GiB blob; it must stay flat", growth>>20)
	}
}
