// Package loadgen runs an operation from many concurrent clients and sums
// up how it went, and makes the random data such loads move: the loop
// under the client bench (server/bench) and the disk store's load
// benchmarks (cas/disk/internal/loadtest).
package loadgen

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Phase sums up one timed phase: how many operations, how many bytes, how
// long, and the spread of per-operation latencies.
type Phase struct {
	Ops     int
	Bytes   int64
	Elapsed time.Duration
	P50     time.Duration
	P99     time.Duration
}

func (p Phase) OpsPerSec() float64 { return float64(p.Ops) / p.Elapsed.Seconds() }
func (p Phase) MBPerSec() float64  { return float64(p.Bytes) / 1e6 / p.Elapsed.Seconds() }

func (p Phase) String() string {
	return fmt.Sprintf("%d ops in %v: %.0f ops/s, %.1f MB/s, p50 %v, p99 %v",
		p.Ops, p.Elapsed.Round(time.Millisecond), p.OpsPerSec(), p.MBPerSec(), Round(p.P50), Round(p.P99))
}

// Round keeps two or three significant digits of a latency.
func Round(d time.Duration) time.Duration {
	switch {
	case d > 10*time.Millisecond:
		return d.Round(time.Millisecond)
	case d > 10*time.Microsecond:
		return d.Round(10 * time.Microsecond)
	}
	return d
}

// Run calls op(client, i) for every i in [0, n), handing the next i to
// whichever of the clients goroutines is free, and times each call. op
// returns the bytes it moved. The first error stops every client; Run
// returns it with the figures so far.
func Run(clients, n int, op func(client, i int) (int64, error)) (Phase, error) {
	var next atomic.Int64
	lat := make([][]time.Duration, clients)
	errs := make([]error, clients)
	var total atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for c := range clients {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				t0 := time.Now()
				b, err := op(c, i)
				lat[c] = append(lat[c], time.Since(t0))
				if err != nil {
					errs[c] = err
					next.Store(int64(n)) // stop the others too
					return
				}
				total.Add(b)
			}
		})
	}
	wg.Wait()
	p := Phase{Ops: n, Bytes: total.Load(), Elapsed: time.Since(start)}
	for _, err := range errs {
		if err != nil {
			return p, err
		}
	}
	p.P50, p.P99 = Percentiles(slices.Concat(lat...))
	return p, nil
}

// Percentiles returns the median and the 99th percentile of d, sorting d.
func Percentiles(d []time.Duration) (p50, p99 time.Duration) {
	if len(d) == 0 {
		return 0, 0
	}
	slices.Sort(d)
	return d[len(d)*50/100], d[min(len(d)*99/100, len(d)-1)]
}

// RandomData makes n incompressible blobs of sizes uniform in
// [minSize, maxSize], the same for the same seed and different for every
// seed: each is cut from a pool of random bytes, and one of at least 16
// bytes starts with the seed and its own number, so no two are alike.
func RandomData(seed uint64, n, minSize, maxSize int) [][]byte {
	r := rand.New(rand.NewPCG(seed, seed+1))
	const poolSize = 4 << 20
	pool := make([]byte, poolSize+maxSize)
	for i := 0; i+8 <= len(pool); i += 8 {
		binary.LittleEndian.PutUint64(pool[i:], r.Uint64())
	}
	blobs := make([][]byte, n)
	for i := range blobs {
		size := minSize + r.IntN(maxSize-minSize+1)
		off := r.IntN(poolSize)
		data := make([]byte, size)
		copy(data, pool[off:off+size])
		if size >= 16 {
			binary.LittleEndian.PutUint64(data, seed)
			binary.LittleEndian.PutUint64(data[8:], uint64(i))
		}
		blobs[i] = data
	}
	return blobs
}
