package verify

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"

	"github.com/sealcache/sealcache/cas"
	"github.com/sealcache/sealcache/cas/memory"
)

// newStores returns verify over the shared in-memory fake, and the fake.
func newStores(t testing.TB) (cas.BlobStore, *memory.Store) {
	t.Helper()
	inner := memory.New()
	return New(inner, nil), inner
}

func keyFor(fn cas.DigestFunction, data []byte) cas.Key {
	return cas.Key{Partition: "org1", Kind: cas.KindCAS, Digest: cas.DigestOf(fn, data)}
}

func sha(data []byte) cas.Key { return keyFor(repb.DigestFunction_SHA256, data) }

func acKey(action string) cas.Key {
	return cas.Key{Partition: "org1", Kind: cas.KindAC, Instance: "linux", Digest: cas.DigestOf(repb.DigestFunction_SHA256, []byte(action))}
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func put(s cas.BlobStore, k cas.Key, data []byte) error {
	return s.Put(context.Background(), k, int64(len(data)), bytes.NewReader(data))
}

func missing(t testing.TB, s cas.BlobStore, k cas.Key) bool {
	t.Helper()
	m, err := s.FindMissing(context.Background(), []cas.Key{k})
	if err != nil {
		t.Fatal(err)
	}
	return len(m) == 1
}

// smallReads limits every Read to an odd size, so the verifying reader's
// boundaries (offset, last byte) fall inside a caller's buffer.
type smallReads struct{ r io.Reader }

func (s smallReads) Read(p []byte) (int, error) { return s.r.Read(p[:min(len(p), 997)]) }

func readAll(s cas.BlobStore, k cas.Key, offset int64) ([]byte, error) {
	rc, _, err := s.Get(context.Background(), k, offset)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(smallReads{rc})
}

func TestPutGetRoundTrip(t *testing.T) {
	s, _ := newStores(t)
	for _, fn := range cas.SupportedDigestFunctions {
		for _, size := range []int{0, 1, 2, 1000, 300_000} {
			data := randomBytes(size)
			k := keyFor(fn, data)
			if err := put(s, k, data); err != nil {
				t.Fatalf("%s size %d: Put: %v", fn, size, err)
			}
			got, err := readAll(s, k, 0)
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("%s size %d: Get returned %d bytes, %v", fn, size, len(got), err)
			}
		}
	}
}

func TestPutWrongHashStoresNothing(t *testing.T) {
	s, inner := newStores(t)
	k := sha([]byte("abc"))
	err := s.Put(context.Background(), k, 3, strings.NewReader("abd"))
	if !errors.Is(err, ErrDigestMismatch) {
		t.Fatalf("Put = %v, want ErrDigestMismatch", err)
	}
	var me *MismatchError
	if !errors.As(err, &me) || me.Actual != cas.DigestOf(repb.DigestFunction_SHA256, []byte("abd")) {
		t.Fatalf("MismatchError = %+v", me)
	}
	want := fmt.Sprintf("blob %s does not match its digest: received 3 bytes hashing to %s", k.Digest, me.Actual)
	if err.Error() != want {
		t.Fatalf("error = %q\nwant    %q", err, want)
	}
	if !missing(t, inner, k) {
		t.Fatal("the inner store kept a blob with the wrong hash")
	}
}

func TestPutWrongSizeStoresNothing(t *testing.T) {
	s, inner := newStores(t)
	for _, sent := range []string{"abc", "abcde"} {
		k := sha([]byte("abcd"))
		err := s.Put(context.Background(), k, cas.SizeUnknown, strings.NewReader(sent))
		if !errors.Is(err, ErrDigestMismatch) {
			t.Fatalf("Put of %q for a 4-byte digest = %v, want ErrDigestMismatch", sent, err)
		}
		if !missing(t, inner, k) {
			t.Fatalf("the inner store kept %q under a 4-byte digest", sent)
		}
	}
}

// endless yields 'x' forever and counts what it handed out.
type endless struct{ n int64 }

func (e *endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'x'
	}
	e.n += int64(len(p))
	return len(p), nil
}

