package s3

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"
	"testing"

	"github.com/sealcache/sealcache/cas"
	"github.com/sealcache/sealcache/cas/castest"
)

// Which requests a Put sends: one PutObject for an object that fits one
// part (whether its size was announced or not), a multipart upload for a
// larger one, with one UploadPart per started part.
func TestPutRequests(t *testing.T) {
	var rec *recorder
	s, _, _ := openStore(t, func(c *Config) { rec = record(c) })
	multipart := func(parts int) map[string]int {
		return map[string]int{opCreateMultipart: 1, opUploadPart: parts, opCompleteMultipart: 1}
	}
	for _, c := range []struct {
		name  string
		size  int64
		hint  bool // announce the size
		wants map[string]int
	}{
		{"empty", 0, true, map[string]int{opPut: 1}},
		{"small", 1000, true, map[string]int{opPut: 1}},
		{"small, size unknown", 1000, false, map[string]int{opPut: 1}},
		{"exactly one part", testPartSize, true, map[string]int{opPut: 1}},
		// Without a size the store cannot tell a full first part from a
		// longer stream until it reads on.
		{"exactly one part, size unknown", testPartSize, false, multipart(1)},
		{"one byte over one part", testPartSize + 1, true, multipart(2)},
		{"2.5 parts", 5 * testPartSize / 2, true, multipart(3)},
		{"2.5 parts, size unknown", 5 * testPartSize / 2, false, multipart(3)},
		{"3 parts", 3 * testPartSize, true, multipart(3)},
		{"3 parts, size unknown", 3 * testPartSize, false, multipart(3)},
	} {
		t.Run(c.name, func(t *testing.T) {
			data := castest.Bytes(uint64(c.size), c.size)
			k := castest.CASKey("org1", data)
			hint := int64(cas.SizeUnknown)
			if c.hint {
				hint = c.size
			}
			rec.take()
			if err := s.Put(t.Context(), k, hint, bytes.NewReader(data)); err != nil {
				t.Fatal(err)
			}
			if got := operations(rec.take()); fmt.Sprint(got) != fmt.Sprint(c.wants) {
				t.Fatalf("Put of %d bytes sent %v; want %v", c.size, got, c.wants)
			}
			mustRead(t, s, k, data)
		})
	}
}

func mustRead(t *testing.T, s *Store, k cas.Key, want []byte) {
	t.Helper()
	rc, size, err := s.Get(t.Context(), k, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	got, err := io.ReadAll(rc)
	if err != nil || size != int64(len(want)) || !bytes.Equal(got, want) {
		t.Fatalf("reading %s back: size %d, %d bytes, err %v; want the %d bytes stored", k, size, len(got), err, len(want))
	}
}

// A multipart upload holds at most PartSize x PartConcurrency bytes of
// the blob, however large the blob: here 256 MiB of generated data with
// the default 8 MiB parts and 4 buffers, measured as all the bytes the
// process allocates during the Put.
func TestMultipartMemoryIsBounded(t *testing.T) {
	const blobSize = 256 << 20
	s, _, _ := openStore(t, func(c *Config) { c.PartSize = 0 }) // the default
	bound := s.cfg.PartSize * int64(s.cfg.PartConcurrency)
	for _, announced := range []bool{true, false} {
		t.Run(fmt.Sprintf("size announced %v", announced), func(t *testing.T) {
			hint := int64(blobSize)
			if !announced {
				hint = cas.SizeUnknown
			}
			k := castest.ACKey("org1", "", 1)
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			if err := s.Put(t.Context(), k, hint, &patternReader{n: blobSize}); err != nil {
				t.Fatal(err)
			}
			runtime.ReadMemStats(&after)
			allocated := int64(after.TotalAlloc - before.TotalAlloc)
			t.Logf("a %d MiB upload allocated %.1f MiB in all; the buffers' bound is %d MiB",
				blobSize>>20, float64(allocated)/(1<<20), bound>>20)
			// Generous: the SDK and HTTP allocate a little per request, but
			// nothing near the blob size.
			if limit := 2 * bound; allocated > limit {
				t.Fatalf("a %d MiB upload allocated %d MiB; want at most %d MiB (2 x PartSize x PartConcurrency)",
					blobSize>>20, allocated>>20, limit>>20)
			}
			// And the object is the whole stream.
			rc, size, err := s.Get(t.Context(), k, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer rc.Close()
			got, want := sha256.New(), sha256.New()
			if _, err := io.Copy(got, rc); err != nil {
				t.Fatal(err)
			}
			io.Copy(want, &patternReader{n: blobSize})
			if size != blobSize || !bytes.Equal(got.Sum(nil), want.Sum(nil)) {
				t.Fatalf("the object read back has size %d and differs from the %d bytes uploaded", size, blobSize)
			}
		})
	}
}

// failAtEnd yields r's bytes, then err instead of io.EOF, as a digest
// check above the store does.
type failAtEnd struct {
	r   io.Reader
	err error
}

func (f *failAtEnd) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if err == io.EOF {
		return n, f.err
	}
	return n, err
}

// cancelAfter yields r's bytes and cancels its context once n bytes are
// out, like a client that goes away between parts.
type cancelAfter struct {
	r      io.Reader
	n      int64
	cancel context.CancelFunc
}

func (c *cancelAfter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if c.n -= int64(n); c.n <= 0 {
		c.cancel()
	}
	return n, err
}

var errDigest = errors.New("digest mismatch (injected)")

// A multipart upload that fails for any reason publishes nothing and
// leaves no unfinished upload (whose parts S3 would keep and bill).
func TestFailedMultipartLeavesNothing(t *testing.T) {
	const size = 5*testPartSize/2 + 1
	data := castest.Bytes(9, size)
	for _, c := range []struct {
		name string
		put  func(s *Store, rec *recorder, k cas.Key) error
		want error // the error the Put must wrap, if a particular one
	}{
		{"reader fails at the end", func(s *Store, _ *recorder, k cas.Key) error {
			return s.Put(context.Background(), k, size, &failAtEnd{bytes.NewReader(data), errDigest})
		}, errDigest},
		{"reader fails at the end, size unknown", func(s *Store, _ *recorder, k cas.Key) error {
			return s.Put(context.Background(), k, cas.SizeUnknown, &failAtEnd{bytes.NewReader(data), errDigest})
		}, errDigest},
		{"reader fails midway", func(s *Store, _ *recorder, k cas.Key) error {
			return s.Put(context.Background(), k, size, &failAtEnd{bytes.NewReader(data[:size/2]), errDigest})
		}, errDigest},
		{"fewer bytes than announced", func(s *Store, _ *recorder, k cas.Key) error {
			return s.Put(context.Background(), k, size+1, bytes.NewReader(data))
		}, errSizeMismatch},
		{"more bytes than announced", func(s *Store, _ *recorder, k cas.Key) error {
			return s.Put(context.Background(), k, size-1, bytes.NewReader(data))
		}, errSizeMismatch},
		{"context cancelled between parts", func(s *Store, _ *recorder, k cas.Key) error {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			return s.Put(ctx, k, size, &cancelAfter{r: bytes.NewReader(data), n: testPartSize + 1, cancel: cancel})
		}, context.Canceled},
		{"a part is refused", func(s *Store, rec *recorder, k cas.Key) error {
			rec.refuse = func(r request, count int) string {
				if r.Operation == opUploadPart && count == 2 {
					return "BadDigest"
				}
				return ""
			}
			return s.Put(context.Background(), k, size, bytes.NewReader(data))
		}, nil},
		{"completing is refused", func(s *Store, rec *recorder, k cas.Key) error {
			rec.refuse = func(r request, _ int) string {
				if r.Operation == opCompleteMultipart {
					return "InvalidPart"
				}
				return ""
			}
			return s.Put(context.Background(), k, size, bytes.NewReader(data))
		}, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			var rec *recorder
			s, srv, bucket := openStore(t, func(c *Config) { rec = record(c) })
			k := castest.CASKey("org1", data)
			err := c.put(s, rec, k)
			if err == nil {
				t.Fatal("Put succeeded; want an error")
			}
			if c.want != nil && !errors.Is(err, c.want) {
				t.Fatalf("Put = %v; want an error wrapping %v", err, c.want)
			}
			if ops := operations(rec.take()); ops[opCreateMultipart] != 1 || ops[opAbortMultipart] != 1 {
				t.Fatalf("the failed Put sent %v; want one CreateMultipartUpload and one AbortMultipartUpload", ops)
			}
			if names := listNames(t, srv, bucket); len(names) != 0 {
				t.Fatalf("the failed Put left objects %v", names)
			}
			if ups := unfinishedUploads(t, srv, bucket); len(ups) != 0 {
				t.Fatalf("the failed Put left unfinished multipart uploads %v", ups)
			}
		})
	}
}

