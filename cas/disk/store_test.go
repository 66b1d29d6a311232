package disk

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"

	"github.com/sealcache/sealcache/cas"
)

func open(t testing.TB, dir string, max int64) *Store {
	t.Helper()
	s, err := Open(dir, max, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func casKey(partition string, data []byte) cas.Key {
	return cas.Key{Partition: partition, Kind: cas.KindCAS, Digest: cas.DigestOf(repb.DigestFunction_SHA256, data)}
}

func acKey(partition, instance, action string) cas.Key {
	return cas.Key{Partition: partition, Kind: cas.KindAC, Instance: instance, Digest: cas.DigestOf(repb.DigestFunction_SHA256, []byte(action))}
}

func put(t testing.TB, s cas.BlobStore, k cas.Key, data []byte) {
	t.Helper()
	if err := s.Put(context.Background(), k, bytes.NewReader(data)); err != nil {
		t.Fatalf("Put %s: %v", k, err)
	}
}

func get(t testing.TB, s cas.BlobStore, k cas.Key) []byte {
	t.Helper()
	b, err := cas.ReadAll(context.Background(), s, k)
	if err != nil {
		t.Fatalf("Get %s: %v", k, err)
	}
	return b
}

func isMissing(t testing.TB, s cas.BlobStore, k cas.Key) bool {
	t.Helper()
	m, err := s.FindMissing(context.Background(), []cas.Key{k})
	if err != nil {
		t.Fatal(err)
	}
	return len(m) == 1
}

func tmpEntries(t *testing.T, dir string) []os.DirEntry {
	t.Helper()
	es, err := os.ReadDir(filepath.Join(dir, "tmp"))
	if err != nil {
		t.Fatal(err)
	}
	return es
}

func TestRoundTrip(t *testing.T) {
	s := open(t, t.TempDir(), 1<<20)
	data := []byte("hello, cache")
	k := casKey("org1", data)
	if !isMissing(t, s, k) {
		t.Fatal("blob present before Put")
	}
	put(t, s, k, data)
	if got := get(t, s, k); !bytes.Equal(got, data) {
		t.Fatalf("Get = %q, want %q", got, data)
	}
	if isMissing(t, s, k) {
		t.Fatal("FindMissing reports a stored blob")
	}

	rc, err := s.Get(context.Background(), k, 7)
	if err != nil {
		t.Fatal(err)
	}
	rest, _ := io.ReadAll(rc)
	rc.Close()
	if string(rest) != "cache" {
		t.Fatalf("Get at offset 7 = %q, want %q", rest, "cache")
	}
	if st := s.Stats(); st.Objects != 1 || st.UsedBytes != int64(len(data)) {
		t.Fatalf("Stats = %+v, want 1 object of %d bytes", st, len(data))
	}

	ac := acKey("org1", "", "action")
	put(t, s, ac, []byte("result"))
	if got := get(t, s, ac); string(got) != "result" {
		t.Fatalf("AC Get = %q", got)
	}

	if err := s.Delete(context.Background(), k); err != nil {
		t.Fatal(err)
	}
	if !isMissing(t, s, k) {
		t.Fatal("blob present after Delete")
	}
	if err := s.Delete(context.Background(), k); err != nil {
		t.Fatalf("deleting a missing object: %v", err)
	}
}

func TestGetMissingWrapsErrNotFound(t *testing.T) {
	s := open(t, t.TempDir(), 1<<20)
	_, err := s.Get(context.Background(), casKey("org1", []byte("nope")), 0)
	if !errors.Is(err, cas.ErrNotFound) {
		t.Fatalf("Get of a missing blob: %v, want ErrNotFound", err)
	}
}

func TestGetOffsetBeyondEndIsAnErrorButNotAMiss(t *testing.T) {
	s := open(t, t.TempDir(), 1<<20)
	k := casKey("org1", []byte("abc"))
	put(t, s, k, []byte("abc"))
	rc, err := s.Get(context.Background(), k, 3)
	if err != nil {
		t.Fatalf("offset == length must be allowed: %v", err)
	}
	rc.Close()
	_, err = s.Get(context.Background(), k, 4)
	if err == nil || errors.Is(err, cas.ErrNotFound) {
		t.Fatalf("offset past the end: %v, want an error that is not ErrNotFound", err)
	}
}

type failingReader struct {
	data []byte
	err  error
}

func (r *failingReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, r.err
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

func TestPutReaderErrorStoresNothing(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, 1<<20)
	data := bytes.Repeat([]byte("x"), 100_000)
	k := casKey("org1", data)
	boom := errors.New("client went away")
	err := s.Put(context.Background(), k, &failingReader{data: data[:50_000], err: boom})
	if !errors.Is(err, boom) {
		t.Fatalf("Put = %v, want the reader's error", err)
	}
	if !isMissing(t, s, k) {
		t.Fatal("a failed Put left the blob visible")
	}
	if es := tmpEntries(t, dir); len(es) != 0 {
		t.Fatalf("a failed Put left temp files: %v", es)
	}
	if st := s.Stats(); st.Objects != 0 || st.UsedBytes != 0 {
		t.Fatalf("Stats after a failed Put = %+v", st)
	}
}

// cancelAfterFirstRead cancels the Put's context once the store has read one chunk.
type cancelAfterFirstRead struct {
	r      io.Reader
	cancel context.CancelFunc
}

func (c *cancelAfterFirstRead) Read(p []byte) (int, error) {
	n, err := c.r.Read(p[:min(len(p), 1000)])
	c.cancel()
	return n, err
}

func TestPutCancelledContextStoresNothing(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, 1<<20)
	data := bytes.Repeat([]byte("y"), 100_000)
	k := casKey("org1", data)
	ctx, cancel := context.WithCancel(context.Background())
	err := s.Put(ctx, k, &cancelAfterFirstRead{r: bytes.NewReader(data), cancel: cancel})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Put = %v, want context.Canceled", err)
	}
	if !isMissing(t, s, k) {
		t.Fatal("a cancelled Put left the blob visible")
	}
	if es := tmpEntries(t, dir); len(es) != 0 {
		t.Fatalf("a cancelled Put left temp files: %v", es)
	}
}

