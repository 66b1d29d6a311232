package e2etest

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// StoreDir is where the server's disk store keeps every object, of every
// org: small ones inside its database files, large ones in files of their
// own. Tests search all of it for bytes that must (or must not) be there,
// and count an org's objects with the shred check, which walks the store.
func (s *Server) StoreDir() string { return filepath.Join(s.DataDir, "cas") }

// StoredFiles returns every regular file below dir (none when dir does not
// exist).
func StoredFiles(t testing.TB, dir string) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if d.Type().IsRegular() {
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("listing %s: %v", dir, err)
	}
	return files
}

// FilesContaining returns the files among files whose bytes contain needle.
func FilesContaining(t testing.TB, files []string, needle string) []string {
	t.Helper()
	var found []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if errors.Is(err, fs.ErrNotExist) {
			continue // evicted or deleted since it was listed
		}
		if err != nil {
			t.Fatalf("reading %s: %v", f, err)
		}
		if bytes.Contains(b, []byte(needle)) {
			found = append(found, f)
		}
	}
	return found
}
