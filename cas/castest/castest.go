// Package castest is the conformance suite every storage backend runs: one
// table of behaviours that callers of cas.BlobStore and cas.PartitionStore
// rely on. A backend's own test calls Run with a function that opens a
// fresh, empty instance:
//
//	func TestConformance(t *testing.T) {
//		castest.Run(t, castest.Options{}, func(t *testing.T) cas.Backend { return openTestStore(t) })
//	}
//
// Wrappers that change the stored form (encryption, verification) are not
// backends; they are tested over the shared fake in cas/memory.
package castest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"

	"github.com/sealcache/sealcache/cas"
)

// Options tunes the suite to a backend.
type Options struct {
	// LargeSize is the size of the largest object the suite stores; it
	// should cross the backend's internal boundaries (chunk or part size,
	// inline threshold). Default: 3 MiB + 17 bytes.
	LargeSize int64
	// NoUsage skips the cas.UsageReporter checks (for backends whose usage
	// figures are refreshed asynchronously).
	NoUsage bool
}

// Run runs every behaviour as a subtest, each against a fresh store.
func Run(t *testing.T, opts Options, open func(t *testing.T) cas.Backend) {
	if opts.LargeSize == 0 {
		opts.LargeSize = 3<<20 + 17
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.run(t, &suite{t: t, store: open(t), opts: opts})
		})
	}
}

type suite struct {
	t     *testing.T
	store cas.Backend
	opts  Options
}

var cases = []struct {
	name string
	run  func(t *testing.T, s *suite)
}{
	{"RoundTripReturnsBytesAndSize", testRoundTrip},
	{"OffsetReads", testOffsetReads},
	{"MissingObjects", testMissing},
	{"FindMissingKeepsInputOrder", testFindMissingOrder},
	{"KindsInstancesAndUnknownSizeAreDistinctKeys", testDistinctKeys},
	{"OverwriteReplacesWholeObject", testOverwrite},
	{"DeleteRemovesOneObject", testDelete},
	{"FailedReaderPublishesNothing", testFailedReader},
	{"ReaderErrorInsteadOfEOFPublishesNothing", testNoEOF},
	{"WrongSizeHintPublishesNothing", testWrongSizeHint},
	{"CancelledPutPublishesNothing", testCancelledPut},
	{"ConcurrentPutsOfOneKey", testConcurrentPuts},
	{"ConcurrentPutsAndGetsOfManyKeys", testConcurrentMany},
	{"WalkAndDeletePartitionAreSegmentWise", testPartitions},
	{"OrgUsageFollowsPutsAndDeletes", testUsage},
}

// Data and keys.

// Bytes returns n deterministic pseudo-random bytes for seed. Objects of a
// few bytes from different seeds can be equal; give tiny ones distinct
// contents some other way when their keys must differ.
func Bytes(seed uint64, n int64) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// CASKey is the key of data as a SHA-256 CAS blob in partition.
func CASKey(partition cas.Partition, data []byte) cas.Key {
	return cas.Key{Partition: partition, Kind: cas.KindCAS, Digest: cas.DigestOf(repb.DigestFunction_SHA256, data)}
}

// ACKey is an action cache key for the action named by seed.
func ACKey(partition cas.Partition, instance string, seed uint64) cas.Key {
	return cas.Key{Partition: partition, Kind: cas.KindAC, Instance: instance,
		Digest: cas.DigestOf(repb.DigestFunction_SHA256, Bytes(seed, 32))}
}

func (s *suite) ctx() context.Context { return s.t.Context() }

func (s *suite) put(k cas.Key, data []byte) {
	s.t.Helper()
	if err := s.store.Put(s.ctx(), k, int64(len(data)), bytes.NewReader(data)); err != nil {
		s.t.Fatalf("Put(%s): %v", k, err)
	}
}