func blobOf(c byte, n int) []byte { return bytes.Repeat([]byte{c}, n) }

// fillABC stores three 100-byte blobs a, b, c (oldest first) in a 300-byte store.
func fillABC(t *testing.T) (s *Store, a, b, c cas.Key) {
	s = open(t, t.TempDir(), 300)
	a, b, c = casKey("org1", blobOf('a', 100)), casKey("org1", blobOf('b', 100)), casKey("org1", blobOf('c', 100))
	put(t, s, a, blobOf('a', 100))
	put(t, s, b, blobOf('b', 100))
	put(t, s, c, blobOf('c', 100))
	return s, a, b, c
}

func TestLRUEvictsLeastRecentlyUsed(t *testing.T) {
	s, a, b, c := fillABC(t)
	get(t, s, a) // a is now more recent than b
	d := casKey("org1", blobOf('d', 100))
	put(t, s, d, blobOf('d', 100))

	if !isMissing(t, s, b) {
		t.Fatal("b, the least recently used, should have been evicted")
	}
	for _, k := range []cas.Key{a, c, d} {
		if isMissing(t, s, k) {
			t.Fatalf("%s was evicted, want only b evicted", k)
		}
	}
	st := s.Stats()
	if st.UsedBytes > 300 || st.Objects != 3 || st.Evictions != 1 {
		t.Fatalf("Stats = %+v, want 3 objects, <= 300 bytes, 1 eviction", st)
	}
}

func TestLRUWithoutAccessEvictsOldest(t *testing.T) {
	s, a, _, _ := fillABC(t)
	put(t, s, casKey("org1", blobOf('d', 100)), blobOf('d', 100))
	if !isMissing(t, s, a) {
		t.Fatal("a, the oldest, should have been evicted")
	}
}

