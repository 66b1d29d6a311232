package stream

import (
	"bytes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"io"
	"testing"
	"testing/iotest"

	"golang.org/x/crypto/chacha20poly1305"
)

const testKeyID = "k0123abcd"

var testBinding = []byte("org=acme kind=cas sha256:abcd/10")

func newAEAD(t testing.TB) cipher.AEAD {
	t.Helper()
	key := make([]byte, chacha20poly1305.KeySize)
	rand.Read(key)
	a, err := chacha20poly1305.NewX(key)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// withChunkSize shrinks the chunk size for one test so multi-chunk objects
// stay a few hundred bytes.
func withChunkSize(t testing.TB, n int64) {
	old := chunkSize
	chunkSize = n
	t.Cleanup(func() { chunkSize = old })
}

func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i % 251)
	}
	return b
}

// sealWithWriter seals plain through Writer, in odd-sized writes.
func sealWithWriter(t testing.TB, a cipher.AEAD, keyID string, binding, plain []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	w, err := NewWriter(&out, a, keyID, binding)
	if err != nil {
		t.Fatal(err)
	}
	for p := plain; len(p) > 0; {
		n := min(len(p), 7777)
		if _, err := w.Write(p[:n]); err != nil {
			t.Fatal(err)
		}
		p = p[n:]
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

func sealWithReader(t testing.TB, a cipher.AEAD, keyID string, binding, plain []byte) []byte {
	t.Helper()
	r, err := NewSealingReader(iotest.OneByteReader(bytes.NewReader(plain)), a, keyID, binding)
	if err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func open(a cipher.AEAD, keyID string, binding, sealed []byte) ([]byte, error) {
	return io.ReadAll(NewReader(bytes.NewReader(sealed), a, keyID, binding, Start{}))
}

func mustFailToOpen(t *testing.T, what string, a cipher.AEAD, keyID string, binding, sealed []byte) {
	t.Helper()
	got, err := open(a, keyID, binding, sealed)
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("%s: opened without ErrCorrupt (err=%v, %d bytes)", what, err, len(got))
	}
}

func sizesAround(c int) []int { return []int{0, 1, c - 1, c, c + 1, 10 * c, 10*c + 3} }

func TestRoundTripAtChunkEdges(t *testing.T) {
	a := newAEAD(t)
	for _, n := range sizesAround(ChunkSize) {
		plain := pattern(n)
		for name, seal := range map[string]func(testing.TB, cipher.AEAD, string, []byte, []byte) []byte{
			"Writer": sealWithWriter, "SealingReader": sealWithReader,
		} {
			sealed := seal(t, a, testKeyID, testBinding, plain)
			if int64(len(sealed)) != SealedSize(testKeyID, int64(n)) {
				t.Errorf("%s %d bytes: sealed to %d bytes, SealedSize says %d", name, n, len(sealed), SealedSize(testKeyID, int64(n)))
			}
			got, err := open(a, testKeyID, testBinding, sealed)
			if err != nil || !bytes.Equal(got, plain) {
				t.Fatalf("%s %d bytes: round trip gave %d bytes, err %v", name, n, len(got), err)
			}
		}
	}
}

func TestEmptyPlaintextIsOneEmptyFinalChunk(t *testing.T) {
	a := newAEAD(t)
	sealed := sealWithWriter(t, a, testKeyID, testBinding, nil)
	if want := HeaderSize(testKeyID) + Overhead; int64(len(sealed)) != want {
		t.Fatalf("empty plaintext sealed to %d bytes, want header + one empty chunk = %d", len(sealed), want)
	}
	mustFailToOpen(t, "header only", a, testKeyID, testBinding, sealed[:HeaderSize(testKeyID)])
}

func TestEveryFlippedByteIsDetected(t *testing.T) {
	withChunkSize(t, 64)
	a := newAEAD(t)
	plain := pattern(3*64 + 10) // four chunks
	sealed := sealWithWriter(t, a, testKeyID, testBinding, plain)
	for i := range sealed {
		bad := bytes.Clone(sealed)
		bad[i] ^= 0x01
		mustFailToOpen(t, "flipped byte", a, testKeyID, testBinding, bad)
	}
}

func TestReorderedDroppedAndTruncatedChunksAreDetected(t *testing.T) {
	withChunkSize(t, 64)
	a := newAEAD(t)
	plain := pattern(4 * 64) // four full chunks, the last one full
	sealed := sealWithWriter(t, a, testKeyID, testBinding, plain)
	h, c := HeaderSize(testKeyID), storedChunk()
	chunk := func(i int64) []byte { return sealed[h+i*c : h+(i+1)*c] }
	join := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	hdr := sealed[:h]

	mustFailToOpen(t, "chunks 1 and 2 swapped", a, testKeyID, testBinding, join(hdr, chunk(0), chunk(2), chunk(1), chunk(3)))
	mustFailToOpen(t, "chunk 1 dropped", a, testKeyID, testBinding, join(hdr, chunk(0), chunk(2), chunk(3)))
	mustFailToOpen(t, "chunk 1 repeated", a, testKeyID, testBinding, join(hdr, chunk(0), chunk(1), chunk(1), chunk(2), chunk(3)))
	for cut := int64(0); cut < 4; cut++ {
		mustFailToOpen(t, "truncated at a chunk boundary", a, testKeyID, testBinding, sealed[:h+cut*c])
	}
	mustFailToOpen(t, "truncated inside the last chunk", a, testKeyID, testBinding, sealed[:len(sealed)-1])
	mustFailToOpen(t, "trailing garbage", a, testKeyID, testBinding, join(sealed, []byte{0}))
	other := sealWithWriter(t, a, testKeyID, testBinding, plain)
	mustFailToOpen(t, "chunk 2 of another object in place of chunk 1",
		a, testKeyID, testBinding, join(hdr, chunk(0), other[h+2*c:h+3*c], chunk(2), chunk(3)))
}

func TestOpeningWithOtherKeyIDBindingOrKeyFails(t *testing.T) {
	a := newAEAD(t)
	sealed := sealWithWriter(t, a, testKeyID, testBinding, pattern(100))
	mustFailToOpen(t, "other binding", a, testKeyID, []byte("org=evil kind=cas sha256:abcd/10"), sealed)
	mustFailToOpen(t, "other key", newAEAD(t), testKeyID, testBinding, sealed)
	mustFailToOpen(t, "other key id", a, "k0123abce", testBinding, sealed)

	// Same key id length, header rewritten to the other id: the chunk's
	// associated data still holds the original id.
	forged := bytes.Clone(sealed)
	copy(forged[6:], "k0123abce")
	mustFailToOpen(t, "header rewritten to another key id", a, "k0123abce", testBinding, forged)
}

func TestOffsetReadsAroundEveryChunkBoundary(t *testing.T) {
	withChunkSize(t, 64)
	a := newAEAD(t)
	for _, size := range []int{0, 1, 63, 64, 65, 5 * 64, 5*64 + 7} {
		plain := pattern(size)
		sealed := sealWithReader(t, a, testKeyID, testBinding, plain)
		offsets := map[int]bool{0: true, size: true}
		for b := 0; b <= size+64; b += 64 {
			for _, o := range []int{b - 1, b, b + 1} {
				if o >= 0 && o <= size {
					offsets[o] = true
				}
			}
		}
		for off := range offsets {
			st := StartAt(testKeyID, int64(off))
			r := NewReader(bytes.NewReader(sealed[st.StoredOffset:]), a, testKeyID, testBinding, st)
			got, err := io.ReadAll(r)
			if err != nil || !bytes.Equal(got, plain[off:]) {
				t.Fatalf("size %d offset %d: got %d bytes (want %d), err %v", size, off, len(got), size-off, err)
			}
		}
		st := StartAt(testKeyID, int64(size+1))
		if st.StoredOffset < int64(len(sealed)) {
			_, err := io.ReadAll(NewReader(bytes.NewReader(sealed[st.StoredOffset:]), a, testKeyID, testBinding, st))
			if err == nil {
				t.Fatalf("size %d: read at offset %d succeeded", size, size+1)
			}
		}
	}
}

func TestOffsetReadOfTruncatedObjectFails(t *testing.T) {
	withChunkSize(t, 64)
	a := newAEAD(t)
	plain := pattern(4 * 64)
	sealed := sealWithWriter(t, a, testKeyID, testBinding, plain)
	cut := sealed[:HeaderSize(testKeyID)+2*storedChunk()] // chunks 0 and 1 remain
	st := StartAt(testKeyID, 2*64)                        // "the end", if the cut were real
	_, err := io.ReadAll(NewReader(bytes.NewReader(cut[st.StoredOffset:]), a, testKeyID, testBinding, st))
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("offset read at a cut boundary: err %v, want ErrCorrupt", err)
	}
}

func TestSourceErrorsPassThroughUnchanged(t *testing.T) {
	boom := errors.New("disk on fire")
	a := newAEAD(t)
	r, err := NewSealingReader(iotest.ErrReader(boom), a, testKeyID, testBinding)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(r); !errors.Is(err, boom) {
		t.Fatalf("sealing: err %v, want the source's error", err)
	}
	sealed := sealWithWriter(t, a, testKeyID, testBinding, pattern(10))
	src := io.MultiReader(bytes.NewReader(sealed[:10]), iotest.ErrReader(boom))
	if _, err := io.ReadAll(NewReader(src, a, testKeyID, testBinding, Start{})); !errors.Is(err, boom) || errors.Is(err, ErrCorrupt) {
		t.Fatalf("opening: err %v, want the source's error and not ErrCorrupt", err)
	}
}

func TestBadKeyIDIsRejected(t *testing.T) {
	if _, err := NewWriter(io.Discard, newAEAD(t), "", nil); err == nil {
		t.Fatal("empty key id accepted")
	}
	if _, err := NewSealingReader(bytes.NewReader(nil), newAEAD(t), string(make([]byte, 256)), nil); err == nil {
		t.Fatal("256-byte key id accepted")
	}
}

func TestPlainSizeInvertsSealedSize(t *testing.T) {
	for _, c := range []int64{100, ChunkSize} {
		withChunkSize(t, c)
		for _, n := range []int64{0, 1, c - 1, c, c + 1, 10 * c, 10*c + 3} {
			sealed := SealedSize("key1", n)
			if got, err := PlainSize("key1", sealed); err != nil || got != n {
				t.Fatalf("chunk %d: PlainSize(SealedSize(%d) = %d) = %d, %v", c, n, sealed, got, err)
			}
		}
		for _, bad := range []int64{0, HeaderSize("key1") + Overhead - 1, SealedSize("key1", c) + 1, SealedSize("key1", c) + Overhead} {
			if got, err := PlainSize("key1", bad); err == nil {
				t.Fatalf("chunk %d: PlainSize(%d) = %d; want an error for a length no sealed object has", c, bad, got)
			}
		}
	}
}
