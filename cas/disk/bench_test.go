package disk

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"testing"

	"github.com/sealcache/sealcache/cas"
)

// BenchmarkPutGet stores and reads back one blob per iteration; the figure
// is MB/s of blob bytes (each byte is written once and read once).
func BenchmarkPutGet(b *testing.B) {
	for _, size := range []int{1 << 20, 64 << 20} {
		b.Run(fmt.Sprintf("%dMiB", size>>20), func(b *testing.B) {
			s := open(b, b.TempDir(), 8*int64(size))
			data := make([]byte, size)
			rand.Read(data)
			ctx := context.Background()
			b.SetBytes(int64(size))
			i := 0
			for b.Loop() {
				// A fresh key each time (partition differs) so every Put is a real write.
				k := casKey(fmt.Sprintf("org%d", i%16), data)
				i++
				if err := s.Put(ctx, k, bytes.NewReader(data)); err != nil {
					b.Fatal(err)
				}
				rc, err := s.Get(ctx, k, 0)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := io.Copy(io.Discard, rc); err != nil {
					b.Fatal(err)
				}
				rc.Close()
			}
		})
	}
}

// BenchmarkFindMissing1000 looks up 1000 small keys, half of them stored.
func BenchmarkFindMissing1000(b *testing.B) {
	s := open(b, b.TempDir(), 1<<30)
	ctx := context.Background()
	keys := make([]cas.Key, 1000)
	for i := range keys {
		data := []byte(fmt.Sprintf("blob %d", i))
		keys[i] = casKey("org1", data)
		if i%2 == 0 {
			put(b, s, keys[i], data)
		}
	}
	for b.Loop() {
		missing, err := s.FindMissing(ctx, keys)
		if err != nil || len(missing) != 500 {
			b.Fatal(len(missing), err)
		}
	}
}