func TestPutOversizeStreamStopsEarly(t *testing.T) {
	s, inner := newStores(t)
	k := sha([]byte("abc"))
	src := &endless{}
	err := s.Put(context.Background(), k, 3, src)
	if !errors.Is(err, ErrDigestMismatch) || !strings.Contains(err.Error(), "received more than its 3 bytes") {
		t.Fatalf("Put of an endless stream = %v", err)
	}
	if src.n > 4 {
		t.Fatalf("read %d bytes of an upload declared as 3; want to stop at the 4th", src.n)
	}
	if !missing(t, inner, k) {
		t.Fatal("oversized upload stored")
	}
}

func TestPutEmptyBlob(t *testing.T) {
	s, _ := newStores(t)
	k := sha(nil)
	if err := s.Put(context.Background(), k, 0, strings.NewReader("")); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(context.Background(), k, cas.SizeUnknown, strings.NewReader("x")); !errors.Is(err, ErrDigestMismatch) {
		t.Fatalf("empty digest with data: %v, want ErrDigestMismatch", err)
	}
}

func TestPutReaderErrorPassesThrough(t *testing.T) {
	s, inner := newStores(t)
	data := randomBytes(10_000)
	k := sha(data)
	boom := errors.New("connection reset")
	err := s.Put(context.Background(), k, int64(len(data)), io.MultiReader(bytes.NewReader(data[:5000]), iotest.ErrReader(boom)))
	if !errors.Is(err, boom) || errors.Is(err, ErrDigestMismatch) {
		t.Fatalf("Put = %v, want the reader's error and no mismatch", err)
	}
	if !missing(t, inner, k) {
		t.Fatal("a failed upload was stored")
	}
}

func TestACEntryRoundTripsWithAChecksumTrailer(t *testing.T) {
	s, inner := newStores(t)
	k := acKey("action")
	entry := []byte("an ActionResult, or a ccache entry")
	if err := put(s, k, entry); err != nil {
		t.Fatalf("AC Put: %v", err)
	}
	if got := inner.Raw(k); len(got) != len(entry)+ACChecksumSize || !bytes.Equal(got[:len(entry)], entry) {
		t.Fatalf("stored AC entry is %d bytes; want the entry and a %d-byte checksum", len(got), ACChecksumSize)
	}
	rc, size, err := s.Get(context.Background(), k, 0)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(rc)
	rc.Close()
	if size != int64(len(entry)) || !bytes.Equal(got, entry) {
		t.Fatalf("AC Get = %q (size %d); want %q", got, size, entry)
	}
	if got, err := readAll(s, k, 3); err != nil || !bytes.Equal(got, entry[3:]) {
		t.Fatalf("AC Get at offset 3 = %q, %v", got, err)
	}
}

func TestEmptyACEntry(t *testing.T) {
	s, _ := newStores(t)
	k := acKey("empty result")
	if err := put(s, k, nil); err != nil {
		t.Fatal(err)
	}
	if got, err := readAll(s, k, 0); err != nil || len(got) != 0 {
		t.Fatalf("empty AC entry read back as %q, %v", got, err)
	}
}

// An AC entry changed on disk (CMEK orgs are protected by the AEAD, plain
// ones by the checksum) is a miss and is deleted, never served.
func TestCorruptACEntryIsAMissAndDeleted(t *testing.T) {
	entry := []byte("an ActionResult that someone edits on disk")
	for _, change := range []string{"flip entry byte", "flip checksum byte", "truncate", "append", "drop checksum"} {
		t.Run(change, func(t *testing.T) {
			s, inner := newStores(t)
			k := acKey("action")
			if err := put(s, k, entry); err != nil {
				t.Fatal(err)
			}
			raw := inner.Raw(k)
			switch change {
			case "flip entry byte":
				raw[5] ^= 1
			case "flip checksum byte":
				raw[len(raw)-1] ^= 1
			case "truncate":
				raw = raw[:len(raw)-1]
			case "append":
				raw = append(raw, 0)
			case "drop checksum":
				raw = raw[:len(entry)]
			}
			inner.Set(k, raw)
			// The read ends in an error, never in a clean EOF, so no
			// client takes what it got for the entry.
			got, err := readAll(s, k, 0)
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Get of a corrupt AC entry = %q, %v; want ErrCorrupt", got, err)
			}
			if !missing(t, inner, k) {
				t.Fatal("the corrupt AC entry is still stored")
			}
		})
	}
}

