// Package loadtest drives a cas.BlobStore the way a busy cache sees it:
// many clients storing and reading blobs of mixed sizes, and FindMissing
// calls of thousands of keys. The disk store's benchmarks use it, and so can
// any other store's, so figures compare like with like.
package loadtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sealcache/sealcache/cas"
	"github.com/sealcache/sealcache/cas/castest"
	"github.com/sealcache/sealcache/internal/loadgen"
)

// Blob is one object of a workload.
type Blob struct {
	Key  cas.Key
	Data []byte
}

// Blobs makes n blobs of sizes uniform in [minSize, maxSize], deterministic
// for seed, in partition p. Contents are random (incompressible; see
// loadgen.RandomData).
func Blobs(seed uint64, n int, minSize, maxSize int64, p cas.Partition) []Blob {
	data := loadgen.RandomData(seed, n, int(minSize), int(maxSize))
	blobs := make([]Blob, n)
	for i, d := range data {
		blobs[i] = Blob{Key: castest.CASKey(p, d), Data: d}
	}
	return blobs
}

// Figures sum up one phase of a workload.
type Figures struct {
	loadgen.Phase
	CPU time.Duration // process CPU time (all goroutines, background work included)
}

// CPUPerOp is the process CPU time per operation.
func (f Figures) CPUPerOp() time.Duration { return f.CPU / time.Duration(max(f.Ops, 1)) }

func (f Figures) String() string {
	return fmt.Sprintf("%d ops in %v: %.0f ops/s, %.1f MB/s, %v CPU/op, p50 %v, p99 %v",
		f.Ops, f.Elapsed.Round(time.Millisecond), f.OpsPerSec(), f.MBPerSec(), f.CPUPerOp(), f.P50, f.P99)
}

// run calls op(i) for i in [0, n) from clients goroutines and times each,
// with the process's CPU time.
func run(clients, n int, op func(i int) (int64, error)) (Figures, error) {
	startCPU := processCPU()
	p, err := loadgen.Run(clients, n, func(_, i int) (int64, error) { return op(i) })
	return Figures{Phase: p, CPU: processCPU() - startCPU}, err
}

// Write stores every blob from clients goroutines.
func Write(ctx context.Context, s cas.BlobStore, blobs []Blob, clients int) (Figures, error) {
	return run(clients, len(blobs), func(i int) (int64, error) {
		b := blobs[i]
		return int64(len(b.Data)), s.Put(ctx, b.Key, int64(len(b.Data)), bytes.NewReader(b.Data))
	})
}

// Read reads every blob rounds times, in an order shuffled per round, from
// clients goroutines, and checks each read's length.
func Read(ctx context.Context, s cas.BlobStore, blobs []Blob, clients, rounds int) (Figures, error) {
	order := make([]int, 0, len(blobs)*rounds)
	r := rand.New(rand.NewPCG(7, 7))
	for range rounds {
		perm := r.Perm(len(blobs))
		order = append(order, perm...)
	}
	bufs := sync.Pool{New: func() any { b := make([]byte, 256<<10); return &b }}
	return run(clients, len(order), func(i int) (int64, error) {
		b := blobs[order[i]]
		rc, size, err := s.Get(ctx, b.Key, 0)
		if err != nil {
			return 0, err
		}
		defer rc.Close()
		buf := bufs.Get().(*[]byte)
		defer bufs.Put(buf)
		n, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{rc}, *buf)
		if err != nil {
			return n, err
		}
		if n != size || n != int64(len(b.Data)) {
			return n, fmt.Errorf("read %d bytes of %s, reported %d, stored %d", n, b.Key, size, len(b.Data))
		}
		return n, nil
	})
}

// FindMissingLatencies times rounds calls of FindMissing(keys).
func FindMissingLatencies(ctx context.Context, s cas.BlobStore, keys []cas.Key, rounds int, wantMissing int) (p50, p99 time.Duration, err error) {
	lat := make([]time.Duration, 0, rounds)
	for range rounds {
		t0 := time.Now()
		missing, err := s.FindMissing(ctx, keys)
		lat = append(lat, time.Since(t0))
		if err != nil {
			return 0, 0, err
		}
		if wantMissing >= 0 && len(missing) != wantMissing {
			return 0, 0, fmt.Errorf("FindMissing found %d of %d keys missing; want %d", len(missing), len(keys), wantMissing)
		}
	}
	p50, p99 = loadgen.Percentiles(lat)
	return p50, p99, nil
}

// Background runs clients goroutines that store and read blobs until stop
// is closed, as the load under which FindMissing is measured. Each client
// alternates a Put of a blob and a Get of a blob it stored before. It
// returns how many operations ran.
func Background(ctx context.Context, s cas.BlobStore, blobs []Blob, clients int, stop <-chan struct{}) (wait func() (int64, error)) {
	var ops atomic.Int64
	var wg sync.WaitGroup
	errs := make([]error, clients)
	for c := range clients {
		wg.Go(func() {
			for i := c; ; i += clients {
				select {
				case <-stop:
					return
				default:
				}
				b := blobs[i%len(blobs)]
				if err := s.Put(ctx, b.Key, int64(len(b.Data)), bytes.NewReader(b.Data)); err != nil {
					errs[c] = err
					return
				}
				rc, _, err := s.Get(ctx, blobs[(i/2)%len(blobs)].Key, 0)
				if err == nil {
					_, err = io.Copy(io.Discard, rc)
					rc.Close()
				} else if errors.Is(err, cas.ErrNotFound) {
					err = nil
				}
				if err != nil {
					errs[c] = err
					return
				}
				ops.Add(2)
			}
		})
	}
	return func() (int64, error) {
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				return ops.Load(), err
			}
		}
		return ops.Load(), nil
	}
}
