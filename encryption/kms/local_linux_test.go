//go:build linux

package kms_test

import (
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"

	"github.com/sealcache/sealcache/encryption/kms"
)

// A restart on a full disk must not fail because of the operator key that
// is already there: EnsureLocalKey reads before it writes.
func TestEnsureLocalKeyWritesNothingWhenTheKeyExists(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "kms")
	if created, err := kms.EnsureLocalKey(dir, "operator"); err != nil || !created {
		t.Fatalf("first start: created %v, %v", created, err)
	}
	before := dirNames(t, dir)

	var created bool
	var err, sanity error
	withFullDisk(t, func() {
		created, err = kms.EnsureLocalKey(dir, "operator")
		_, sanity = kms.EnsureLocalKey(dir, "new-key")
	})
	if sanity == nil {
		t.Fatal("test setup: a new key could be written while the disk is full")
	}
	if err != nil || created {
		t.Fatalf("restart with the key present and a full disk: created %v, %v; want the existing key used, nothing written", created, err)
	}
	if after := dirNames(t, dir); !slices.Equal(before, after) {
		t.Errorf("the key directory changed from %v to %v", before, after)
	}
}

// withFullDisk runs fn while no file of this process can grow: with
// RLIMIT_FSIZE at 0 every write to a regular file fails with EFBIG, for
// root too, as every write fails with ENOSPC on a full disk. (Go ignores
// the SIGXFSZ that comes with it.) Tests of this package do not run in
// parallel, so nothing else is writing meanwhile.
func withFullDisk(t *testing.T, fn func()) {
	t.Helper()
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &syscall.Rlimit{Cur: 0, Max: old.Max}); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
			t.Fatal(err)
		}
	}()
	fn()
}

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}
