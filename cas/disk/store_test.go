package disk

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sealcache/sealcache/cas"
	"github.com/sealcache/sealcache/cas/castest"
	"github.com/sealcache/sealcache/internal/fakeclock"
)

// Tests of what the disk store adds to the conformance suite: eviction,
// restart, the budget, broken objects, whole-partition deletes. Objects of
// 100 bytes are inline and objects of inlineTestMax+1 bytes and more are in
// files wherever a test cares.
const inlineTestMax = 4 << 10

// lruStore opens a store of three 100-byte objects' room on a fake clock.
func lruStore(t *testing.T, dir string, clock *fakeclock.Clock) *Store {
	return openStore(t, dir, Options{MaxSize: 300, InlineMaxSize: inlineTestMax, now: clock.Now})
}

// fillABC stores a, b and c of 100 bytes each, an hour apart.
func fillABC(t *testing.T, s *Store, clock *fakeclock.Clock) (a, b, c cas.Key) {
	keys := make([]cas.Key, 3)
	for i := range keys {
		k, data := blob(uint64(i), 100)
		put(t, s, k, data)
		keys[i] = k
		clock.Advance(time.Hour)
	}
	return keys[0], keys[1], keys[2]
}

func TestEvictionTakesTheLeastRecentlyUsed(t *testing.T) {
	clock := fakeclock.At(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	s := lruStore(t, t.TempDir(), clock)
	a, b, c := fillABC(t, s, clock)
	get(t, s, a) // a is now used more recently than b
	clock.Advance(time.Hour)
	d, data := blob(3, 100)
	put(t, s, d, data)

	if !isMissing(t, s, b) {
		t.Fatal("b, the least recently used, is still stored")
	}
	for _, k := range []cas.Key{a, c, d} {
		if isMissing(t, s, k) {
			t.Fatalf("%s was evicted; only b should be", k)
		}
	}
	if st := s.Stats(); st.UsedBytes != 300 || st.Objects != 3 || st.Evictions != 1 {
		t.Fatalf("Stats = %+v; want 3 objects, 300 bytes, 1 eviction", st)
	}
}

func TestFindMissingHitCountsAsUse(t *testing.T) {
	clock := fakeclock.At(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	s := lruStore(t, t.TempDir(), clock)
	a, b, _ := fillABC(t, s, clock)
	if isMissing(t, s, a) {
		t.Fatal("a is missing")
	}
	clock.Advance(time.Hour)
	d, data := blob(3, 150) // needs the room of two objects
	put(t, s, d, data)
	if isMissing(t, s, a) {
		t.Fatal("a was evicted although FindMissing had just referenced it")
	}
	if !isMissing(t, s, b) {
		t.Fatal("b should have been evicted")
	}
}

func TestAccessOrderSurvivesRestart(t *testing.T) {
	clock := fakeclock.At(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	dir := t.TempDir()
	s := lruStore(t, dir, clock)
	a, b, c := fillABC(t, s, clock)
	get(t, s, a) // noted in memory; Close writes it
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Hour)
	s = lruStore(t, dir, clock)
	d, data := blob(3, 100)
	put(t, s, d, data)
	if !isMissing(t, s, b) || isMissing(t, s, a) || isMissing(t, s, c) {
		t.Fatal("after a restart, b should be the one evicted")
	}
}

// TestSampledEvictionPrefersColdObjects: eviction samples instead of keeping
// an order of every object, so on a large store it is not exact, but what
// it evicts must be overwhelmingly old.
func TestSampledEvictionPrefersColdObjects(t *testing.T) {
	const n, size = 2000, 100
	clock := fakeclock.At(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	s := openStore(t, t.TempDir(), Options{MaxSize: n * size, InlineMaxSize: inlineTestMax, now: clock.Now})
	keys := make([]cas.Key, n)
	for i := range keys {
		k, data := blob(uint64(i), size)
		put(t, s, k, data)
		keys[i] = k
	}
	clock.Advance(time.Hour)
	// The even-numbered half is used again: it becomes the hot half.
	var hot []cas.Key
	for i := 0; i < n; i += 2 {
		hot = append(hot, keys[i])
	}
	if _, err := s.FindMissing(context.Background(), hot); err != nil {
		t.Fatal(err)
	}
	s.flushTouches()
	clock.Advance(time.Hour)
	const evict = n / 5
	for i := range evict {
		k, data := blob(uint64(n+i), size)
		put(t, s, k, data)
	}
	hotEvicted := 0
	missing, err := s.FindMissing(context.Background(), keys)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range missing {
		for _, h := range hot {
			if k == h {
				hotEvicted++
			}
		}
	}
	t.Logf("evicted %d objects, %d of them hot", len(missing), hotEvicted)
	if len(missing) != evict {
		t.Fatalf("%d objects evicted; want %d", len(missing), evict)
	}
	if hotEvicted > evict/20 {
		t.Fatalf("%d of %d evicted objects were hot; want at most 5%%", hotEvicted, evict)
	}
}

func TestRestartKeepsObjectsAndUsage(t *testing.T) {
	dir := t.TempDir()
	opts := Options{MaxSize: 1 << 30, InlineMaxSize: inlineTestMax}
	s := openStore(t, dir, opts)
	stored := map[cas.Key][]byte{}
	for i, p := range []cas.Partition{"org1", "org1/kA", "org10", "org2"} {
		for j, n := range []int64{0, 100, inlineTestMax, inlineTestMax + 1, 300 << 10} {
			data := castest.Bytes(uint64(i*10+j), n)
			k := castest.CASKey(p, data)
			put(t, s, k, data)
			stored[k] = data
		}
		ac := castest.ACKey(p, "linux/x86_64", uint64(i))
		put(t, s, ac, []byte("result"))
		stored[ac] = []byte("result")
	}
	before := s.Stats()
	usage := map[string]int64{}
	for _, org := range []string{"org1", "org10", "org2"} {
		usage[org], _ = s.OrgUsage(context.Background(), org)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openStore(t, dir, opts)
	if after := s.Stats(); after.Objects != before.Objects || after.UsedBytes != before.UsedBytes {
		t.Fatalf("Stats after restart = %+v; before = %+v", after, before)
	}
	for org, want := range usage {
		if got, _ := s.OrgUsage(context.Background(), org); got != want {
			t.Fatalf("OrgUsage(%s) after restart = %d; before = %d", org, got, want)
		}
	}
	for k, want := range stored {
		if got := get(t, s, k); !bytes.Equal(got, want) {
			t.Fatalf("%s after restart: %d bytes differ from the %d stored", k, len(got), len(want))
		}
	}
}

func TestUsageFollowsOverwritesAcrossTheInlineBoundary(t *testing.T) {
	s := openStore(t, t.TempDir(), Options{MaxSize: 1 << 30, InlineMaxSize: inlineTestMax})
	k := castest.ACKey("org1", "", 1)
	for _, n := range []int64{10, inlineTestMax * 3, 20, inlineTestMax * 2, 0} {
		data := castest.Bytes(uint64(n), n)
		put(t, s, k, data)
		if got := get(t, s, k); !bytes.Equal(got, data) {
			t.Fatalf("after storing %d bytes, read %d bytes that differ", n, len(got))
		}
		if st := s.Stats(); st.UsedBytes != n || st.Objects != 1 {
			t.Fatalf("after overwriting with %d bytes, Stats = %+v", n, st)
		}
	}
	// Replaced files are removed: only the last object's file may remain.
	if files := countFiles(s.largeDir); files != 0 {
		t.Fatalf("%d object files remain for an inline object", files)
	}
}

func TestSmallerBudgetAtRestartEvictsToFit(t *testing.T) {
	clock := fakeclock.At(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	dir := t.TempDir()
	s := lruStore(t, dir, clock)
	a, b, c := fillABC(t, s, clock)
	s.Close()
	s = openStore(t, dir, Options{MaxSize: 150, InlineMaxSize: inlineTestMax, now: clock.Now})
	s.evictToBudget() // the maintenance loop does this at start; here it is done in step
	if st := s.Stats(); st.UsedBytes > 150 || st.Objects != 1 {
		t.Fatalf("Stats = %+v; want 1 object within 150 bytes", st)
	}
	if !isMissing(t, s, a) || !isMissing(t, s, b) || isMissing(t, s, c) {
		t.Fatal("the two oldest should be evicted, c kept")
	}
}

func TestObjectLargerThanBudgetIsTooLarge(t *testing.T) {
	s := openStore(t, t.TempDir(), Options{MaxSize: 10000, InlineMaxSize: inlineTestMax})
	k, data := blob(1, 10001)
	err := s.Put(context.Background(), k, int64(len(data)), bytes.NewReader(data))
	if !errors.Is(err, cas.ErrTooLarge) || !strings.Contains(err.Error(), "10000") {
		t.Fatalf("Put of 10001 bytes into a 10000-byte store = %v; want ErrTooLarge naming the limit", err)
	}
	// Of unknown size, it fails once the bytes pass the budget.
	err = s.Put(context.Background(), k, cas.SizeUnknown, bytes.NewReader(data))
	if !errors.Is(err, cas.ErrTooLarge) {
		t.Fatalf("Put of 10001 bytes of unknown size = %v; want ErrTooLarge", err)
	}
	mustMiss(t, s, k)
	if st := s.Stats(); st.ReservedBytes != 0 || st.UsedBytes != 0 {
		t.Fatalf("failed Puts left %+v", st)
	}
}

// gatedReader yields its data in two halves and waits on gate between them,
// so a test can hold many uploads in flight at once.
type gatedReader struct {
	data    []byte
	half    bool
	gate    <-chan struct{}
	reached func()
}

func (g *gatedReader) Read(p []byte) (int, error) {
	if len(g.data) == 0 {
		return 0, io.EOF
	}
	if !g.half {
		g.half = true
		n := copy(p[:min(len(p), len(g.data)/2)], g.data)
		g.data = g.data[n:]
		return n, nil
	}
	if g.reached != nil {
		g.reached()
		g.reached = nil
		<-g.gate
	}
	n := copy(p, g.data)
	g.data = g.data[n:]
	return n, nil
}

// TestUploadsInFlightStayWithinBudget: 16 uploads of 8 MiB into a 64 MiB
// store that already holds 32 MiB. Each reserves its size before reading;
// the ones that do not fit wait, evicting what can be evicted. All finish,
// and stored + reserved never passes the budget.
func TestUploadsInFlightStayWithinBudget(t *testing.T) {
	for _, known := range []bool{true, false} {
		t.Run(fmt.Sprintf("sizeKnown=%v", known), func(t *testing.T) {
			const budget, each, uploads = 64 << 20, 8 << 20, 16
			s := openStore(t, t.TempDir(), Options{MaxSize: budget, InlineMaxSize: inlineTestMax})
			for i := range 4 {
				k, data := blob(uint64(100+i), each)
				put(t, s, k, data)
			}
			gate := make(chan struct{})
			var reached sync.WaitGroup
			var wg sync.WaitGroup
			errs := make(chan error, uploads)
			for i := range uploads {
				k, data := blob(uint64(i), each)
				hint := int64(len(data))
				if !known {
					hint = cas.SizeUnknown
				}
				r := &gatedReader{data: data, gate: gate}
				if i < 4 { // four of them wait, half read, until the others are queued
					reached.Add(1)
					r.reached = reached.Done
				}
				wg.Go(func() {
					if err := s.Put(context.Background(), k, hint, r); err != nil {
						errs <- fmt.Errorf("upload %d: %w", i, err)
					}
				})
			}
			reached.Wait()
			close(gate)
			wg.Wait()
			close(errs)
			failed := 0
			for err := range errs {
				if known || !errors.Is(err, cas.ErrFull) {
					t.Error(err)
				}
				failed++
			}
			st := s.Stats()
			s.usageMu.Lock()
			peak := s.usage.peak
			s.usageMu.Unlock()
			t.Logf("budget %d, peak stored+reserved %d, now stored %d in %d objects, reserved %d, %d evictions, %d uploads failed",
				budget, peak, st.UsedBytes, st.Objects, st.ReservedBytes, st.Evictions, failed)
			if peak > budget {
				t.Fatalf("stored + reserved reached %d bytes; the budget is %d", peak, budget)
			}
			if st.ReservedBytes != 0 {
				t.Fatalf("%d bytes still reserved after every upload finished", st.ReservedBytes)
			}
			if known && failed > 0 {
				t.Fatalf("%d uploads of known size failed; they should wait for room", failed)
			}
		})
	}
}

func TestTruncatedFileIsAMissAndItsRecordGoes(t *testing.T) {
	s := openStore(t, t.TempDir(), Options{MaxSize: 1 << 30, InlineMaxSize: inlineTestMax})
	k, data := blob(1, 100<<10)
	put(t, s, k, data)
	path := onlyFile(t, s.largeDir)
	if err := os.Truncate(path, int64(len(data)/2)); err != nil {
		t.Fatal(err)
	}
	rc, _, err := s.Get(context.Background(), k, 0)
	if err == nil {
		rc.Close()
		t.Fatal("Get served a truncated object")
	}
	if !errors.Is(err, cas.ErrNotFound) {
		t.Fatalf("Get of a truncated object = %v; want a miss", err)
	}
	if !isMissing(t, s, k) {
		t.Fatal("FindMissing still reports the broken object present")
	}
	if st := s.Stats(); st.Objects != 0 || st.UsedBytes != 0 {
		t.Fatalf("Stats after dropping the broken object = %+v", st)
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the broken file is still there: %v", err)
	}
	put(t, s, k, data) // clients upload it again
	if got := get(t, s, k); !bytes.Equal(got, data) {
		t.Fatal("the object stored again reads back wrong")
	}
}

func TestMissingFileIsAMiss(t *testing.T) {
	s := openStore(t, t.TempDir(), Options{MaxSize: 1 << 30, InlineMaxSize: inlineTestMax})
	k, data := blob(1, 100<<10)
	put(t, s, k, data)
	if err := os.Remove(onlyFile(t, s.largeDir)); err != nil {
		t.Fatal(err)
	}
	mustMiss(t, s, k)
	if !isMissing(t, s, k) {
		t.Fatal("FindMissing still reports the object whose file is gone")
	}
}

// TestDeletePartitionLeavesNoBytesOnDisk: deleting an org (or its plain
// data when it turns encryption on) must remove the bytes from the disk,
// not leave them in Pebble's tables or logs until something compacts.
func TestDeletePartitionLeavesNoBytesOnDisk(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, Options{MaxSize: 1 << 30, InlineMaxSize: inlineTestMax})
	marker := func(org string) []byte { return []byte("<<secret bytes of " + org + ">>") }
	for _, org := range []string{"org1", "org2"} {
		for i, n := range []int{200, inlineTestMax * 4} {
			data := append(marker(org), castest.Bytes(uint64(i), int64(n))...)
			put(t, s, castest.CASKey(cas.Partition(org), data), data)
			put(t, s, castest.CASKey(cas.Partition(org+"/kX"), data), data)
		}
	}
	if err := s.db.Flush(); err != nil { // the bytes are in tables as well as in the log
		t.Fatal(err)
	}
	if _, err := s.DeletePartition(context.Background(), "org1"); err != nil {
		t.Fatal(err)
	}
	if n := filesContaining(t, dir, marker("org1")); n != 0 {
		t.Fatalf("%d files under the store still hold org1's bytes after DeletePartition", n)
	}
	if n := filesContaining(t, dir, marker("org2")); n == 0 {
		t.Fatal("org2's bytes are gone too; the check itself is broken")
	}
}

// TestDeletePartitionOfManyFilesDropsEveryFileRecord: the 'f' records of
// the removed files are deleted in batches; none is left behind, and the
// other partition keeps its files.
func TestDeletePartitionOfManyFilesDropsEveryFileRecord(t *testing.T) {
	s := openStore(t, t.TempDir(), Options{MaxSize: 1 << 30, InlineMaxSize: inlineTestMax})
	const files = fileDeletesPerBatch + 10
	for i := range files {
		data := castest.Bytes(uint64(i), inlineTestMax+1)
		put(t, s, castest.CASKey("org1", data), data)
	}
	other := castest.Bytes(files, inlineTestMax+1)
	put(t, s, castest.CASKey("org2", other), other)
	if _, err := s.DeletePartition(context.Background(), "org1"); err != nil {
		t.Fatal(err)
	}
	lower, upper := partitionRange(recordFile, "org1")
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		t.Fatal(err)
	}
	left := 0
	for it.First(); it.Valid(); it.Next() {
		left++
	}
	if err := it.Close(); err != nil {
		t.Fatal(err)
	}
	if left != 0 {
		t.Fatalf("%d 'f' records of org1 are left after deleting its %d files", left, files)
	}
	if n := countFiles(s.largeDir); n != 1 {
		t.Fatalf("%d files are left; want org2's one", n)
	}
}

func TestOrgUsageAndPartitionsAreSegmentWise(t *testing.T) {
	s := openStore(t, t.TempDir(), Options{MaxSize: 1 << 30, InlineMaxSize: inlineTestMax})
	ctx := context.Background()
	sizes := map[cas.Partition]int64{"org1": 5, "org1/kkey": 7 + inlineTestMax, "org10": 9, "org1-x": 11}
	for p, n := range sizes {
		data := castest.Bytes(uint64(n), n)
		put(t, s, castest.CASKey(p, data), data)
	}
	want := map[string]int64{"org1": 12 + inlineTestMax, "org10": 9, "org1-x": 11}
	for org, n := range want {
		if got, err := s.OrgUsage(ctx, org); err != nil || got != n {
			t.Fatalf("OrgUsage(%s) = %d, %v; want %d", org, got, err, n)
		}
	}
	freed, err := s.DeletePartition(ctx, "org1/kkey")
	if err != nil || freed != 7+inlineTestMax {
		t.Fatalf("DeletePartition(org1/kkey) = %d, %v; want %d freed", freed, err, 7+inlineTestMax)
	}
	if got, _ := s.OrgUsage(ctx, "org1"); got != 5 {
		t.Fatalf("OrgUsage(org1) after deleting its sealed partition = %d; want 5", got)
	}
	freed, err = s.DeletePartition(ctx, "org1")
	if err != nil || freed != 5 {
		t.Fatalf("DeletePartition(org1) = %d, %v; want 5 freed", freed, err)
	}
	for _, org := range []string{"org10", "org1-x"} {
		if got, _ := s.OrgUsage(ctx, org); got != want[org] {
			t.Fatalf("deleting org1 changed OrgUsage(%s) to %d", org, got)
		}
	}
	if _, err := s.OrgUsage(ctx, "a/b"); err == nil {
		t.Fatal("OrgUsage accepted an org id that is not one segment")
	}
}

// TestConcurrentUseKeepsCountersExact: Puts, Gets, FindMissing and a
// DeletePartition race under constant eviction; afterwards the counters
// match a walk of the objects, and a restart reads the same counters.
func TestConcurrentUseKeepsCountersExact(t *testing.T) {
	dir := t.TempDir()
	opts := Options{MaxSize: 40 * 1000, InlineMaxSize: 600}
	s := openStore(t, dir, opts)
	ctx := context.Background()
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 300 {
				k, data := blob(uint64(i%100), int64(400+(i%100)*5)) // both sides of 600 bytes
				k.Partition = cas.Partition(fmt.Sprintf("org%d", i%2))
				switch (i + w) % 4 {
				case 0, 1:
					if err := s.Put(ctx, k, int64(len(data)), bytes.NewReader(data)); err != nil {
						t.Error(err)
					}
				case 2:
					rc, _, err := s.Get(ctx, k, 0)
					if err == nil {
						got, _ := io.ReadAll(rc)
						rc.Close()
						if !bytes.Equal(got, data) {
							t.Errorf("read wrong bytes for %s", k)
						}
					} else if !errors.Is(err, cas.ErrNotFound) {
						t.Error(err)
					}
				case 3:
					if _, err := s.FindMissing(ctx, []cas.Key{k}); err != nil {
						t.Error(err)
					}
				}
				if i == 150 && w == 0 {
					if _, err := s.DeletePartition(ctx, "org1"); err != nil {
						t.Error(err)
					}
				}
			}
		})
	}
	wg.Wait()
	st := s.Stats()
	if st.UsedBytes > opts.MaxSize {
		t.Fatalf("stored %d bytes; the budget is %d", st.UsedBytes, opts.MaxSize)
	}
	var walked, objects int64
	for _, p := range []cas.Partition{"org0", "org1"} {
		s.WalkPartition(ctx, p, func(o cas.StoredObject) error { walked += o.Size; objects++; return nil })
	}
	if walked != st.UsedBytes || objects != st.Objects {
		t.Fatalf("counters say %d bytes in %d objects; a walk finds %d in %d", st.UsedBytes, st.Objects, walked, objects)
	}
	s.Close()
	s = openStore(t, dir, opts)
	if got := s.Stats(); got.UsedBytes != st.UsedBytes || got.Objects != st.Objects {
		t.Fatalf("after restart the counters say %+v; before %+v", got, st)
	}
	if files := countFiles(s.largeDir); int64(files) > objects {
		t.Fatalf("%d object files for %d objects: files leaked", files, objects)
	}
}