func TestFindMissingHitRefreshes(t *testing.T) {
	s, a, b, _ := fillABC(t)
	if isMissing(t, s, a) {
		t.Fatal("a missing")
	}
	put(t, s, casKey("org1", blobOf('d', 150)), blobOf('d', 150))
	if isMissing(t, s, a) {
		t.Fatal("a was evicted although FindMissing just referenced it")
	}
	if !isMissing(t, s, b) {
		t.Fatal("b should have been evicted")
	}
	if st := s.Stats(); st.UsedBytes > 300 {
		t.Fatalf("used %d bytes of 300", st.UsedBytes)
	}
}

func TestObjectLargerThanStoreIsFull(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, 100)
	big := blobOf('z', 101)
	k := casKey("org1", big)
	if err := s.Put(context.Background(), k, bytes.NewReader(big)); !errors.Is(err, cas.ErrFull) {
		t.Fatalf("Put of a blob larger than the store = %v, want ErrFull", err)
	}
	ac := acKey("org1", "", "big")
	if err := s.Put(context.Background(), ac, bytes.NewReader(big)); !errors.Is(err, cas.ErrFull) {
		t.Fatalf("Put of an AC entry larger than the store = %v, want ErrFull", err)
	}
	if !isMissing(t, s, k) || !isMissing(t, s, ac) {
		t.Fatal("an oversized object was stored")
	}
	if es := tmpEntries(t, dir); len(es) != 0 {
		t.Fatalf("temp files left: %v", es)
	}
}

func TestEvictingAnObjectBeingReadIsSafe(t *testing.T) {
	s, a, _, _ := fillABC(t)
	rc, err := s.Get(context.Background(), a, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	// a was just used; make it the oldest again by using the others.
	s.FindMissing(context.Background(), []cas.Key{casKey("org1", blobOf('b', 100)), casKey("org1", blobOf('c', 100))})
	put(t, s, casKey("org1", blobOf('d', 100)), blobOf('d', 100))
	if !isMissing(t, s, a) {
		t.Fatal("a should have been evicted")
	}
	got, err := io.ReadAll(rc)
	if err != nil || !bytes.Equal(got, blobOf('a', 100)) {
		t.Fatalf("reading an evicted-while-open blob: %d bytes, %v", len(got), err)
	}
}

func TestRestartKeepsBlobsAndSizes(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, 1<<20, nil)
	if err != nil {
		t.Fatal(err)
	}
	blobs := map[cas.Key][]byte{}
	for i := range 5 {
		data := []byte(strings.Repeat(fmt.Sprint(i), 10*(i+1)))
		k := casKey("org1", data)
		blobs[k] = data
		put(t, s, k, data)
	}
	ac := acKey("org1/key7", "linux/x86_64", "act")
	blobs[ac] = []byte("action result")
	put(t, s, ac, blobs[ac])
	before := s.Stats()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = open(t, dir, 1<<20)
	if after := s.Stats(); after.Objects != before.Objects || after.UsedBytes != before.UsedBytes {
		t.Fatalf("Stats after restart = %+v, before = %+v", after, before)
	}
	for k, want := range blobs {
		if got := get(t, s, k); !bytes.Equal(got, want) {
			t.Fatalf("%s after restart = %q, want %q", k, got, want)
		}
	}
}

