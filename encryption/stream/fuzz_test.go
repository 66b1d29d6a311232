package stream

import (
	"bytes"
	"io"
	"testing"

	"golang.org/x/crypto/chacha20poly1305"
)

// FuzzOpen feeds arbitrary bytes to the Reader. It must never panic, and
// whatever plaintext it returns must come from chunks that were really
// sealed. Under this key and binding only prefixes of pattern() of the seed
// lengths were ever sealed (in any fuzz worker; nonces differ between
// workers, so the check cannot compare bytes), and chunks cannot move, so
// any output is a prefix of pattern()[offset:], and a read without error
// returned pattern(n)[offset:] for a seed length n, from an input of
// exactly SealedSize(n) bytes.
func FuzzOpen(f *testing.F) {
	key := bytes.Repeat([]byte{7}, chacha20poly1305.KeySize)
	a, err := chacha20poly1305.NewX(key)
	if err != nil {
		f.Fatal(err)
	}
	withChunkSize(f, 64)
	seedLengths := []int{0, 1, 63, 64, 65, 200}
	for _, n := range seedLengths {
		s := sealWithWriter(f, a, testKeyID, testBinding, pattern(n))
		f.Add(s, uint16(0))
		f.Add(s, uint16(n/2))
	}
	full := pattern(1000)
	f.Fuzz(func(t *testing.T, data []byte, offset uint16) {
		st := StartAt(testKeyID, int64(offset))
		src := data
		if st.StoredOffset <= int64(len(src)) {
			src = src[st.StoredOffset:]
		}
		got, err := io.ReadAll(NewReader(bytes.NewReader(src), a, testKeyID, testBinding, st))
		start := min(int(offset), len(full))
		if !bytes.HasPrefix(full[start:], got) {
			t.Fatalf("returned %d bytes that were never sealed at offset %d", len(got), offset)
		}
		if err != nil || st.Chunk != 0 {
			return
		}
		for _, n := range seedLengths {
			if int64(len(data)) == SealedSize(testKeyID, int64(n)) && len(got) == n-start {
				return
			}
		}
		t.Fatalf("opened %d input bytes to %d bytes from offset %d: not a sealed seed", len(data), len(got), offset)
	})
}
