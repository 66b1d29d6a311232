package verify

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"

	"github.com/sealcache/sealcache/cas"
	"github.com/sealcache/sealcache/cas/disk"
)

// newStores returns verify over a real disk store, the disk store itself
// and its directory.
func newStores(t testing.TB) (cas.BlobStore, *disk.Store, string) {
	t.Helper()
	dir := t.TempDir()
	d, err := disk.Open(dir, 1<<30, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return New(d, nil), d, dir
}

func keyFor(fn cas.DigestFunction, data []byte) cas.Key {
	return cas.Key{Partition: "org1", Kind: cas.KindCAS, Digest: cas.DigestOf(fn, data)}
}

func sha(data []byte) cas.Key { return keyFor(repb.DigestFunction_SHA256, data) }

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
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
	rc, err := s.Get(context.Background(), k, offset)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(smallReads{rc})
}

// objectFile finds the file that holds k in the disk store's directory.
func objectFile(t *testing.T, dir string, k cas.Key) string {
	t.Helper()
	name := fmt.Sprintf("%s-%d", k.Digest.Hash, k.Digest.Size)
	var found string
	filepath.WalkDir(filepath.Join(dir, "objects"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Name() == name {
			found = p
		}
		return nil
	})
	if found == "" {
		t.Fatalf("no file for %s", k)
	}
	return found
}

