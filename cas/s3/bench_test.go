package s3

import (
	"bytes"
	"fmt"
	"io"
	"testing"

	"github.com/sealcache/sealcache/cas"
	"github.com/sealcache/sealcache/cas/castest"
)

// The benchmarks run against versitygw on loopback with the default part
// size and concurrency, so they measure this store plus a local server
// writing to a local disk, not a network: figures for comparing changes,
// not for sizing a deployment.
//
//	go test -run '^$' -bench . -benchtime 20x ./cas/s3/

// BenchmarkPut stores a new object per iteration; MB/s of blob bytes.
func BenchmarkPut(b *testing.B) {
	for _, size := range []int64{1 << 20, 64 << 20} {
		b.Run(fmt.Sprintf("%dMiB", size>>20), func(b *testing.B) {
			s, _, _ := openStore(b, func(c *Config) { c.PartSize = 0 })
			data := castest.Bytes(1, size)
			b.SetBytes(size)
			i := uint64(0)
			for b.Loop() {
				i++
				k := castest.ACKey("org1", "", i) // a new object each time
				if err := s.Put(b.Context(), k, size, bytes.NewReader(data)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkGet reads one object whole per iteration; MB/s of blob bytes.
func BenchmarkGet(b *testing.B) {
	for _, size := range []int64{1 << 20, 64 << 20} {
		b.Run(fmt.Sprintf("%dMiB", size>>20), func(b *testing.B) {
			s, _, _ := openStore(b, func(c *Config) { c.PartSize = 0 })
			data := castest.Bytes(2, size)
			k := castest.CASKey("org1", data)
			if err := s.Put(b.Context(), k, size, bytes.NewReader(data)); err != nil {
				b.Fatal(err)
			}
			b.SetBytes(size)
			for b.Loop() {
				rc, _, err := s.Get(b.Context(), k, 0)
				if err != nil {
					b.Fatal(err)
				}
				if n, err := io.Copy(io.Discard, rc); err != nil || n != size {
					b.Fatalf("read %d bytes, %v", n, err)
				}
				rc.Close()
			}
		})
	}
}

// BenchmarkFindMissing asks for 1,000 keys, half of them stored, per
// iteration; keys/s is the figure to watch.
func BenchmarkFindMissing(b *testing.B) {
	const n = 1000
	s, _, _ := openStore(b)
	keys := make([]cas.Key, n)
	for i := range keys {
		data := castest.Bytes(uint64(i), 64)
		keys[i] = castest.CASKey("org1", data)
		if i%2 == 0 {
			if err := s.Put(b.Context(), keys[i], int64(len(data)), bytes.NewReader(data)); err != nil {
				b.Fatal(err)
			}
		}
	}
	for b.Loop() {
		missing, err := s.FindMissing(b.Context(), keys)
		if err != nil {
			b.Fatal(err)
		}
		if len(missing) != n/2 {
			b.Fatalf("%d missing; want %d", len(missing), n/2)
		}
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "keys/s")
}
