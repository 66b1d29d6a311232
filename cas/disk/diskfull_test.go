//go:build linux

package disk

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sealcache/sealcache/cas"
	"github.com/sealcache/sealcache/cas/castest"
)

// These tests need a small file system of their own: a tmpfs, which only
// root can mount. They are skipped where mounting is not possible.

// mountTmpfs mounts a tmpfs of size bytes for the test and returns it.
func mountTmpfs(t *testing.T, size int64) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a small file system needs root")
	}
	dir := t.TempDir()
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d", size), "tmpfs", dir).CombinedOutput()
	if err != nil {
		t.Skipf("cannot mount a tmpfs here (%v: %s)", err, bytes.TrimSpace(out))
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("unmounting %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// fillDisk writes a file into dir until the file system is full, as
// another program sharing the disk would.
func fillDisk(t *testing.T, dir string) {
	t.Helper()
	f, err := os.CreateTemp(dir, "hog-")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, chunk := range []int{1 << 20, 4 << 10} {
		buf := make([]byte, chunk)
		for {
			if _, err := f.Write(buf); err != nil {
				if !isDiskFull(err) {
					t.Fatal(err)
				}
				break
			}
		}
	}
	if space, _ := statDisk(dir); space.available > 0 {
		t.Logf("after filling, %d bytes are still available", space.available)
	}
}

// smallDiskOptions fit a 64 MiB file system: 40 MiB of objects, a 1 MiB
// ballast, the smallest memtables.
func smallDiskOptions(logs *logBuffer) Options {
	return Options{MaxSize: 40 << 20, InlineMaxSize: 16 << 10, BallastSize: 1 << 20, Logger: textLogger(logs)}
}

func putLarge(t *testing.T, s *Store, seed uint64) (cas.Key, []byte) {
	t.Helper()
	data := castest.Bytes(seed, 4<<20)
	k := castest.CASKey("org1", data)
	put(t, s, k, data)
	return k, data
}

// TestDiskFullWhileWritingEvictsAndRetries: another program fills the
// disk; a Put that meets the full disk evicts and retries once, and
// succeeds. With nothing left to evict it fails with ErrFull and leaves
// nothing behind.
func TestDiskFullWhileWritingEvictsAndRetries(t *testing.T) {
	mnt := mountTmpfs(t, 64<<20)
	var logs logBuffer
	s := openStore(t, filepath.Join(mnt, "store"), smallDiskOptions(&logs))
	for i := range 6 {
		putLarge(t, s, uint64(i))
	}
	fillDisk(t, mnt)

	k, data := blob(100, 4<<20)
	if err := s.Put(context.Background(), k, int64(len(data)), bytes.NewReader(data)); err != nil {
		t.Fatalf("Put on a full disk with objects to evict: %v\n%s", err, logs.String())
	}
	if got := get(t, s, k); !bytes.Equal(got, data) {
		t.Fatal("the object stored on a full disk reads back wrong")
	}
	st := s.Stats()
	t.Logf("after the Put on a full disk: %+v", st)
	if st.Evictions == 0 {
		t.Fatal("the Put succeeded on a full disk without evicting anything")
	}

	// Nothing left to evict: the Put fails with ErrFull.
	if _, err := s.DeletePartition(context.Background(), "org1"); err != nil {
		t.Fatal(err)
	}
	fillDisk(t, mnt)
	k, data = blob(101, 4<<20)
	err := s.Put(context.Background(), k, int64(len(data)), bytes.NewReader(data))
	if !errors.Is(err, cas.ErrFull) {
		t.Fatalf("Put on a full disk with nothing to evict = %v; want ErrFull", err)
	}
	t.Logf("error: %v", err)
	mustMiss(t, s, k)
	if st := s.Stats(); st.ReservedBytes != 0 || st.Objects != 0 {
		t.Fatalf("the failed Put left %+v", st)
	}
	if n := countFiles(s.largeDir); n != 0 {
		t.Fatalf("the failed Put left %d files", n)
	}
}

// TestOpenOnAFullDisk: the disk filled up while the store was closed.
// Open succeeds, says it lowered the budget, evicts down to it, and the
// store takes new objects again.
func TestOpenOnAFullDisk(t *testing.T) {
	mnt := mountTmpfs(t, 64<<20)
	dir := filepath.Join(mnt, "store")
	var logs logBuffer
	s := openStore(t, dir, smallDiskOptions(&logs))
	var kept []cas.Key
	for i := range 8 {
		k, _ := putLarge(t, s, uint64(i))
		kept = append(kept, k)
	}
	for i := range 100 {
		k, data := blob(uint64(1000+i), 1000)
		put(t, s, k, data)
	}
	before := s.Stats()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	fillDisk(t, mnt)

	s, err := Open(dir, smallDiskOptions(&logs))
	if err != nil {
		t.Fatalf("Open on a full disk: %v\n%s", err, logs.String())
	}
	t.Cleanup(func() { s.Close() })
	st := s.Stats()
	t.Logf("before: %+v; reopened on a full disk: %+v", before, st)
	if st.MaxBytes >= before.UsedBytes {
		t.Fatalf("the budget %d was not lowered below the %d bytes stored on a full disk", st.MaxBytes, before.UsedBytes)
	}
	if !strings.Contains(logs.String(), "smaller budget") {
		t.Fatalf("Open did not log the clamp:\n%s", logs.String())
	}
	s.evictToBudget() // the maintenance loop does this at start; here it is done in step
	if st := s.Stats(); st.UsedBytes > st.MaxBytes {
		t.Fatalf("after evicting, %d bytes stored; the budget is %d", st.UsedBytes, st.MaxBytes)
	}
	k, data := blob(2000, 2<<20)
	if err := s.Put(context.Background(), k, int64(len(data)), bytes.NewReader(data)); err != nil {
		t.Fatalf("Put after opening on a full disk: %v\n%s", err, logs.String())
	}
	if got := get(t, s, k); !bytes.Equal(got, data) {
		t.Fatal("the new object reads back wrong")
	}
}
