package loadtest

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/sealcache/sealcache/cas"
	"github.com/sealcache/sealcache/cas/castest"
	"github.com/sealcache/sealcache/internal/loadgen"
)

// The workloads of issue 12, as benchmark bodies any store can run. open
// returns a fresh, empty store that the benchmark's cleanup closes.

// MixedClients, MixedBlobs, MixedReads: 3,000 blobs of 1 KB–200 KB written by
// 32 clients, then each read 3 times.
const (
	MixedClients = 32
	MixedBlobs   = 3000
	MixedMin     = 1 << 10
	MixedMax     = 200 << 10
	MixedReads   = 3
)

// BenchMixed runs the mixed workload once per iteration, each on a fresh
// store, and reports write and read throughput and latency.
func BenchMixed(b *testing.B, open func(testing.TB) cas.BlobStore) {
	blobs := Blobs(1, MixedBlobs, MixedMin, MixedMax, "org1")
	ctx := context.Background()
	var w, r Figures
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		s := open(b)
		b.StartTimer()
		wf, err := Write(ctx, s, blobs, MixedClients)
		if err != nil {
			b.Fatal(err)
		}
		rf, err := Read(ctx, s, blobs, MixedClients, MixedReads)
		if err != nil {
			b.Fatal(err)
		}
		w, r = add(w, wf), add(r, rf)
	}
	report(b, "write", w)
	report(b, "read", r)
}

// add sums figures of several runs; latencies keep the worst run's.
func add(a, b Figures) Figures {
	return Figures{Phase: loadgen.Phase{Ops: a.Ops + b.Ops, Bytes: a.Bytes + b.Bytes, Elapsed: a.Elapsed + b.Elapsed,
		P50: max(a.P50, b.P50), P99: max(a.P99, b.P99)}, CPU: a.CPU + b.CPU}
}

func report(b *testing.B, phase string, f Figures) {
	b.ReportMetric(f.OpsPerSec(), phase+"_ops/s")
	b.ReportMetric(f.MBPerSec(), phase+"_MB/s")
	b.ReportMetric(float64(f.P99.Microseconds())/1000, phase+"_p99_ms")
	b.ReportMetric(float64(f.CPUPerOp().Nanoseconds())/1000, phase+"_cpu_us/op")
	b.ReportMetric(0, "ns/op")
}

// FindMissingKeys is the size of one FindMissing call; half of the keys are
// stored.
const FindMissingKeys = 10000

// BenchFindMissing times FindMissing of 10,000 keys (half stored), one call
// per iteration, and reports p50 and p99: on an idle store, while 32
// clients Put and Get 1–200 KB blobs, and while they do so in a store kept
// full (budget evictingBudget), so eviction runs all the time. open returns
// a fresh store with the given budget.
func BenchFindMissing(b *testing.B, open func(t testing.TB, maxSize int64) cas.BlobStore) {
	ctx := context.Background()
	stored := Blobs(2, FindMissingKeys/2, 100, 4000, "org1")
	absent := Blobs(3, FindMissingKeys/2, 100, 4000, "org1")
	keys := make([]cas.Key, 0, FindMissingKeys)
	for i := range stored {
		keys = append(keys, stored[i].Key, absent[i].Key)
	}
	load := Blobs(4, 2000, MixedMin, MixedMax, "org2")
	fresh := func(b *testing.B, maxSize int64) cas.BlobStore {
		s := open(b, maxSize)
		if _, err := Write(ctx, s, stored, MixedClients); err != nil {
			b.Fatal(err)
		}
		return s
	}
	measure := func(b *testing.B, s cas.BlobStore, wantMissing int) {
		p50, p99, err := FindMissingLatencies(ctx, s, keys, b.N, wantMissing)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(p50.Microseconds())/1000, "p50_ms")
		b.ReportMetric(float64(p99.Microseconds())/1000, "p99_ms")
		b.ReportMetric(0, "ns/op")
	}
	underLoad := func(b *testing.B, s cas.BlobStore, wantMissing int) {
		stop := make(chan struct{})
		wait := Background(ctx, s, load, MixedClients, stop)
		start := time.Now()
		measure(b, s, wantMissing)
		close(stop)
		ops, err := wait()
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(ops)/time.Since(start).Seconds(), "load_ops/s")
	}
	b.Run("idle", func(b *testing.B) { measure(b, fresh(b, 16<<30), len(absent)) })
	b.Run("load32", func(b *testing.B) { underLoad(b, fresh(b, 16<<30), len(absent)) })
	// Eviction may take some of the looked-up objects: no count is checked.
	b.Run("load32-evicting", func(b *testing.B) { underLoad(b, fresh(b, evictingBudget), -1) })
}

// evictingBudget is small next to the ~200 MB the load writes.
const evictingBudget = 64 << 20

// BenchLarge writes and reads back one object of size bytes per iteration.
func BenchLarge(b *testing.B, open func(testing.TB) cas.BlobStore, size int64) {
	ctx := context.Background()
	pool := Blobs(5, 1, 4<<20, 4<<20, "org1")[0].Data
	s := open(b)
	var wrote, read time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		data := &repeatReader{pool: pool, left: size, salt: byte(i)}
		key := castest.CASKey("org1", data.prefix())
		key.Digest.Size = size // a key of the right size; the backend checks no digest
		b.StartTimer()
		t0 := time.Now()
		if err := s.Put(ctx, key, size, data); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		rc, n, err := s.Get(ctx, key, 0)
		if err != nil {
			b.Fatal(err)
		}
		got, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{rc}, make([]byte, 1<<20))
		rc.Close()
		if err != nil || got != size || n != size {
			b.Fatalf("read back %d of %d bytes (reported %d): %v", got, size, n, err)
		}
		wrote += t1.Sub(t0)
		read += time.Since(t1)
	}
	b.ReportMetric(float64(size)*float64(b.N)/1e6/wrote.Seconds(), "write_MB/s")
	b.ReportMetric(float64(size)*float64(b.N)/1e6/read.Seconds(), "read_MB/s")
	b.ReportMetric(0, "ns/op")
}

// repeatReader yields left bytes cut from pool, the first one salted.
type repeatReader struct {
	pool []byte
	left int64
	off  int
	salt byte
}

func (r *repeatReader) prefix() []byte { return append([]byte{r.salt}, r.pool[:64]...) }

func (r *repeatReader) Read(p []byte) (int, error) {
	if r.left == 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > r.left {
		p = p[:r.left]
	}
	n := copy(p, r.pool[r.off:])
	if r.off == 0 && n > 0 {
		p[0] = r.salt
	}
	r.off = (r.off + n) % len(r.pool)
	r.left -= int64(n)
	return n, nil
}