// A failed overwrite leaves the old object whole, whichever path it took.
func TestFailedOverwriteKeepsOldObject(t *testing.T) {
	s, _, _ := openStore(t)
	k := castest.ACKey("org1", "", 7)
	old := []byte("the old action result")
	if err := s.Put(t.Context(), k, int64(len(old)), bytes.NewReader(old)); err != nil {
		t.Fatal(err)
	}
	for _, n := range []int64{10, 3 * testPartSize} {
		data := castest.Bytes(uint64(n), n)
		if err := s.Put(t.Context(), k, n, &failAtEnd{bytes.NewReader(data), errDigest}); !errors.Is(err, errDigest) {
			t.Fatalf("Put of %d bytes failing at the end = %v; want the reader's error", n, err)
		}
		mustRead(t, s, k, old)
	}
}

// Uploads share one memory budget without deadlock: with room for a
// single part in the whole store, concurrent multipart uploads take turns
// and all complete.
func TestUploadsShareTheMemoryBudget(t *testing.T) {
	s, _, _ := openStore(t, func(c *Config) { c.UploadMemory = testPartSize })
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	blobs := make([][]byte, 4)
	for i := range blobs {
		blobs[i] = castest.Bytes(uint64(100+i), 5*testPartSize/2)
		wg.Go(func() {
			k := castest.CASKey("org1", blobs[i])
			errs <- s.Put(t.Context(), k, cas.SizeUnknown, bytes.NewReader(blobs[i]))
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, b := range blobs {
		mustRead(t, s, castest.CASKey("org1", b), b)
	}
}

// Objects beyond MaxParts parts are refused before any byte is sent.
func TestTooLargeForMaxParts(t *testing.T) {
	var rec *recorder
	s, _, _ := openStore(t, func(c *Config) { rec = record(c) })
	rec.take()
	k := castest.ACKey("org1", "", 8)
	err := s.Put(t.Context(), k, MaxParts*testPartSize+1, bytes.NewReader(nil))
	if !errors.Is(err, cas.ErrTooLarge) {
		t.Fatalf("Put of %d bytes = %v; want cas.ErrTooLarge", MaxParts*testPartSize+1, err)
	}
	if reqs := rec.take(); len(reqs) != 0 {
		t.Fatalf("the refused Put sent %v", reqs)
	}
}
