package stream

import (
	"bytes"
	"fmt"
	"io"
	"testing"
)

// BenchmarkChunkSize seals and opens 8 MiB at several chunk sizes; the
// figures chose ChunkSize (see the package comment).
func BenchmarkChunkSize(b *testing.B) {
	const total = 8 << 20
	plain := pattern(total)
	a := newAEAD(b)
	for _, cs := range []int64{16 << 10, 64 << 10, 256 << 10, 1 << 20} {
		withChunkSize(b, cs)
		sealed := sealWithWriter(b, a, testKeyID, testBinding, plain)
		overhead := float64(len(sealed)-total) / total * 100
		b.Run(fmt.Sprintf("seal/%dKiB", cs>>10), func(b *testing.B) {
			withChunkSize(b, cs)
			b.SetBytes(total)
			b.ReportMetric(overhead, "%overhead")
			for b.Loop() {
				w, _ := NewWriter(io.Discard, a, testKeyID, testBinding)
				w.Write(plain)
				w.Close()
			}
		})
		b.Run(fmt.Sprintf("open/%dKiB", cs>>10), func(b *testing.B) {
			withChunkSize(b, cs)
			b.SetBytes(total)
			for b.Loop() {
				r := NewReader(bytes.NewReader(sealed), a, testKeyID, testBinding, Start{})
				if _, err := io.Copy(io.Discard, r); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkRawXChaCha20Poly1305 is the ceiling: Seal and Open of 64 KiB
// buffers with no format around them.
func BenchmarkRawXChaCha20Poly1305(b *testing.B) {
	a := newAEAD(b)
	buf := pattern(ChunkSize)
	nonce := make([]byte, a.NonceSize())
	out := make([]byte, 0, ChunkSize+a.Overhead())
	b.Run("seal", func(b *testing.B) {
		b.SetBytes(ChunkSize)
		for b.Loop() {
			a.Seal(out[:0], nonce, buf, testBinding)
		}
	})
	sealed := a.Seal(nil, nonce, buf, testBinding)
	b.Run("open", func(b *testing.B) {
		b.SetBytes(ChunkSize)
		for b.Loop() {
			if _, err := a.Open(out[:0], nonce, sealed, testBinding); err != nil {
				b.Fatal(err)
			}
		}
	})
}
