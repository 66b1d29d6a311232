package encryption

import (
	"context"
	"encoding/hex"
	"io"
	"runtime"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"

	"github.com/sealcache/sealcache/cas"
)

// patternReader yields n deterministic bytes without holding them.
type patternReader struct{ i, n int64 }

func (r *patternReader) Read(p []byte) (int, error) {
	if r.i >= r.n {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), r.n-r.i)]
	for j := range p {
		p[j] = byte((r.i + int64(j)) % 253)
	}
	r.i += int64(len(p))
	return len(p), nil
}

// drainStore reads every Put to the end and keeps nothing.
type drainStore struct{ cas.BlobStore }

func (drainStore) Put(ctx context.Context, k cas.Key, size int64, r io.Reader) error {
	_, err := io.Copy(io.Discard, r)
	return err
}

func TestSealedPutMemoryDoesNotGrowWithBlobSize(t *testing.T) {
	e := newEnv(t)
	e.enable("acme", customerURI)
	const size = 32 << 20
	h, _ := cas.NewHasher(repb.DigestFunction_SHA256)
	io.Copy(h, &patternReader{n: size})
	k := cas.Key{Partition: "acme", Kind: cas.KindCAS,
		Digest: cas.Digest{Function: repb.DigestFunction_SHA256, Hash: hex.EncodeToString(h.Sum(nil)), Size: size}}
	store := NewSealingStore(e.mem, drainStore{e.mem}, e.keys, nil)

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	if err := store.Put(context.Background(), k, size, &patternReader{n: size}); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	if allocated := after.TotalAlloc - before.TotalAlloc; allocated > 1<<20 {
		t.Fatalf("sealing %d MiB allocated %d KiB; want about one chunk", size>>20, allocated>>10)
	}
}