func TestRestartOrdersLRUByMtime(t *testing.T) {
	s, a, b, c := fillABC(t)
	dir := s.dir
	// Make b the most recent and a the oldest on disk, whatever the write order was.
	base := time.Now().Add(-time.Hour)
	for i, k := range []cas.Key{a, c, b} {
		rel, _ := relPath(k)
		ts := base.Add(time.Duration(i) * time.Minute)
		if err := os.Chtimes(s.abs(rel), ts, ts); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()

	s = open(t, dir, 300)
	put(t, s, casKey("org1", blobOf('d', 150)), blobOf('d', 150))
	if !isMissing(t, s, a) || !isMissing(t, s, c) {
		t.Fatal("after restart the two oldest by mtime (a, c) should be evicted first")
	}
	if isMissing(t, s, b) {
		t.Fatal("b, the newest by mtime, was evicted")
	}
}

func TestRestartWithLowerLimitEvictsToFit(t *testing.T) {
	s, _, _, _ := fillABC(t)
	dir := s.dir
	s.Close()
	s = open(t, dir, 150)
	if st := s.Stats(); st.UsedBytes > 150 || st.Objects != 1 {
		t.Fatalf("Stats = %+v, want 1 object within 150 bytes", st)
	}
}

func TestOpenRemovesLeftoverTempFiles(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, 1<<20)
	s.Close()
	leftover := filepath.Join(dir, "tmp", "put-12345")
	if err := os.WriteFile(leftover, []byte("half an upload"), 0o600); err != nil {
		t.Fatal(err)
	}
	open(t, dir, 1<<20)
	if _, err := os.Stat(leftover); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("leftover temp file still there: %v", err)
	}
}

func TestSecondOpenOfSameDirFails(t *testing.T) {
	dir := t.TempDir()
	open(t, dir, 1<<20)
	if s2, err := Open(dir, 1<<20, nil); err == nil {
		s2.Close()
		t.Fatal("a second Open of the same directory succeeded")
	} else if !strings.Contains(err.Error(), "in use") {
		t.Fatalf("error does not say the directory is in use: %v", err)
	}
}

func TestEmptyBlobAlwaysPresent(t *testing.T) {
	s := open(t, t.TempDir(), 1<<20)
	for _, fn := range cas.SupportedDigestFunctions {
		k := cas.Key{Partition: "org1", Kind: cas.KindCAS, Digest: cas.EmptyDigest(fn)}
		if isMissing(t, s, k) {
			t.Fatalf("%s: FindMissing reports the empty blob", fn)
		}
		if got := get(t, s, k); len(got) != 0 {
			t.Fatalf("%s: empty blob has %d bytes", fn, len(got))
		}
		put(t, s, k, nil)
		if err := s.Put(context.Background(), k, strings.NewReader("x")); err == nil {
			t.Fatalf("%s: the empty blob was accepted with data", fn)
		}
		if err := s.Delete(context.Background(), k); err != nil {
			t.Fatal(err)
		}
		if isMissing(t, s, k) {
			t.Fatalf("%s: the empty blob went missing after Delete", fn)
		}
	}
	if st := s.Stats(); st.Objects != 0 {
		t.Fatalf("the empty blob was stored: %+v", st)
	}
}

