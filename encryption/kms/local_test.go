package kms_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/sealcache/sealcache/encryption/kms"
)

func TestLocalKeyFileIsPrivate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	if err := kms.CreateLocalKey(dir, "operator"); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]fs.FileMode{dir: 0o700 | fs.ModeDir, filepath.Join(dir, "operator"): 0o600} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != want {
			t.Errorf("%s mode = %v, want %v", path, fi.Mode(), want)
		}
	}
	key, _ := os.ReadFile(filepath.Join(dir, "operator"))
	if len(key) != 32 {
		t.Errorf("key file holds %d bytes, want 32", len(key))
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("key directory holds %d entries, want only the key (no temporary files)", len(entries))
	}
}

func TestLocalWrapUnwrap(t *testing.T) {
	dir := t.TempDir()
	if err := kms.CreateLocalKey(dir, "cust_1"); err != nil {
		t.Fatal(err)
	}
	w := open(t, kms.Config{LocalDir: dir}, "local-kms://cust_1")
	if w.URI() != "local-kms://cust_1" {
		t.Errorf("URI() = %q", w.URI())
	}
	ct := wrap(t, w, testKey, orgA)
	unwrapEquals(t, w, ct, orgA, testKey)

	t.Run("other associated data fails", func(t *testing.T) {
		_, err := w.Unwrap(context.Background(), ct, orgB)
		wantKind(t, err, kms.KindInvalidCiphertext)
	})
	t.Run("tampered ciphertext fails", func(t *testing.T) {
		bad := append([]byte(nil), ct...)
		bad[len(bad)-1] ^= 1
		_, err := w.Unwrap(context.Background(), bad, orgA)
		wantKind(t, err, kms.KindInvalidCiphertext)
	})
	t.Run("another key fails", func(t *testing.T) {
		if err := kms.CreateLocalKey(dir, "other"); err != nil {
			t.Fatal(err)
		}
		other := open(t, kms.Config{LocalDir: dir}, "local-kms://other")
		_, err := other.Unwrap(context.Background(), ct, orgA)
		wantKind(t, err, kms.KindInvalidCiphertext)
	})
}

func TestLocalMissingKeyIsNotFound(t *testing.T) {
	w := open(t, kms.Config{LocalDir: t.TempDir()}, "local-kms://nope")
	_, err := w.Wrap(context.Background(), testKey, orgA)
	wantKind(t, err, kms.KindNotFound, "no key file")
}

func TestLocalDisabledKey(t *testing.T) {
	dir := t.TempDir()
	if err := kms.CreateLocalKey(dir, "k"); err != nil {
		t.Fatal(err)
	}
	w := open(t, kms.Config{LocalDir: dir}, "local-kms://k")
	ct := wrap(t, w, testKey, orgA)

	if err := kms.DisableLocalKey(dir, "k"); err != nil {
		t.Fatal(err)
	}
	_, err := w.Wrap(context.Background(), testKey, orgA)
	wantKind(t, err, kms.KindDisabled, "k.disabled")
	_, err = w.Unwrap(context.Background(), ct, orgA)
	wantKind(t, err, kms.KindDisabled)

	// EnsureLocalKey must not replace a disabled key with a fresh one: that
	// would orphan everything wrapped with it.
	_, err = kms.EnsureLocalKey(dir, "k")
	wantKind(t, err, kms.KindDisabled)
	if err := kms.CreateLocalKey(dir, "k"); !errors.Is(err, fs.ErrExist) {
		t.Errorf("CreateLocalKey over a disabled key: %v, want fs.ErrExist", err)
	}

	if err := kms.EnableLocalKey(dir, "k"); err != nil {
		t.Fatal(err)
	}
	unwrapEquals(t, w, ct, orgA, testKey)
}

func TestEnsureLocalKey(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	created, err := kms.EnsureLocalKey(dir, "operator")
	if err != nil || !created {
		t.Fatalf("first EnsureLocalKey = %v, %v; want created", created, err)
	}
	w := open(t, kms.Config{LocalDir: dir}, "local-kms://operator")
	ct := wrap(t, w, testKey, orgA)

	created, err = kms.EnsureLocalKey(dir, "operator")
	if err != nil || created {
		t.Fatalf("second EnsureLocalKey = %v, %v; want existing key kept", created, err)
	}
	unwrapEquals(t, w, ct, orgA, testKey)
}

func TestCreateLocalKeyNeverOverwrites(t *testing.T) {
	dir := t.TempDir()
	if err := kms.CreateLocalKey(dir, "k"); err != nil {
		t.Fatal(err)
	}
	if err := kms.CreateLocalKey(dir, "k"); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("second CreateLocalKey: %v, want fs.ErrExist", err)
	}
}

func TestLocalKeyOfWrongSize(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "short"), []byte("too short"), 0o600)
	w := open(t, kms.Config{LocalDir: dir}, "local-kms://short")
	_, err := w.Wrap(context.Background(), testKey, orgA)
	wantKind(t, err, kms.KindOther, "want 32 random bytes")
}

func TestLocalKMSNeedsDirectory(t *testing.T) {
	_, err := kms.Open(context.Background(), "local-kms://operator", kms.Config{})
	wantKind(t, err, kms.KindOther, "no local key directory configured")
}