func TestPutGetRoundTrip(t *testing.T) {
	s, _, _ := newStores(t)
	ctx := context.Background()
	for _, fn := range cas.SupportedDigestFunctions {
		for _, size := range []int{0, 1, 2, 1000, 300_000} {
			data := randomBytes(size)
			k := keyFor(fn, data)
			if err := s.Put(ctx, k, bytes.NewReader(data)); err != nil {
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
	s, inner, _ := newStores(t)
	k := sha([]byte("abc"))
	err := s.Put(context.Background(), k, strings.NewReader("abd"))
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
	s, inner, _ := newStores(t)
	for _, sent := range []string{"abc", "abcde"} {
		k := sha([]byte("abcd"))
		err := s.Put(context.Background(), k, strings.NewReader(sent))
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
	s, inner, _ := newStores(t)
	k := sha([]byte("abc"))
	src := &endless{}
	err := s.Put(context.Background(), k, src)
	if !errors.Is(err, ErrDigestMismatch) || !strings.Contains(err.Error(), "received more than 3 bytes") {
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
	s, _, _ := newStores(t)
	k := sha(nil)
	if err := s.Put(context.Background(), k, strings.NewReader("")); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(context.Background(), k, strings.NewReader("x")); !errors.Is(err, ErrDigestMismatch) {
		t.Fatalf("empty digest with data: %v, want ErrDigestMismatch", err)
	}
}

func TestPutReaderErrorPassesThrough(t *testing.T) {
	s, inner, _ := newStores(t)
	data := randomBytes(10_000)
	k := sha(data)
	boom := errors.New("connection reset")
	err := s.Put(context.Background(), k, io.MultiReader(bytes.NewReader(data[:5000]), iotest.ErrReader(boom)))
	if !errors.Is(err, boom) || errors.Is(err, ErrDigestMismatch) {
		t.Fatalf("Put = %v, want the reader's error and no mismatch", err)
	}
	if !missing(t, inner, k) {
		t.Fatal("a failed upload was stored")
	}
}

func TestACPassesThrough(t *testing.T) {
	s, _, _ := newStores(t)
	k := cas.Key{Partition: "org1", Kind: cas.KindAC, Instance: "linux", Digest: cas.DigestOf(repb.DigestFunction_SHA256, []byte("action"))}
	if err := s.Put(context.Background(), k, strings.NewReader("an ActionResult")); err != nil {
		t.Fatalf("AC Put: %v", err)
	}
	if got, err := readAll(s, k, 0); err != nil || string(got) != "an ActionResult" {
		t.Fatalf("AC Get = %q, %v", got, err)
	}
}

func TestOffsetReads(t *testing.T) {
	s, _, _ := newStores(t)
	data := randomBytes(200_000)
	k := sha(data)
	if err := s.Put(context.Background(), k, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	for _, off := range []int64{0, 1, 65_535, 65_536, 100_000, 199_999, 200_000} {
		got, err := readAll(s, k, off)
		if err != nil || !bytes.Equal(got, data[off:]) {
			t.Fatalf("offset %d: %d bytes, %v; want %d bytes", off, len(got), err, len(data)-int(off))
		}
	}
	if _, err := s.Get(context.Background(), k, 200_001); err == nil {
		t.Fatal("offset past the end accepted")
	}
}

func TestOneByteReads(t *testing.T) {
	s, _, _ := newStores(t)
	data := randomBytes(3000)
	k := sha(data)
	if err := s.Put(context.Background(), k, iotest.OneByteReader(bytes.NewReader(data))); err != nil {
		t.Fatal(err)
	}
	for _, off := range []int64{0, 1, 2999, 3000} {
		rc, err := s.Get(context.Background(), k, off)
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

func TestCorruptByteOnDiskIsNeverServed(t *testing.T) {
	const size = 100_000
	for _, pos := range []int{0, size / 2, size - 1} {
		for _, off := range []int64{0, size / 2, size - 1, size} {
			t.Run(fmt.Sprintf("flip%d_offset%d", pos, off), func(t *testing.T) {
				s, inner, dir := newStores(t)
				data := randomBytes(size)
				k := sha(data)
				if err := s.Put(context.Background(), k, bytes.NewReader(data)); err != nil {
					t.Fatal(err)
				}
				path := objectFile(t, dir, k)
				onDisk, _ := os.ReadFile(path)
				onDisk[pos] ^= 0x01
				if err := os.WriteFile(path, onDisk, 0o600); err != nil {
					t.Fatal(err)
				}

				got, err := readAll(s, k, off)
				if !errors.Is(err, ErrCorrupt) {
					t.Fatalf("Get of a corrupt blob: %v, want ErrCorrupt", err)
				}
				if off < size && int64(len(got)) >= size-off {
					t.Fatalf("the whole corrupt content (%d bytes) was served", len(got))
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
			s, inner, dir := newStores(t)
			data := randomBytes(5000)
			k := sha(data)
			if err := s.Put(context.Background(), k, bytes.NewReader(data)); err != nil {
				t.Fatal(err)
			}
			bad := append(data[:4000:4000], data[4000:4999]...)
			if change == "append" {
				bad = append(append([]byte{}, data...), 'x')
			}
			os.WriteFile(objectFile(t, dir, k), bad, 0o600)

			_, err := s.Get(context.Background(), k, 0)
			if !errors.Is(err, ErrCorrupt) || !errors.Is(err, cas.ErrNotFound) {
				t.Fatalf("Get = %v, want ErrCorrupt that is also a miss", err)
			}
			if !missing(t, inner, k) {
				t.Fatal("the corrupt blob is still stored")
			}
		})
	}
}

// noStat hides the inner store's *os.File so that the length check at open
// cannot run and the reader must catch a wrong length at EOF, as it would
// over a store that streams from elsewhere.
type noStat struct{ cas.BlobStore }

type plainReadCloser struct{ io.ReadCloser }

func (n noStat) Get(ctx context.Context, k cas.Key, off int64) (io.ReadCloser, error) {
	rc, err := n.BlobStore.Get(ctx, k, off)
	if err != nil {
		return nil, err
	}
	return plainReadCloser{rc}, nil
}

func TestWrongLengthCaughtAtEOFWithoutStat(t *testing.T) {
	for _, change := range []string{"truncate", "append"} {
		t.Run(change, func(t *testing.T) {
			_, inner, dir := newStores(t)
			s := New(noStat{inner}, nil)
			data := randomBytes(5000)
			k := sha(data)
			if err := s.Put(context.Background(), k, bytes.NewReader(data)); err != nil {
				t.Fatal(err)
			}
			bad := data[:4999]
			if change == "append" {
				bad = append(append([]byte{}, data...), "more"...)
			}
			os.WriteFile(objectFile(t, dir, k), bad, 0o600)

			got, err := readAll(s, k, 0)
			if !errors.Is(err, ErrCorrupt) || len(got) >= len(data) {
				t.Fatalf("Get = %d bytes, %v; want ErrCorrupt before the last byte", len(got), err)
			}
			if !missing(t, inner, k) {
				t.Fatal("the corrupt blob is still stored")
			}
		})
	}
}