// get reads the object from offset to its end and returns it with the
// size Get reported; callers check that size.
func (s *suite) get(k cas.Key, offset int64) ([]byte, int64, error) {
	s.t.Helper()
	rc, size, err := s.store.Get(s.ctx(), k, offset)
	if err != nil {
		return nil, 0, err
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		s.t.Fatalf("reading %s at %d: %v", k, offset, err)
	}
	return data, size, nil
}

func (s *suite) mustGet(k cas.Key, want []byte) {
	s.t.Helper()
	got, size, err := s.get(k, 0)
	if err != nil {
		s.t.Fatalf("Get(%s): %v", k, err)
	}
	if size != int64(len(want)) {
		s.t.Fatalf("Get(%s) reported size %d, want %d", k, size, len(want))
	}
	if !bytes.Equal(got, want) {
		s.t.Fatalf("Get(%s) returned %d bytes that differ from the %d stored", k, len(got), len(want))
	}
}

func (s *suite) mustMiss(k cas.Key) {
	s.t.Helper()
	rc, _, err := s.store.Get(s.ctx(), k, 0)
	if err == nil {
		rc.Close()
		s.t.Fatalf("Get(%s) found an object; want a miss", k)
	}
	if !errors.Is(err, cas.ErrNotFound) {
		s.t.Fatalf("Get(%s) = %v; want an error wrapping cas.ErrNotFound", k, err)
	}
	missing, err := s.store.FindMissing(s.ctx(), []cas.Key{k})
	if err != nil {
		s.t.Fatalf("FindMissing(%s): %v", k, err)
	}
	if len(missing) != 1 || missing[0] != k {
		s.t.Fatalf("FindMissing(%s) = %v; want the key reported missing", k, missing)
	}
}

func testRoundTrip(t *testing.T, s *suite) {
	ac := ACKey("org1", "", 1)
	s.put(ac, nil) // an empty ActionResult marshals to zero bytes
	s.mustGet(ac, nil)
	for i, n := range []int64{1, 100, 64<<10 - 1, 64 << 10, 64<<10 + 1, 1 << 20, s.opts.LargeSize} {
		data := Bytes(uint64(i), n)
		k := CASKey("org1", data)
		s.put(k, data)
		s.mustGet(k, data)
	}
}

func testOffsetReads(t *testing.T, s *suite) {
	data := Bytes(7, s.opts.LargeSize)
	k := CASKey("org1", data)
	s.put(k, data)
	n := int64(len(data))
	for _, off := range []int64{0, 1, 64<<10 - 1, 64 << 10, n / 2, n - 1, n} {
		got, size, err := s.get(k, off)
		if err != nil {
			t.Fatalf("Get at offset %d: %v", off, err)
		}
		if size != n {
			t.Fatalf("Get at offset %d reported size %d; want the whole object's %d", off, size, n)
		}
		if !bytes.Equal(got, data[off:]) {
			t.Fatalf("Get at offset %d returned %d bytes that differ from the stored tail of %d", off, len(got), n-off)
		}
	}
	rc, _, err := s.store.Get(s.ctx(), k, n+1)
	if err == nil {
		rc.Close()
		t.Fatalf("Get past the end succeeded; want an error")
	}
	if errors.Is(err, cas.ErrNotFound) {
		t.Fatalf("Get past the end = %v; an offset error is not a miss", err)
	}
}

func testMissing(t *testing.T, s *suite) {
	k := CASKey("org1", []byte("never stored"))
	s.mustMiss(k)
	if err := s.store.Delete(s.ctx(), k); err != nil {
		t.Fatalf("Delete of a missing object = %v; want nil", err)
	}
	if _, err := s.store.DeletePartition(s.ctx(), "nobody"); err != nil {
		t.Fatalf("DeletePartition of an empty partition = %v; want nil", err)
	}
}

