package orgs

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
)

func TestMigrationsApplyOnceAndReopenKeepsData(t *testing.T) {
	ctx := context.Background()
	s, path := openTestStore(t)
	org := mustCreateOrg(t, s, "acme")

	countRows := func(s *DB) int {
		var n int
		if err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM schema_migrations`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if got := countRows(s); got != len(migrations) {
		t.Fatalf("schema_migrations has %d rows, want %d", got, len(migrations))
	}
	s.Close()

	for range 2 {
		s2, err := OpenSQLite(path)
		if err != nil {
			t.Fatalf("reopen: %v", err)
		}
		if got := countRows(s2); got != len(migrations) {
			t.Fatalf("after reopen schema_migrations has %d rows, want %d", got, len(migrations))
		}
		if _, err := s2.GetOrg(ctx, org.ID); err != nil {
			t.Fatalf("org lost across reopen: %v", err)
		}
		s2.Close()
	}
}

func TestOpenRefusesSchemaFromNewerBinary(t *testing.T) {
	s, path := openTestStore(t)
	if _, err := s.db.Exec(`INSERT INTO schema_migrations (version, name, applied) VALUES (999, 'future', 0)`); err != nil {
		t.Fatal(err)
	}
	s.Close()
	_, err := OpenSQLite(path)
	if err == nil || !strings.Contains(err.Error(), "newer sealcache") {
		t.Fatalf("OpenSQLite on a newer schema: got %v, want an error asking for a newer sealcache", err)
	}
}

func TestOpenSQLiteConfiguresWALAndForeignKeys(t *testing.T) {
	s, _ := openTestStore(t)
	var mode string
	var fk int
	if err := s.db.QueryRow(`PRAGMA journal_mode`).Scan(&mode); err != nil {
		t.Fatal(err)
	}
	if err := s.db.QueryRow(`PRAGMA foreign_keys`).Scan(&fk); err != nil {
		t.Fatal(err)
	}
	if mode != "wal" || fk != 1 {
		t.Fatalf("journal_mode=%q foreign_keys=%d, want wal and 1", mode, fk)
	}
}

func TestOpenSQLiteRejectsBadPaths(t *testing.T) {
	for _, p := range []string{"", "x.db?mode=ro", "file:x.db"} {
		if _, err := OpenSQLite(p); err == nil {
			t.Errorf("OpenSQLite(%q) succeeded, want an error", p)
		}
	}
	if _, err := OpenSQLite(filepath.Join(t.TempDir(), "missing-dir", "meta.db")); err == nil {
		t.Error("OpenSQLite in a missing directory succeeded, want an error")
	}
}
