package verify

import (
	"bytes"
	"context"
	"io"
	"testing"
)

// BenchmarkVerify64MiB measures verified Put and verified Get of a 64 MiB
// SHA-256 blob through verify over the in-memory store (MB/s of blob bytes):
// the cost of checking alone.
func BenchmarkVerify64MiB(b *testing.B) {
	data := randomBytes(64 << 20)
	k := sha(data)
	ctx := context.Background()
	b.Run("Put", func(b *testing.B) {
		s, _ := newStores(b)
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			if err := s.Put(ctx, k, int64(len(data)), bytes.NewReader(data)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Get", func(b *testing.B) {
		s, _ := newStores(b)
		if err := s.Put(ctx, k, int64(len(data)), bytes.NewReader(data)); err != nil {
			b.Fatal(err)
		}
		buf := make([]byte, 256<<10)
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			rc, _, err := s.Get(ctx, k, 0)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{rc}, buf); err != nil {
				b.Fatal(err)
			}
			rc.Close()
		}
	})
}
