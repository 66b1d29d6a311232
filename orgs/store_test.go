package orgs

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sealcache/sealcache/internal/pgtest"
)

func TestMigrationsApplyOnceAndReopenKeepsData(t *testing.T) {
	eachStore(t, func(t *testing.T, st testStore) {
		ctx := context.Background()
		s := st.DB
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
			s2 := st.another(t)
			if got := countRows(s2); got != len(migrations) {
				t.Fatalf("after reopen schema_migrations has %d rows, want %d", got, len(migrations))
			}
			if _, err := s2.GetOrg(ctx, org.ID); err != nil {
				t.Fatalf("org lost across reopen: %v", err)
			}
			s2.Close()
		}
	})
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

	url := pgtest.NewDatabase(t)
	pg, err := OpenPostgres(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pg.db.Exec(`INSERT INTO schema_migrations (version, name, applied) VALUES (999, 'future', 0)`); err != nil {
		t.Fatal(err)
	}
	pg.Close()
	_, err = OpenPostgres(context.Background(), url)
	if err == nil || !strings.Contains(err.Error(), "newer sealcache") {
		t.Fatalf("OpenPostgres on a newer schema: got %v, want an error asking for a newer sealcache", err)
	}
}

func TestOpenSQLiteConfiguresWALForeignKeysAndSecureDelete(t *testing.T) {
	s, _ := openTestStore(t)
	var mode string
	var fk, secureDelete, tempStore int
	for pragma, dest := range map[string]any{
		"journal_mode": &mode, "foreign_keys": &fk, "secure_delete": &secureDelete, "temp_store": &tempStore,
	} {
		if err := s.db.QueryRow(`PRAGMA ` + pragma).Scan(dest); err != nil {
			t.Fatal(err)
		}
	}
	if mode != "wal" || fk != 1 || secureDelete != 1 || tempStore != 2 {
		t.Fatalf("journal_mode=%q foreign_keys=%d secure_delete=%d temp_store=%d, want wal, 1, 1 and 2 (memory)", mode, fk, secureDelete, tempStore)
	}
}

func TestOpenPostgresRejectsBadURLsWithoutEchoingPasswords(t *testing.T) {
	ctx := context.Background()
	_, err := OpenPostgres(ctx, "postgres://u:hunter2@127.0.0.1:1/db?sslmode=bogus")
	if !errors.Is(err, ErrInvalidArgument) || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("bad sslmode: %v, want ErrInvalidArgument without the password", err)
	}
	// Nothing listens on port 1.
	_, err = OpenPostgres(ctx, "postgres://u:hunter2@127.0.0.1:1/db?sslmode=disable&connect_timeout=5")
	if err == nil || strings.Contains(err.Error(), "hunter2") || !strings.Contains(err.Error(), "check the URL") {
		t.Errorf("unreachable server: %v, want an error saying what to check, without the password", err)
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
