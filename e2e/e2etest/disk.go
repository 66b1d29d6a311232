package e2etest

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// ObjectsDir is where the server's disk store keeps objects: one directory
// per org id below it, and for sealed data one more per key id ("k..."):
//
//	DATA_DIR/cas/objects/ORG/@cas/...        plain objects
//	DATA_DIR/cas/objects/ORG/kKEYID/@cas/... objects sealed under a key id
func (s *Server) ObjectsDir() string { return filepath.Join(s.DataDir, "cas", "objects") }

// OrgDir is the directory of one org's objects below ObjectsDir.
func (s *Server) OrgDir(orgID string) string { return filepath.Join(s.ObjectsDir(), orgID) }

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
