package disk

import (
	"flag"
	"os"
	"testing"

	"github.com/sealcache/sealcache/cas"
	"github.com/sealcache/sealcache/cas/disk/internal/loadtest"
)

// Benchmark flags. Run the benchmarks on the real disk (the default temp
// dir) for disk-bound figures and with -benchdir=/dev/shm for CPU-bound ones.
var (
	benchDir      = flag.String("benchdir", "", "parent directory of benchmark stores (default: the test's temp dir)")
	benchLarge    = flag.Int64("benchlarge", 256<<20, "size of the object in BenchmarkLargeObject (1073741824 for 1 GiB)")
	benchInline   = flag.Int64("benchinline", 0, "InlineMaxSize of benchmark stores (0: the default)")
	benchMemTable = flag.Int64("benchmemtable", 0, "MemTableSize of benchmark stores (0: the default)")
)

func openBenchStore(t testing.TB) cas.BlobStore { return openBenchStoreSized(t, 16<<30) }

func openBenchStoreSized(t testing.TB, maxSize int64) cas.BlobStore {
	dir := t.TempDir()
	if *benchDir != "" {
		var err error
		if dir, err = os.MkdirTemp(*benchDir, "disk-bench-"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
	}
	return openStore(t, dir, Options{MaxSize: maxSize, InlineMaxSize: *benchInline, MemTableSize: *benchMemTable})
}

// BenchmarkMixedLoad: 32 clients write 3,000 blobs of 1–200 KB, then read
// each 3 times (issue 12). Run with -benchtime=1x or a few x.
func BenchmarkMixedLoad(b *testing.B) { loadtest.BenchMixed(b, openBenchStore) }

// BenchmarkFindMissing10k: FindMissing of 10,000 keys, idle and under the
// load of 32 clients (with and without eviction); one call per iteration
// (use -benchtime=200x).
func BenchmarkFindMissing10k(b *testing.B) { loadtest.BenchFindMissing(b, openBenchStoreSized) }

// BenchmarkLargeObject writes and reads one -benchlarge object per iteration.
func BenchmarkLargeObject(b *testing.B) { loadtest.BenchLarge(b, openBenchStore, *benchLarge) }