func testFindMissingOrder(t *testing.T, s *suite) {
	var keys, want []cas.Key
	for i := range 20 {
		data := Bytes(uint64(100+i), 10+int64(i))
		k := CASKey("org1", data)
		keys = append(keys, k)
		if i%3 == 0 {
			s.put(k, data)
		} else {
			want = append(want, k)
		}
	}
	got, err := s.store.FindMissing(s.ctx(), keys)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("FindMissing = %v\nwant %v", got, want)
	}
	if got, err := s.store.FindMissing(s.ctx(), nil); err != nil || len(got) != 0 {
		t.Fatalf("FindMissing(nil) = %v, %v; want nothing", got, err)
	}
}

func testDistinctKeys(t *testing.T, s *suite) {
	data := []byte("same digest, different objects")
	casKey := CASKey("org1", data)
	acKey := casKey
	acKey.Kind = cas.KindAC
	acOther := acKey
	acOther.Instance = "linux/x86_64"
	unknown := casKey
	unknown.Digest.Size = cas.SizeUnknown
	s.put(casKey, data)
	s.mustMiss(acKey)
	s.mustMiss(unknown)
	s.put(acKey, []byte("result for the default instance"))
	s.put(acOther, []byte("result for linux/x86_64"))
	s.put(unknown, []byte("named by hash alone"))
	s.mustGet(casKey, data)
	s.mustGet(acKey, []byte("result for the default instance"))
	s.mustGet(acOther, []byte("result for linux/x86_64"))
	s.mustGet(unknown, []byte("named by hash alone"))
	other := casKey
	other.Partition = "org2"
	s.mustMiss(other)
}

func testOverwrite(t *testing.T, s *suite) {
	k := ACKey("org1", "", 2)
	s.put(k, Bytes(1, 5000))
	s.put(k, []byte("short"))
	s.mustGet(k, []byte("short"))
	long := Bytes(2, 200<<10)
	s.put(k, long)
	s.mustGet(k, long)
}

func testDelete(t *testing.T, s *suite) {
	a, b := Bytes(1, 1000), Bytes(2, 1000)
	ka, kb := CASKey("org1", a), CASKey("org1", b)
	s.put(ka, a)
	s.put(kb, b)
	if err := s.store.Delete(s.ctx(), ka); err != nil {
		t.Fatal(err)
	}
	s.mustMiss(ka)
	s.mustGet(kb, b)
	s.put(ka, a)
	s.mustGet(ka, a)
}

// failingReader yields data, then fails with err instead of io.EOF.
type failingReader struct {
	r   io.Reader
	err error
}

func (f *failingReader) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if err == io.EOF {
		return n, f.err
	}
	return n, err
}

var errInjected = errors.New("injected read failure")

func testFailedReader(t *testing.T, s *suite) {
	data := Bytes(3, s.opts.LargeSize)
	k := CASKey("org1", data)
	half := io.LimitReader(bytes.NewReader(data), int64(len(data)/2))
	err := s.store.Put(s.ctx(), k, int64(len(data)), &failingReader{r: half, err: errInjected})
	if !errors.Is(err, errInjected) {
		t.Fatalf("Put with a failing reader = %v; want the reader's error", err)
	}
	s.mustMiss(k)

	// A failed overwrite leaves the old object whole.
	ac := ACKey("org1", "", 3)
	s.put(ac, []byte("old result"))
	err = s.store.Put(s.ctx(), ac, cas.SizeUnknown, &failingReader{r: bytes.NewReader([]byte("new res")), err: errInjected})
	if err == nil {
		t.Fatal("Put with a failing reader succeeded")
	}
	s.mustGet(ac, []byte("old result"))
}

// testNoEOF: every byte arrives but the reader ends in an error, as a
// digest check or a fence ends a stream. The store must see that before it
// publishes, so it may not stop reading at the size hint.
func testNoEOF(t *testing.T, s *suite) {
	for _, n := range []int64{0, 10, 1 << 20, s.opts.LargeSize} {
		data := Bytes(uint64(n), n)
		k := ACKey("org1", "", uint64(1000+n))
		err := s.store.Put(s.ctx(), k, n, &failingReader{r: bytes.NewReader(data), err: errInjected})
		if !errors.Is(err, errInjected) {
			t.Fatalf("%d bytes then an error: Put = %v; want the reader's error", n, err)
		}
		s.mustMiss(k)
	}
}