func TestOffsetReads(t *testing.T) {
	s, _ := newStores(t)
	data := randomBytes(200_000)
	k := sha(data)
	if err := put(s, k, data); err != nil {
		t.Fatal(err)
	}
	for _, off := range []int64{0, 1, 65_535, 65_536, 100_000, 199_999, 200_000} {
		got, err := readAll(s, k, off)
		if err != nil || !bytes.Equal(got, data[off:]) {
			t.Fatalf("offset %d: %d bytes, %v; want %d bytes", off, len(got), err, len(data)-int(off))
		}
	}
	if _, _, err := s.Get(context.Background(), k, 200_001); err == nil {
		t.Fatal("offset past the end accepted")
	}
}

func TestOneByteReads(t *testing.T) {
	s, _ := newStores(t)
	data := randomBytes(3000)
	k := sha(data)
	if err := s.Put(context.Background(), k, int64(len(data)), iotest.OneByteReader(bytes.NewReader(data))); err != nil {
		t.Fatal(err)
	}
	for _, off := range []int64{0, 1, 2999, 3000} {
		rc, _, err := s.Get(context.Background(), k, off)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(iotest.OneByteReader(rc))
		rc.Close()
		if err != nil || !bytes.Equal(got, data[off:]) {
			t.Fatalf("offset %d: %d bytes, %v", off, len(got), err)
		}
	}
}

// A changed byte anywhere in a stored blob (header, data or CRC) fails
// every read of the block it is in, before any byte of that block is
// served, and the blob is deleted. Blocks a read does not reach are not
// read, so a read that starts past the damage serves intact bytes.
func TestCorruptByteOnDiskIsNeverServed(t *testing.T) {
	const size = 100_000 // block 0: 0-65535, block 1 (the last): 65536-99999
	stored := func(block int64, at int64) int64 { return headerSize + block*(blockSize+crcSize) + at }
	for _, flip := range []struct {
		name  string
		pos   int64 // in the stored object
		block int64 // the first block whose reads fail
	}{
		{"header", 0, 0},
		{"first byte", stored(0, 0), 0},
		{"block 0 CRC", stored(0, blockSize), 0},
		{"middle of block 1", stored(1, 20_000), 1},
		{"last CRC", stored(1, size-blockSize+1), 1},
	} {
		for _, off := range []int64{0, 50_000, 65_536, size - 1, size} {
			t.Run(fmt.Sprintf("%s_offset%d", flip.name, off), func(t *testing.T) {
				s, inner := newStores(t)
				data := randomBytes(size)
				k := sha(data)
				if err := put(s, k, data); err != nil {
					t.Fatal(err)
				}
				raw := inner.Raw(k)
				raw[flip.pos] ^= 0x01
				inner.Set(k, raw)

				got, err := readAll(s, k, off)
				if !bytes.Equal(got, data[off:off+int64(len(got))]) {
					t.Fatalf("served %d bytes that differ from the blob", len(got))
				}
				if off/blockSize > flip.block || (off == size && flip.block < size/blockSize) {
					if err != nil || len(got) != size-int(off) {
						t.Fatalf("a read past the damaged block: %d bytes, %v; want the intact rest", len(got), err)
					}
					return
				}
				if !errors.Is(err, ErrCorrupt) {
					t.Fatalf("Get of a corrupt blob: %v, want ErrCorrupt", err)
				}
				if end := off + int64(len(got)); len(got) > 0 && end > flip.block*blockSize {
					t.Fatalf("served up to byte %d, into the damaged block %d", end, flip.block)
				}
				if !missing(t, inner, k) {
					t.Fatal("the corrupt blob is still stored")
				}
			})
		}
	}
}

func TestWrongLengthOnDiskIsCaughtAtOpen(t *testing.T) {
	for _, change := range []string{"truncate", "append"} {
		t.Run(change, func(t *testing.T) {
			s, inner := newStores(t)
			data := randomBytes(5000)
			k := sha(data)
			if err := put(s, k, data); err != nil {
				t.Fatal(err)
			}
			bad := append(data[:4000:4000], data[4000:4999]...)
			if change == "append" {
				bad = append(append([]byte{}, data...), 'x')
			}
			inner.Set(k, bad)

			_, _, err := s.Get(context.Background(), k, 0)
			if !errors.Is(err, ErrCorrupt) || !errors.Is(err, cas.ErrNotFound) {
				t.Fatalf("Get = %v, want ErrCorrupt that is also a miss", err)
			}
			if !missing(t, inner, k) {
				t.Fatal("the corrupt blob is still stored")
			}
		})
	}
}
