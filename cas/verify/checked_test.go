package verify

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"testing"
	"testing/iotest"

	"github.com/sealcache/sealcache/cas"
	"github.com/sealcache/sealcache/cas/memory"
)

// Specification of the checked format (checked.go) and of reading blobs
// stored before it.

func TestCheckedSizeHasOneShortBlockAtTheEnd(t *testing.T) {
	for _, n := range []int64{0, 1, blockSize - 1, blockSize, blockSize + 1, 3*blockSize - 1, 3 * blockSize, 1 << 30} {
		want := headerSize + n + crcSize*(n/blockSize+1)
		if got := checkedSize(n); got != want {
			t.Errorf("checkedSize(%d) = %d, want %d", n, got, want)
		}
		if back, ok := checkedPlainSize(checkedSize(n)); !ok || back != n {
			t.Errorf("checkedPlainSize(checkedSize(%d)) = %d, %v", n, back, ok)
		}
	}
	// Lengths no blob is stored in: too short for the header and a CRC, or
	// ending inside a CRC.
	for _, stored := range []int64{0, headerSize, headerSize + crcSize - 1, headerSize + blockSize + crcSize, headerSize + blockSize + crcSize + 3} {
		if _, ok := checkedPlainSize(stored); ok {
			t.Errorf("checkedPlainSize(%d) accepted a length no blob has", stored)
		}
	}
}

func TestBlobsAroundBlockBoundariesRoundTripFromEveryBoundary(t *testing.T) {
	for _, n := range []int{1, blockSize - 1, blockSize, blockSize + 1, 2 * blockSize, 2*blockSize + 7} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			s, inner := newStores(t)
			data := randomBytes(n)
			k := sha(data)
			// One-byte reads from the upload: the writer's blocks must not
			// depend on how the upload arrives.
			if err := s.Put(context.Background(), k, int64(n), iotest.OneByteReader(bytes.NewReader(data))); err != nil {
				t.Fatal(err)
			}
			if got := int64(len(inner.Raw(k))); got != checkedSize(int64(n)) {
				t.Fatalf("stored %d bytes, want %d", got, checkedSize(int64(n)))
			}
			for _, off := range []int{0, 1, blockSize - 1, blockSize, blockSize + 1, n - 1, n} {
				if off < 0 || off > n {
					continue
				}
				for name, read := range map[string]func(io.Reader) ([]byte, error){
					"large reads":    io.ReadAll,
					"one-byte reads": func(r io.Reader) ([]byte, error) { return io.ReadAll(iotest.OneByteReader(r)) },
				} {
					rc, size, err := s.Get(context.Background(), k, int64(off))
					if err != nil || size != int64(n) {
						t.Fatalf("offset %d: Get = %d, %v", off, size, err)
					}
					got, err := read(rc)
					rc.Close()
					if err != nil || !bytes.Equal(got, data[off:]) {
						t.Fatalf("offset %d, %s: %d bytes, %v; want %d bytes", off, name, len(got), err, n-off)
					}
				}
			}
		})
	}
}

// Blocks are bound to their blob and their place in it: moving a whole
// block, CRC included, is caught like a flipped byte.
func TestMovedBlocksAreCaught(t *testing.T) {
	blockAt := func(raw []byte, i int) []byte {
		start := headerSize + i*(blockSize+crcSize)
		return raw[start : start+blockSize+crcSize]
	}
	t.Run("swapped within a blob", func(t *testing.T) {
		s, inner := newStores(t)
		data := randomBytes(3 * blockSize)
		k := sha(data)
		if err := put(s, k, data); err != nil {
			t.Fatal(err)
		}
		raw := inner.Raw(k)
		b0, b1 := bytes.Clone(blockAt(raw, 0)), bytes.Clone(blockAt(raw, 1))
		copy(blockAt(raw, 0), b1)
		copy(blockAt(raw, 1), b0)
		inner.Set(k, raw)
		if _, err := readAll(s, k, 0); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("read of swapped blocks: %v, want ErrCorrupt", err)
		}
	})
	t.Run("taken from another blob", func(t *testing.T) {
		s, inner := newStores(t)
		a, b := randomBytes(2*blockSize), randomBytes(2*blockSize)
		ka, kb := sha(a), sha(b)
		if err := put(s, ka, a); err != nil {
			t.Fatal(err)
		}
		if err := put(s, kb, b); err != nil {
			t.Fatal(err)
		}
		raw := inner.Raw(ka)
		copy(blockAt(raw, 1), blockAt(inner.Raw(kb), 1))
		inner.Set(ka, raw)
		if _, err := readAll(s, ka, blockSize); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("read of a block of another blob: %v, want ErrCorrupt", err)
		}
	})
}