func testWrongSizeHint(t *testing.T, s *suite) {
	data := Bytes(4, 10000)
	k := CASKey("org1", data)
	for _, hint := range []int64{9999, 10001} {
		if err := s.store.Put(s.ctx(), k, hint, bytes.NewReader(data)); err == nil {
			t.Fatalf("Put of %d bytes with size hint %d succeeded; want an error", len(data), hint)
		}
		s.mustMiss(k)
	}
	if err := s.store.Put(s.ctx(), k, cas.SizeUnknown, bytes.NewReader(data)); err != nil {
		t.Fatalf("Put with an unknown size: %v", err)
	}
	s.mustGet(k, data)
}

// blockingReader yields data and then blocks until ctx ends.
type blockingReader struct {
	data []byte
	ctx  context.Context
	sent chan struct{}
}

func (b *blockingReader) Read(p []byte) (int, error) {
	if len(b.data) > 0 {
		n := copy(p, b.data)
		b.data = b.data[n:]
		return n, nil
	}
	if b.sent != nil {
		close(b.sent)
		b.sent = nil
	}
	<-b.ctx.Done()
	return 0, b.ctx.Err()
}

func testCancelledPut(t *testing.T, s *suite) {
	data := Bytes(5, 1<<20)
	k := CASKey("org1", data)
	ctx, cancel := context.WithCancel(s.ctx())
	sent := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- s.store.Put(ctx, k, int64(len(data))+1, &blockingReader{data: data, ctx: ctx, sent: sent})
	}()
	<-sent
	cancel()
	if err := <-done; err == nil {
		t.Fatal("cancelled Put succeeded")
	}
	s.mustMiss(k)

	// A context cancelled before the Put starts publishes nothing either.
	if err := s.store.Put(ctx, k, int64(len(data)), bytes.NewReader(data)); err == nil {
		t.Fatal("Put with a cancelled context succeeded")
	}
	s.mustMiss(k)
}

func testConcurrentPuts(t *testing.T, s *suite) {
	data := Bytes(6, 300<<10)
	k := CASKey("org1", data)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			errs <- s.store.Put(s.ctx(), k, int64(len(data)), bytes.NewReader(data))
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("concurrent Put: %v", err)
		}
	}
	s.mustGet(k, data)
}

