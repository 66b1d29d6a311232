package encryption

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/sealcache/sealcache/cas"
	"github.com/sealcache/sealcache/cas/memory"
	"github.com/sealcache/sealcache/cas/verify"
)

// benchEnv is newEnv for benchmarks: one org with CMEK on ("sealed"), one
// without ("plain").
func benchEnv(b *testing.B) (cas.BlobStore, *memory.Store) {
	e := newEnv(b)
	e.enable("sealed", customerURI)
	return NewSealingStore(verify.New(e.mem, nil), e.mem, e.keys, nil), e.mem
}

type benchBlob struct {
	data []byte
	key  map[string]cas.Key // by org
}

func benchBlobs(sizes []int) []benchBlob {
	var out []benchBlob
	for i, n := range sizes {
		d := blob(n)
		d[0] = byte(i) // distinct digests
		out = append(out, benchBlob{data: d, key: map[string]cas.Key{"plain": casKey("plain", d), "sealed": casKey("sealed", d)}})
	}
	return out
}

func BenchmarkStore(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 2))
	var small []int
	for range 200 {
		small = append(small, 1000+r.IntN(99_000))
	}
	for _, set := range []struct {
		name  string
		sizes []int
	}{{"64MiB", []int{64 << 20}}, {"1-100KB", small}} {
		blobs := benchBlobs(set.sizes)
		total := 0
		for _, bl := range blobs {
			total += len(bl.data)
		}
		for _, org := range []string{"plain", "sealed"} {
			b.Run(fmt.Sprintf("Put/%s/%s", set.name, org), func(b *testing.B) {
				store, _ := benchEnv(b)
				ctx := context.Background()
				b.SetBytes(int64(total))
				for b.Loop() {
					for _, bl := range blobs {
						if err := store.Put(ctx, bl.key[org], int64(len(bl.data)), bytes.NewReader(bl.data)); err != nil {
							b.Fatal(err)
						}
					}
				}
			})
			b.Run(fmt.Sprintf("Get/%s/%s", set.name, org), func(b *testing.B) {
				store, _ := benchEnv(b)
				ctx := context.Background()
				for _, bl := range blobs {
					if err := store.Put(ctx, bl.key[org], int64(len(bl.data)), bytes.NewReader(bl.data)); err != nil {
						b.Fatal(err)
					}
				}
				b.SetBytes(int64(total))
				for b.Loop() {
					for _, bl := range blobs {
						rc, _, err := store.Get(ctx, bl.key[org], 0)
						if err != nil {
							b.Fatal(err)
						}
						if _, err := io.Copy(io.Discard, rc); err != nil {
							b.Fatal(err)
						}
						rc.Close()
					}
				}
			})
		}
	}
}