func TestOrphanFilesGoAfterAnUncleanShutdown(t *testing.T) {
	dir := t.TempDir()
	opts := Options{MaxSize: 1 << 30, InlineMaxSize: inlineTestMax}
	s := openStore(t, dir, opts)
	k, data := blob(1, 10<<10)
	put(t, s, k, data)
	// What a crash between creating a file and writing its record leaves:
	// an 'f' record and a file, no object record.
	orphanKey, _ := blob(2, 10<<10)
	mkey, _ := objectKey(recordMeta, orphanKey)
	id := newFileID()
	if err := s.db.Set(fileKey("org1", id), mkey, writeOpts); err != nil {
		t.Fatal(err)
	}
	orphan := s.objectFilePath(id)
	os.MkdirAll(filepath.Dir(orphan), 0o750)
	if err := os.WriteFile(orphan, []byte("half an upload"), 0o600); err != nil {
		t.Fatal(err)
	}
	s.Close()
	os.Remove(filepath.Join(dir, cleanName)) // as if the process had been killed

	s = openStore(t, dir, opts)
	s.removeOrphanFiles() // the maintenance loop does this at start; here it is done in step
	if _, err := os.Stat(orphan); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the orphan file is still there: %v", err)
	}
	if got := get(t, s, k); !bytes.Equal(got, data) {
		t.Fatal("a stored object was harmed by the orphan sweep")
	}
}

