package bench

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	bspb "google.golang.org/genproto/googleapis/bytestream"

	"github.com/sealcache/sealcache/internal/loadgen"
)

// FindMissingOptions shape the FindMissingBlobs measurement (target 3).
type FindMissingOptions struct {
	Instance    string
	Digests     int // digests per call; half are stored, half are not
	Calls       int // timed calls, idle and again under load
	LoadClients int // clients writing and reading meanwhile
	LoadMinSize int
	LoadMaxSize int
	Chunk       int
	Seed        uint64
}

// DefaultFindMissing is issue 12's: 10,000 digests per call, under the
// load of 32 clients writing and reading blobs of 1 KB to 200 KB.
func DefaultFindMissing() FindMissingOptions {
	return FindMissingOptions{Digests: 10_000, Calls: 100, LoadClients: 32, LoadMinSize: 1000, LoadMaxSize: 200_000, Chunk: 1 << 20}
}

// FindMissingReport holds call latencies idle and under load, and how
// many blob writes and reads the load made meanwhile.
type FindMissingReport struct {
	Idle, Loaded  Phase
	LoadOpsPerSec float64
}

// FindMissing stores half of o.Digests small blobs, then times o.Calls
// FindMissingBlobs calls of all o.Digests digests: first on an idle
// server, then while o.LoadClients clients each write a new blob and read
// back one of theirs, over and over. Every call must find exactly the
// unstored half missing.
func FindMissing(ctx context.Context, dial Dialer, o FindMissingOptions) (FindMissingReport, error) {
	var r FindMissingReport
	conn, err := dial()
	if err != nil {
		return r, err
	}
	defer conn.Close()
	cas := repb.NewContentAddressableStorageClient(conn)
	stored := randomBlobs(o.Seed, o.Digests/2, 100, 100)
	digests := make([]*repb.Digest, 0, o.Digests)
	for i := 0; i < len(stored); i += 1000 {
		req := &repb.BatchUpdateBlobsRequest{InstanceName: o.Instance}
		for _, b := range stored[i:min(i+1000, len(stored))] {
			req.Requests = append(req.Requests, &repb.BatchUpdateBlobsRequest_Request{Digest: b.digest, Data: b.data})
			digests = append(digests, b.digest)
		}
		if err := checkBatchUpdate(cas.BatchUpdateBlobs(ctx, req)); err != nil {
			return r, err
		}
	}
	wantMissing := o.Digests - len(digests)
	rng := rand.New(rand.NewPCG(o.Seed, 3))
	for range wantMissing {
		var sum [32]byte
		for i := 0; i < 32; i += 8 {
			binary.LittleEndian.PutUint64(sum[i:], rng.Uint64())
		}
		digests = append(digests, &repb.Digest{Hash: hex.EncodeToString(sum[:]), SizeBytes: int64(1 + rng.IntN(100_000))})
	}
	rng.Shuffle(len(digests), func(i, j int) { digests[i], digests[j] = digests[j], digests[i] })
	req := &repb.FindMissingBlobsRequest{InstanceName: o.Instance, BlobDigests: digests}
	call := func(_, _ int) (int64, error) {
		resp, err := cas.FindMissingBlobs(ctx, req)
		if err != nil {
			return 0, fmt.Errorf("FindMissingBlobs: %w", err)
		}
		if len(resp.MissingBlobDigests) != wantMissing {
			return 0, fmt.Errorf("FindMissingBlobs found %d of %d digests missing; want %d", len(resp.MissingBlobDigests), len(digests), wantMissing)
		}
		return 0, nil
	}
	call(0, 0) // warm up: the first call pays for connection and caches
	if r.Idle, err = loadgen.Run(1, o.Calls, call); err != nil {
		return r, err
	}

	load, err := startLoad(ctx, dial, o)
	if err != nil {
		return r, err
	}
	time.Sleep(200 * time.Millisecond) // let the load reach its pace before timing
	r.Loaded, err = loadgen.Run(1, o.Calls, call)
	ops, elapsed, loadErr := load.stop()
	if err != nil {
		return r, err
	}
	if loadErr != nil {
		return r, fmt.Errorf("the load beside FindMissingBlobs failed: %w", loadErr)
	}
	r.LoadOpsPerSec = float64(ops) / elapsed.Seconds()
	return r, nil
}

func checkBatchUpdate(resp *repb.BatchUpdateBlobsResponse, err error) error {
	if err != nil {
		return fmt.Errorf("BatchUpdateBlobs: %w", err)
	}
	for _, s := range resp.Responses {
		if s.Status.GetCode() != 0 {
			return fmt.Errorf("BatchUpdateBlobs: blob %s: %s", s.Digest.GetHash(), s.Status.GetMessage())
		}
	}
	return nil
}

// load is clients that write new blobs and read them back until stopped.
type load struct {
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	ops     atomic.Int64
	start   time.Time
	errOnce sync.Once
	err     error
	close   func()
}

func startLoad(ctx context.Context, dial Dialer, o FindMissingOptions) (*load, error) {
	conns, closeAll, err := dialAll(dial, o.LoadClients)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	l := &load{cancel: cancel, start: time.Now(), close: closeAll}
	template := randomBlobs(o.Seed^0x5eed, 1, o.LoadMaxSize, o.LoadMaxSize)[0].data
	for c, conn := range conns {
		l.wg.Go(func() {
			bs := bspb.NewByteStreamClient(conn)
			rng := rand.New(rand.NewPCG(o.Seed, uint64(c)))
			data := make([]byte, o.LoadMaxSize)
			copy(data, template)
			var mine []*repb.Digest
			var buf []byte
			for n := uint64(0); ctx.Err() == nil; n++ {
				size := o.LoadMinSize + rng.IntN(o.LoadMaxSize-o.LoadMinSize+1)
				blob := data[:size]
				binary.LittleEndian.PutUint64(blob, o.Seed)
				binary.LittleEndian.PutUint64(blob[8:], uint64(c)<<40|n)
				d := sha256Digest(blob)
				if err := writeBlob(ctx, bs, o.Instance, d, blob, false, o.Chunk); err != nil {
					l.fail(ctx, err)
					return
				}
				mine = append(mine, d)
				var err error
				if buf, err = readBlob(ctx, bs, readName(o.Instance, mine[rng.IntN(len(mine))], false), buf); err != nil {
					l.fail(ctx, err)
					return
				}
				l.ops.Add(2)
			}
		})
	}
	return l, nil
}

func (l *load) fail(ctx context.Context, err error) {
	if ctx.Err() != nil {
		return // stopped: errors of cancelled calls are expected
	}
	l.errOnce.Do(func() { l.err = err })
}

// stop ends the load and returns its operations, how long it ran, and
// its first error.
func (l *load) stop() (int64, time.Duration, error) {
	elapsed := time.Since(l.start)
	ops := l.ops.Load()
	l.cancel()
	l.wg.Wait()
	l.close()
	return ops, elapsed, l.err
}