func testConcurrentMany(t *testing.T, s *suite) {
	const workers, each = 8, 25
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				data := Bytes(uint64(w*1000+i), int64(1+(w*each+i)*997%(150<<10)))
				k := CASKey("org1", data)
				if err := s.store.Put(s.ctx(), k, int64(len(data)), bytes.NewReader(data)); err != nil {
					errs <- err
					return
				}
				rc, size, err := s.store.Get(s.ctx(), k, 0)
				if err != nil {
					errs <- err
					return
				}
				got, err := io.ReadAll(rc)
				rc.Close()
				if err != nil || size != int64(len(data)) || !bytes.Equal(got, data) {
					errs <- fmt.Errorf("%s read back wrong (size %d, %d bytes, err %v)", k, size, len(got), err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func testPartitions(t *testing.T, s *suite) {
	type obj struct {
		key  cas.Key
		data []byte
	}
	var objs []obj
	for i, p := range []cas.Partition{"org1", "org1/kA", "org1/kB", "org10", "org2"} {
		for j := range 3 {
			data := Bytes(uint64(i*10+j), int64(100+j))
			k := CASKey(p, data)
			if j == 2 {
				k = ACKey(p, "inst", uint64(i*10+j))
			}
			s.put(k, data)
			objs = append(objs, obj{k, data})
		}
	}
	walk := func(p cas.Partition) map[cas.Key]int64 {
		t.Helper()
		seen := map[cas.Key]int64{}
		err := s.store.WalkPartition(s.ctx(), p, func(o cas.StoredObject) error {
			seen[o.Key] = o.Size
			return nil
		})
		if err != nil {
			t.Fatalf("WalkPartition(%s): %v", p, err)
		}
		return seen
	}
	seen := walk("org1")
	for _, o := range objs {
		_, in := seen[o.key]
		if want := cas.Partition("org1").Contains(o.key.Partition); in != want {
			t.Fatalf("WalkPartition(org1) saw %s: %v, want %v", o.key, in, want)
		}
		if in && seen[o.key] < int64(len(o.data)) {
			t.Fatalf("WalkPartition(org1) gave %s size %d; want at least the %d bytes stored", o.key, seen[o.key], len(o.data))
		}
	}
	if got := len(walk("org1/kA")); got != 3 {
		t.Fatalf("WalkPartition(org1/kA) saw %d objects; want 3", got)
	}

	freed, err := s.store.DeletePartition(s.ctx(), "org1/kA")
	if err != nil {
		t.Fatal(err)
	}
	if freed < 300 {
		t.Fatalf("DeletePartition(org1/kA) freed %d bytes; want at least the 300 stored", freed)
	}
	if freed, err = s.store.DeletePartition(s.ctx(), "org1"); err != nil {
		t.Fatal(err)
	}
	if freed < 600 {
		t.Fatalf("DeletePartition(org1) freed %d bytes; want at least the 600 stored", freed)
	}
	for _, o := range objs {
		if cas.Partition("org1").Contains(o.key.Partition) {
			s.mustMiss(o.key)
		} else {
			s.mustGet(o.key, o.data)
		}
	}
	if n := len(walk("org1")); n != 0 {
		t.Fatalf("WalkPartition(org1) after deleting it saw %d objects", n)
	}
	// The partition takes new objects again.
	data := []byte("after the delete")
	s.put(CASKey("org1", data), data)
	s.mustGet(CASKey("org1", data), data)

	for _, bad := range []cas.Partition{"", "a//b", "../x", "a/b c"} {
		if _, err := s.store.DeletePartition(s.ctx(), bad); err == nil {
			t.Fatalf("DeletePartition(%q) succeeded; want a syntax error", bad)
		}
	}
}

func testUsage(t *testing.T, s *suite) {
	if s.opts.NoUsage {
		t.Skip("usage figures are asynchronous in this backend")
	}
	usage := func(org string) int64 {
		t.Helper()
		n, err := s.store.OrgUsage(s.ctx(), org)
		if err != nil {
			t.Fatalf("OrgUsage(%s): %v", org, err)
		}
		return n
	}
	if n := usage("org1"); n != 0 {
		t.Fatalf("OrgUsage of an empty store = %d", n)
	}
	a, b := Bytes(1, 10000), Bytes(2, 20000)
	s.put(CASKey("org1", a), a)
	s.put(CASKey("org1/kX", b), b)
	s.put(CASKey("org2", b), b)
	if n := usage("org1"); n < 30000 {
		t.Fatalf("OrgUsage(org1) = %d; want at least the 30000 bytes stored, plain and sealed", n)
	}
	if err := s.store.Delete(s.ctx(), CASKey("org1", a)); err != nil {
		t.Fatal(err)
	}
	if n := usage("org1"); n < 20000 || n >= 30000 {
		t.Fatalf("OrgUsage(org1) after deleting 10000 bytes = %d", n)
	}
	if _, err := s.store.DeletePartition(s.ctx(), "org1"); err != nil {
		t.Fatal(err)
	}
	if n := usage("org1"); n != 0 {
		t.Fatalf("OrgUsage(org1) after deleting the org = %d", n)
	}
	if n := usage("org2"); n < 20000 {
		t.Fatalf("OrgUsage(org2) = %d; deleting org1 must not touch it", n)
	}
}