func TestOldLayoutIsRemovedAtOpen(t *testing.T) {
	dir := t.TempDir()
	old := filepath.Join(dir, "objects", "org1", "@cas", "sha256", "ab", "abcd-4")
	os.MkdirAll(filepath.Dir(old), 0o750)
	os.WriteFile(old, []byte("abcd"), 0o600)
	os.MkdirAll(filepath.Join(dir, "tmp"), 0o750)
	os.WriteFile(filepath.Join(dir, "tmp", "put-1"), []byte("x"), 0o600)
	var logs logBuffer
	openStore(t, dir, Options{MaxSize: 1 << 20, Logger: textLogger(&logs)})
	for _, name := range []string{"objects", "tmp"} {
		if _, err := os.Stat(filepath.Join(dir, name)); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("%s/ of the old layout is still there: %v", name, err)
		}
	}
	if n := strings.Count(logs.String(), "previous version"); n != 1 {
		t.Fatalf("want one log line about the old layout, got %d:\n%s", n, logs.String())
	}
}

func TestSecondOpenOfSameDirFails(t *testing.T) {
	dir := t.TempDir()
	openStore(t, dir, Options{MaxSize: 1 << 20})
	if s2, err := Open(dir, Options{MaxSize: 1 << 20}); err == nil {
		s2.Close()
		t.Fatal("a second Open of the same directory succeeded")
	} else if !strings.Contains(err.Error(), "in use") {
		t.Fatalf("the error does not say the directory is in use: %v", err)
	}
}

