package e2etest

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func TestStoredFilesListsRegularFilesAndFilesContainingFindsTheNeedle(t *testing.T) {
	dir := t.TempDir()
	write := func(rel, content string) string {
		path := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	plain := write("org/@cas/sha256/ab/abcd-10", "xx "+Marker+" xx")
	sealed := write("org/k1/@cas/sha256/ab/abcd-10", "\x00\x01 sealed bytes")

	files := StoredFiles(t, dir)
	slices.Sort(files)
	if want := []string{plain, sealed}; !slices.Equal(files, want) {
		t.Errorf("StoredFiles = %v, want %v", files, want)
	}
	if got := FilesContaining(t, files, Marker); !slices.Equal(got, []string{plain}) {
		t.Errorf("FilesContaining(marker) = %v, want only %s", got, plain)
	}
	if got := StoredFiles(t, filepath.Join(dir, "no-such-org")); len(got) != 0 {
		t.Errorf("StoredFiles of a missing directory = %v, want none", got)
	}
}

func TestEventuallyReturnsOnceTheConditionHolds(t *testing.T) {
	calls := 0
	Eventually(t, time.Minute, "the third call", func() string {
		calls++
		if calls < 3 {
			return "not yet"
		}
		return ""
	})
	if calls != 3 {
		t.Errorf("the condition was checked %d times, want 3", calls)
	}
}