// A blob cut off after a whole block lacks its short last block: its
// stored length is no checked length, and it is a corrupt miss at open.
func TestBlobCutAtABlockBoundaryIsCaughtAtOpen(t *testing.T) {
	s, inner := newStores(t)
	data := randomBytes(2*blockSize + 100)
	k := sha(data)
	if err := put(s, k, data); err != nil {
		t.Fatal(err)
	}
	inner.Set(k, inner.Raw(k)[:headerSize+2*(blockSize+crcSize)])
	_, _, err := s.Get(context.Background(), k, 0)
	if !errors.Is(err, ErrCorrupt) || !errors.Is(err, cas.ErrNotFound) {
		t.Fatalf("Get = %v, want ErrCorrupt that is also a miss", err)
	}
	if !missing(t, inner, k) {
		t.Fatal("the cut blob is still stored")
	}
}

// Blobs stored by earlier versions (the blob's bytes alone) are served,
// re-hashed as before, from any offset; a damaged one is a corrupt miss.
func TestBlobStoredBeforeTheCheckedFormatIsStillServed(t *testing.T) {
	data := randomBytes(3*blockSize + 5)
	for _, k := range []cas.Key{sha(data), httpKey(data)} {
		t.Run(fmt.Sprintf("size %d", k.Digest.Size), func(t *testing.T) {
			s, inner := newStores(t)
			inner.Set(k, bytes.Clone(data))
			for _, off := range []int64{0, 1, blockSize + 3, int64(len(data))} {
				got, err := readAll(s, k, off)
				if err != nil || !bytes.Equal(got, data[off:]) {
					t.Fatalf("offset %d: %d bytes, %v", off, len(got), err)
				}
			}
			bad := bytes.Clone(data)
			bad[blockSize] ^= 1
			inner.Set(k, bad)
			got, err := readAll(s, k, 0)
			if !errors.Is(err, ErrCorrupt) || len(got) == len(data) {
				t.Fatalf("a damaged old blob: %d bytes, %v; want ErrCorrupt before its last byte", len(got), err)
			}
			if !missing(t, inner, k) {
				t.Fatal("the damaged old blob is still stored")
			}
		})
	}
}

// httpKey names data the way the HTTP cache protocol does: by hash alone.
func httpKey(data []byte) cas.Key {
	k := sha(data)
	k.Digest.Size = cas.SizeUnknown
	return k
}

func TestHTTPBlobsAreStoredCheckedToo(t *testing.T) {
	s, inner := newStores(t)
	data := randomBytes(blockSize + 10)
	k := httpKey(data)
	if err := s.Put(context.Background(), k, cas.SizeUnknown, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	if raw := inner.Raw(k); !isCheckedHeader(raw) || int64(len(raw)) != checkedSize(int64(len(data))) {
		t.Fatalf("stored %d bytes, not the checked form", len(raw))
	}
	rc, size, err := s.Get(context.Background(), k, 0)
	if err != nil || size != int64(len(data)) {
		t.Fatalf("Get = %d, %v", size, err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read back %d bytes, %v", len(got), err)
	}
}

// An old HTTP blob that happens to begin like the checked format cannot be
// told from a damaged checked blob: it is dropped as corrupt, a clean miss,
// and the client uploads it again.
func TestOldHTTPBlobThatLooksCheckedIsACleanMiss(t *testing.T) {
	s, inner := newStores(t)
	data := append(checkedHeader[:], randomBytes(100)...)
	data = data[:checkedSize(90)] // a length the checked format has
	k := httpKey(data)
	inner.Set(k, bytes.Clone(data))
	_, err := readAll(s, k, 0)
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("read = %v, want ErrCorrupt", err)
	}
	if !missing(t, inner, k) {
		t.Fatal("the blob is still stored")
	}
}

// failsOnceAtOffset is a store whose first Get from a nonzero offset fails
// the way a backend fails for a moment (a timeout, a refused connection).
type failsOnceAtOffset struct {
	cas.BlobStore
	failed bool
}

var errBriefOutage = errors.New("backend briefly unavailable")

func (f *failsOnceAtOffset) Get(ctx context.Context, k cas.Key, offset int64) (io.ReadCloser, int64, error) {
	if offset > 0 && !f.failed {
		f.failed = true
		return nil, 0, errBriefOutage
	}
	return f.BlobStore.Get(ctx, k, offset)
}

// An open from a block past the first that fails is retried from the start;
// a checked blob found there is served from the block of the offset, not
// taken for an old blob of the wrong length and deleted.
func TestFailedOpenAtABlockIsRetriedFromTheStart(t *testing.T) {
	inner := memory.New()
	flaky := &failsOnceAtOffset{BlobStore: inner}
	s := New(flaky, nil)
	data := randomBytes(2*blockSize + 100)
	k := sha(data)
	if err := put(s, k, data); err != nil {
		t.Fatal(err)
	}
	for _, off := range []int64{blockSize + 1, 2 * blockSize} {
		flaky.failed = false
		got, err := readAll(s, k, off)
		if !flaky.failed {
			t.Fatal("the open at the block did not fail; the test tests nothing")
		}
		if err != nil || !bytes.Equal(got, data[off:]) {
			t.Fatalf("offset %d: %d bytes, %v; want the %d bytes from there", off, len(got), err, int64(len(data))-off)
		}
		if missing(t, inner, k) {
			t.Fatal("an intact blob was deleted after a failed open")
		}
	}
}