func TestBudgetIsClampedToTheFileSystem(t *testing.T) {
	var logs logBuffer
	s := openStore(t, t.TempDir(), Options{MaxSize: 1 << 40, Logger: textLogger(&logs), FreeSpaceMargin: 1 << 20,
		diskUse: func(string) (diskSpace, error) { return diskSpace{total: 200 << 20, available: 100 << 20}, nil }})
	if got, want := s.Stats().MaxBytes, int64(99<<20)+s.ballast.bytesHeld(); got != want {
		t.Fatalf("budget = %d; want the free space less the margin (plus the ballast), %d", got, want)
	}
	for _, figure := range []string{"configured_bytes=1099511627776", fmt.Sprintf("budget_bytes=%d", s.Stats().MaxBytes)} {
		if !strings.Contains(logs.String(), figure) {
			t.Fatalf("the clamp's log line lacks %s:\n%s", figure, logs.String())
		}
	}
}

func TestCollectorReportsFigures(t *testing.T) {
	clock := fakeclock.At(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	s := lruStore(t, t.TempDir(), clock)
	fillABC(t, s, clock)
	k, data := blob(9, 100)
	put(t, s, k, data) // evicts one
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(s.Collector())
	want := `
# HELP sealcache_disk_evictions_total Objects evicted from the disk store to make room since start-up.
# TYPE sealcache_disk_evictions_total counter
sealcache_disk_evictions_total 1
# HELP sealcache_disk_objects Objects in the disk store.
# TYPE sealcache_disk_objects gauge
sealcache_disk_objects 3
# HELP sealcache_disk_reserved_bytes Bytes of the disk store's budget held by uploads in flight.
# TYPE sealcache_disk_reserved_bytes gauge
sealcache_disk_reserved_bytes 0
# HELP sealcache_disk_used_bytes Bytes of objects in the disk store.
# TYPE sealcache_disk_used_bytes gauge
sealcache_disk_used_bytes 300
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"sealcache_disk_evictions_total", "sealcache_disk_objects", "sealcache_disk_reserved_bytes", "sealcache_disk_used_bytes"); err != nil {
		t.Fatal(err)
	}
}

func TestKeysRoundTripAndPartitionRangesAreSegmentWise(t *testing.T) {
	keys := []cas.Key{
		castest.CASKey("org1", []byte("a")),
		castest.CASKey("Org_1-x/key-7", []byte("b")),
		castest.ACKey("org1", "", 3),
		castest.ACKey("org1/k", "a/b/c\x00\x01", 4),
		{Partition: "o", Kind: cas.KindCAS, Digest: cas.Digest{Function: castest.CASKey("o", nil).Digest.Function, Hash: castest.CASKey("o", nil).Digest.Hash, Size: cas.SizeUnknown}},
	}
	for _, k := range keys {
		mkey, err := objectKey(recordMeta, k)
		if err != nil {
			t.Fatal(err)
		}
		back, err := decodeObjectKey(mkey)
		if err != nil || back != k {
			t.Fatalf("%s -> %q -> %+v, %v", k, mkey, back, err)
		}
	}
	lower, upper := partitionRange(recordMeta, "org1")
	for p, in := range map[cas.Partition]bool{"org1": true, "org1/kX": true, "org1/kX/y": true, "org10": false, "org1-x": false, "org": false, "org2": false} {
		mkey, _ := objectKey(recordMeta, castest.CASKey(p, []byte("x")))
		if got := bytes.Compare(mkey, lower) >= 0 && bytes.Compare(mkey, upper) < 0; got != in {
			t.Fatalf("object of %s in the range of org1: %v; want %v", p, got, in)
		}
	}
}

// TestStripeIsTheHashHeadWithoutAllocating: the lock stripe comes from
// the first two hash bytes, whatever the partition, and finding it
// allocates nothing (it runs for every hit and every write).
func TestStripeIsTheHashHeadWithoutAllocating(t *testing.T) {
	for _, p := range []cas.Partition{"o", "org1", "org1/kX/y"} {
		k := castest.CASKey(p, []byte("x"))
		mkey, err := objectKey(recordMeta, k)
		if err != nil {
			t.Fatal(err)
		}
		head, _ := hex.DecodeString(k.Digest.Hash[:4])
		if got, want := stripeOf(mkey), int(binary.BigEndian.Uint16(head))%lockStripes; got != want {
			t.Fatalf("stripe of %s = %d; want %d", k, got, want)
		}
		if n := testing.AllocsPerRun(10, func() { stripeOf(mkey) }); n != 0 {
			t.Fatalf("stripeOf allocates %v times", n)
		}
	}
}

func TestBadKeysAreRejectedNotMissed(t *testing.T) {
	s := openStore(t, t.TempDir(), Options{MaxSize: 1 << 20})
	ctx := context.Background()
	bad := []cas.Key{}
	for _, p := range []cas.Partition{"", "..", "../etc", "org1/", "/org1", "org1//k", "org 1", "@cas", "o\x00"} {
		bad = append(bad, castest.CASKey(p, []byte("x")))
	}
	k := castest.CASKey("org1", []byte("x"))
	k.Digest.Hash = strings.Repeat("../", 21) + "x"
	bad = append(bad, k)
	k = castest.CASKey("org1", []byte("x"))
	k.Kind = 0
	bad = append(bad, k)
	k = castest.ACKey("org1", strings.Repeat("i", maxInstanceLen+1), 1)
	bad = append(bad, k)
	for _, k := range bad {
		if err := s.Put(ctx, k, 1, strings.NewReader("x")); err == nil {
			t.Errorf("Put accepted %+v", k)
		}
		if _, _, err := s.Get(ctx, k, 0); err == nil || errors.Is(err, cas.ErrNotFound) {
			t.Errorf("Get of %+v = %v; want a validation error", k, err)
		}
		if _, err := s.FindMissing(ctx, []cas.Key{k}); err == nil {
			t.Errorf("FindMissing accepted %+v", k)
		}
	}
}

// regularFiles lists the regular files below dir.
func regularFiles(dir string) []string {
	var found []string
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			found = append(found, path)
		}
		return nil
	})
	return found
}

// onlyFile returns the one regular file below dir.
func onlyFile(t *testing.T, dir string) string {
	t.Helper()
	found := regularFiles(dir)
	if len(found) != 1 {
		t.Fatalf("want one file below %s, found %v", dir, found)
	}
	return found[0]
}

func countFiles(dir string) int { return len(regularFiles(dir)) }

// filesContaining counts the files below dir whose bytes contain marker.
func filesContaining(t *testing.T, dir string, marker []byte) int {
	t.Helper()
	n := 0
	for _, path := range regularFiles(dir) {
		data, err := os.ReadFile(path)
		if err == nil && bytes.Contains(data, marker) {
			t.Logf("%s holds %q", path, marker)
			n++
		}
	}
	return n
}

func TestLookupKeysSortLikeTheirBytes(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, tc := range []struct {
		name string
		keys [][]byte
	}{
		{"shared prefix", [][]byte{[]byte("m-org\x00b"), []byte("m-org\x00a"), []byte("m-org\x00ab"), []byte("m-org\x00a\x00"), []byte("m-org\x00")}},
		{"no shared prefix", [][]byte{[]byte("b"), []byte("a"), []byte(""), []byte("ab")}},
	} {
		t.Run(tc.name, func(t *testing.T) { checkLookupSort(t, tc.keys) })
	}
	var random [][]byte
	for range 2000 {
		k := []byte("mORG\x00")
		for range r.IntN(12) {
			k = append(k, byte(r.IntN(3))) // few values: many ties and prefixes
		}
		random = append(random, k)
	}
	t.Run("random", func(t *testing.T) { checkLookupSort(t, random) })
}

func checkLookupSort(t *testing.T, keys [][]byte) {
	lk := make([]lookupKey, len(keys))
	for i, k := range keys {
		lk[i] = lookupKey{mkey: k, index: i}
	}
	sortLookupKeys(lk)
	want := slices.Clone(keys)
	slices.SortFunc(want, bytes.Compare)
	for i := range lk {
		if !bytes.Equal(lk[i].mkey, want[i]) {
			t.Fatalf("position %d: got %q, want %q", i, lk[i].mkey, want[i])
		}
	}
}

func TestLookupKeysSortAcrossEveryByteValue(t *testing.T) {
	var keys [][]byte
	for i := range 256 {
		keys = append(keys, []byte{'m', 0, byte(255 - i), byte(i), 0xff, 0, 1, 2, 3, 4})
	}
	checkLookupSort(t, keys)
}