func TestACInstanceNamesWithSlashes(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, 1<<20)
	instances := []string{"", "linux", "linux/x86_64", "linux/x86_64/../../etc", "ünïcode name"}
	for _, inst := range instances {
		put(t, s, acKey("org1", inst, "same action"), []byte("result for "+inst))
	}
	for _, inst := range instances {
		if got := get(t, s, acKey("org1", inst, "same action")); string(got) != "result for "+inst {
			t.Fatalf("instance %q: got %q", inst, got)
		}
	}
	s.Close()
	s = open(t, dir, 1<<20)
	seen := map[string]bool{}
	err := s.WalkPartition(context.Background(), "org1", func(o cas.StoredObject) error {
		seen[o.Key.Instance] = true
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, inst := range instances {
		if !seen[inst] {
			t.Fatalf("instance %q not found after restart; saw %v", inst, seen)
		}
	}
}

func TestCASIsSharedAcrossInstances(t *testing.T) {
	s := open(t, t.TempDir(), 1<<20)
	k := casKey("org1", []byte("shared"))
	k.Instance = "linux"
	put(t, s, k, []byte("shared"))
	k.Instance = "windows"
	if isMissing(t, s, k) {
		t.Fatal("a CAS blob must be visible under every instance name of its partition")
	}
}

func TestPartitionsIsolate(t *testing.T) {
	s := open(t, t.TempDir(), 1<<20)
	data := []byte("org1's secret")
	put(t, s, casKey("org1", data), data)
	for _, p := range []string{"org2", "org10", "org1/key7"} {
		if !isMissing(t, s, casKey(p, data)) {
			t.Fatalf("org1's blob is visible in partition %s", p)
		}
		if _, err := s.Get(context.Background(), casKey(p, data), 0); !errors.Is(err, cas.ErrNotFound) {
			t.Fatalf("Get in partition %s: %v, want ErrNotFound", p, err)
		}
	}
}

func TestDeletePartitionRemovesPrefixNotSibling(t *testing.T) {
	s := open(t, t.TempDir(), 1<<20)
	ctx := context.Background()
	keep := map[cas.Key]bool{}
	for _, p := range []string{"org1", "org1/key7", "org1/key8", "org10", "org2"} {
		data := []byte("data of " + p)
		k := casKey(p, data)
		put(t, s, k, data)
		ac := acKey(p, "linux/arm64", "act")
		put(t, s, ac, data)
		keep[k] = !inPartition(p, "org1")
		keep[ac] = keep[k]
	}
	var wantFreed int64
	s.WalkPartition(ctx, "org1", func(o cas.StoredObject) error { wantFreed += o.Size; return nil })

	freed, err := s.DeletePartition(ctx, "org1")
	if err != nil {
		t.Fatal(err)
	}
	if freed != wantFreed || freed == 0 {
		t.Fatalf("DeletePartition freed %d bytes, want %d", freed, wantFreed)
	}
	for k, kept := range keep {
		if isMissing(t, s, k) == kept {
			t.Fatalf("%s: kept=%v after deleting org1", k, !kept)
		}
	}
	n := 0
	s.WalkPartition(ctx, "org1", func(cas.StoredObject) error { n++; return nil })
	if n != 0 {
		t.Fatalf("WalkPartition(org1) sees %d objects after the delete", n)
	}
	if st := s.Stats(); st.Objects != 4 {
		t.Fatalf("Stats = %+v, want the 4 objects of org10 and org2", st)
	}

	// The partition can be written again afterwards.
	k := casKey("org1", []byte("again"))
	put(t, s, k, []byte("again"))
	if got := get(t, s, k); string(got) != "again" {
		t.Fatalf("after DeletePartition, Put/Get = %q", got)
	}
}

func TestWalkPartitionOfSubPartition(t *testing.T) {
	s := open(t, t.TempDir(), 1<<20)
	put(t, s, casKey("org1", []byte("plain")), []byte("plain"))
	put(t, s, casKey("org1/key7", []byte("sealed")), []byte("sealed"))
	var got []cas.StoredObject
	s.WalkPartition(context.Background(), "org1/key7", func(o cas.StoredObject) error { got = append(got, o); return nil })
	if len(got) != 1 || got[0].Key != casKey("org1/key7", []byte("sealed")) || got[0].Size != 6 {
		t.Fatalf("WalkPartition(org1/key7) = %+v", got)
	}
}

func TestBadKeysRejected(t *testing.T) {
	s := open(t, t.TempDir(), 1<<20)
	ctx := context.Background()
	for _, p := range []string{"", "..", "../etc", "org1/", "/org1", "org1//k", "org 1", "@cas", "org1/@ac", "o\x00"} {
		k := casKey(p, []byte("x"))
		if err := s.Put(ctx, k, strings.NewReader("x")); err == nil {
			t.Errorf("Put accepted partition %q", p)
		}
		if _, err := s.Get(ctx, k, 0); err == nil || errors.Is(err, cas.ErrNotFound) {
			t.Errorf("Get of partition %q: %v, want a validation error", p, err)
		}
		if _, err := s.FindMissing(ctx, []cas.Key{k}); err == nil {
			t.Errorf("FindMissing accepted partition %q", p)
		}
		if _, err := s.DeletePartition(ctx, p); err == nil {
			t.Errorf("DeletePartition accepted partition %q", p)
		}
	}
	bad := casKey("org1", []byte("x"))
	bad.Digest.Hash = "../../../../etc/passwd"
	if err := s.Put(ctx, bad, strings.NewReader("x")); err == nil {
		t.Error("Put accepted a hash that is not hex")
	}
	bad = casKey("org1", []byte("x"))
	bad.Kind = 0
	if err := s.Put(ctx, bad, strings.NewReader("x")); err == nil {
		t.Error("Put accepted a key without a kind")
	}
}

func TestLayoutRoundTrips(t *testing.T) {
	for _, k := range []cas.Key{
		casKey("org1", []byte("a")),
		casKey("Org_1-x/key-7", []byte("b")),
		acKey("org1", "", "c"),
		acKey("org1/k", "a/b/c", "d"),
		{Partition: "o", Kind: cas.KindCAS, Digest: cas.DigestOf(repb.DigestFunction_BLAKE3, []byte("e"))},
	} {
		rel, err := relPath(k)
		if err != nil {
			t.Fatal(err)
		}
		back, err := parseRelPath(rel)
		if err != nil || back != k {
			t.Fatalf("%s -> %s -> %+v, %v", k, rel, back, err)
		}
	}
}

func TestConcurrentUse(t *testing.T) {
	s := open(t, t.TempDir(), 4000) // room for 40 of the 100 blobs: constant eviction
	ctx := context.Background()
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 200 {
				data := blobOf(byte(i%100), 100)
				k := casKey(fmt.Sprintf("org%d", i%2), data)
				switch (i + w) % 4 {
				case 0, 1:
					if err := s.Put(ctx, k, bytes.NewReader(data)); err != nil {
						t.Error(err)
					}
				case 2:
					if got, err := cas.ReadAll(ctx, s, k); err == nil && !bytes.Equal(got, data) {
						t.Errorf("read wrong bytes for %s", k)
					} else if err != nil && !errors.Is(err, cas.ErrNotFound) {
						t.Error(err)
					}
				case 3:
					if _, err := s.FindMissing(ctx, []cas.Key{k}); err != nil {
						t.Error(err)
					}
				}
				if i == 100 && w == 0 {
					if _, err := s.DeletePartition(ctx, "org1"); err != nil {
						t.Error(err)
					}
				}
			}
		})
	}
	wg.Wait()
	st := s.Stats()
	if st.UsedBytes > 4000 {
		t.Fatalf("used %d bytes of 4000", st.UsedBytes)
	}
	var walked int64
	for _, p := range []string{"org0", "org1"} {
		s.WalkPartition(ctx, p, func(o cas.StoredObject) error { walked += o.Size; return nil })
	}
	if walked != st.UsedBytes {
		t.Fatalf("index says %d bytes, walk says %d", st.UsedBytes, walked)
	}
	// The index matches the directory.
	dir := s.dir
	s.Close()
	s2 := open(t, dir, 4000)
	if got := s2.Stats(); got.UsedBytes != st.UsedBytes || got.Objects != st.Objects {
		t.Fatalf("index %+v differs from directory %+v", st, got)
	}
}

func TestOrgUsageCountsPlainAndSealedPartitionsOfOneOrg(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, 1<<20)
	put(t, s, casKey("org1", []byte("plain")), []byte("plain"))
	put(t, s, casKey("org1/kkey", []byte("sealed!")), []byte("sealed!"))
	put(t, s, casKey("org10", []byte("other org")), []byte("other org"))
	if got := s.OrgUsage("org1"); got != 12 {
		t.Errorf("org1 uses %d bytes, want 12", got)
	}
	if _, err := s.DeletePartition(context.Background(), "org1/kkey"); err != nil {
		t.Fatal(err)
	}
	if got := s.OrgUsage("org1"); got != 5 {
		t.Errorf("after deleting the sealed partition org1 uses %d bytes, want 5", got)
	}
	s.Close()
	s = open(t, dir, 1<<20)
	if got, other := s.OrgUsage("org1"), s.OrgUsage("org10"); got != 5 || other != 9 {
		t.Errorf("after restart: org1 %d, org10 %d; want 5 and 9", got, other)
	}
}
