package orgs

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sealcache/sealcache/encryption"
)

// randomKeyRecord is a key record whose wrapped halves are random bytes of
// the given length, like KMS ciphertexts (and unlike testKeyRecord's
// readable ones, which would collide with each other's prefixes).
func randomKeyRecord(orgID, keyID string, length int) encryption.KeyRecord {
	rec := testKeyRecord(orgID, keyID)
	rec.WrappedCustomerKey = randomBytes(length)
	rec.WrappedOperatorKey = randomBytes(length)
	return rec
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// storeFiles reads every file in dir: everything the store left on disk.
func storeFiles(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		files[e.Name()] = b
	}
	return files
}

// whereFound names the files that contain needle.
func whereFound(files map[string][]byte, needle []byte) []string {
	var in []string
	for name, b := range files {
		if bytes.Contains(b, needle) {
			in = append(in, name)
		}
	}
	return in
}

// TestDeletedKeyMaterialLeavesNoBytesInTheSQLiteFiles is issue 9, A.1:
// once key material is deleted (CMEK disabled, a key replaced or
// re-wrapped, an org deleted), no file of the store holds any wrapped half
// ever stored: not while the server runs (as a crash would leave the
// files, WAL included), not after it stopped. Large halves live in
// overflow pages, which go to the freelist when deleted.
func TestDeletedKeyMaterialLeavesNoBytesInTheSQLiteFiles(t *testing.T) {
	ctx := context.Background()
	type shred func(t *testing.T, s *DB, org Org) (gone [][]byte)
	scenarios := map[string]shred{
		"disable": func(t *testing.T, s *DB, org Org) [][]byte {
			rec := enableRandomKey(t, s, org.ID, "k1", 72)
			mustSucceed(t, s.DisableKeys(ctx, org.ID))
			return halves(rec)
		},
		"re-enable replaces, then disable": func(t *testing.T, s *DB, org Org) [][]byte {
			first := enableRandomKey(t, s, org.ID, "k1", 72)
			second := enableRandomKey(t, s, org.ID, "k2", 72)
			mustSucceed(t, s.DisableKeys(ctx, org.ID))
			return append(halves(first), halves(second)...)
		},
		"re-wrap, then disable": func(t *testing.T, s *DB, org Org) [][]byte {
			rec := enableRandomKey(t, s, org.ID, "k1", 72)
			// A re-wrap may change the length (a longer KMS key version name).
			c, o := randomBytes(72), randomBytes(90)
			mustSucceed(t, s.UpdateWrappedKeys(ctx, rec.KeyID, c, o, time.Now()))
			mustSucceed(t, s.DisableKeys(ctx, org.ID))
			return append(halves(rec), c, o)
		},
		"delete org": func(t *testing.T, s *DB, org Org) [][]byte {
			rec := enableRandomKey(t, s, org.ID, "k1", 72)
			mustSucceed(t, s.DeleteOrg(ctx, org.ID))
			return halves(rec)
		},
		"overflow pages: large halves, re-wrapped, then disable": func(t *testing.T, s *DB, org Org) [][]byte {
			rec := enableRandomKey(t, s, org.ID, "k1", 6000) // > one 4 KiB page
			c, o := randomBytes(6000), randomBytes(9000)
			mustSucceed(t, s.UpdateWrappedKeys(ctx, rec.KeyID, c, o, time.Now()))
			mustSucceed(t, s.DisableKeys(ctx, org.ID))
			return append(halves(rec), c, o)
		},
	}
	for name, scenario := range scenarios {
		t.Run(name, func(t *testing.T) {
			s, path := openTestStore(t)
			bystander := enableRandomKey(t, s, mustCreateOrg(t, s, "bystander").ID, "kbystander", 72)
			gone := scenario(t, s, mustCreateOrg(t, s, "acme"))

			check := func(when string) {
				t.Helper()
				files := storeFiles(t, filepath.Dir(path))
				if in := whereFound(files, bystander.WrappedCustomerKey); len(in) == 0 {
					t.Fatalf("%s: a live key record is in none of the files %v: this test is not looking at the right bytes", when, keys(files))
				}
				for i, half := range gone {
					if in := whereFound(files, half); len(in) > 0 {
						t.Errorf("%s: deleted wrapped half #%d (%d bytes) is still in %v", when, i, len(half), in)
					}
				}
			}
			check("while the server runs")
			mustSucceed(t, s.Close())
			check("after the server stopped")
		})
	}
}

func enableRandomKey(t *testing.T, s *DB, orgID, keyID string, length int) encryption.KeyRecord {
	t.Helper()
	rec := randomKeyRecord(orgID, keyID, length)
	if err := s.EnableKey(context.Background(), rec); err != nil {
		t.Fatalf("EnableKey: %v", err)
	}
	return rec
}

func halves(rec encryption.KeyRecord) [][]byte {
	return [][]byte{rec.WrappedCustomerKey, rec.WrappedOperatorKey}
}

func mustSucceed(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func keys(m map[string][]byte) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestLeftoverKeyMaterialFindsNothingAfterANormalDisable: the check that
// backs shred-check, on both databases, for every path that deletes key
// material; and the fingerprints outlive the org.
func TestLeftoverKeyMaterialFindsNothingAfterANormalDisable(t *testing.T) {
	eachStore(t, func(t *testing.T, st testStore) {
		ctx := context.Background()
		s := st.DB
		org := mustCreateOrg(t, s, "acme")
		first := enableRandomKey(t, s, org.ID, "kfirst", 72)
		if err := s.UpdateWrappedKeys(ctx, first.KeyID, randomBytes(72), randomBytes(72), time.Now()); err != nil {
			t.Fatal(err)
		}
		enableRandomKey(t, s, org.ID, "ksecond", 3000)
		// The live record of an org is not leftover material.
		if found, err := s.LeftoverKeyMaterial(ctx, org.ID); err != nil || len(found) != 0 {
			t.Fatalf("with CMEK on after a re-wrap and a key change: LeftoverKeyMaterial = %+v, %v; want nothing", found, err)
		}
		if err := s.DisableKeys(ctx, org.ID); err != nil {
			t.Fatal(err)
		}
		if found, err := s.LeftoverKeyMaterial(ctx, org.ID); err != nil || len(found) != 0 {
			t.Fatalf("after disable: LeftoverKeyMaterial = %+v, %v; want nothing", found, err)
		}
		// 3 versions of the record were deleted or replaced, 2 halves each.
		if fps, err := s.fingerprints(ctx, org.ID); err != nil || len(fps) != 6 {
			t.Fatalf("fingerprints = %d, %v; want 6", len(fps), err)
		}

		if err := s.DeleteOrg(ctx, org.ID); err != nil {
			t.Fatal(err)
		}
		if fps, err := s.fingerprints(ctx, org.ID); err != nil || len(fps) != 6 {
			t.Errorf("after DeleteOrg: %d fingerprints, %v; want the 6 kept", len(fps), err)
		}
		if found, err := s.LeftoverKeyMaterial(ctx, org.ID); err != nil || len(found) != 0 {
			t.Errorf("for the deleted org: LeftoverKeyMaterial = %+v, %v; want nothing", found, err)
		}
		if _, err := s.LeftoverKeyMaterial(ctx, ""); err == nil {
			t.Error("LeftoverKeyMaterial(\"\") succeeded, want an error asking for an org id")
		}
	})
}

// TestLeftoverKeyMaterialFindsCopiesInSQLiteFiles: written without secure
// delete, the deleted halves stay in free space and the check finds them,
// with the file and offset; so does a copy in another table.
func TestLeftoverKeyMaterialFindsCopiesInSQLiteFiles(t *testing.T) {
	ctx := context.Background()

	t.Run("without secure delete", func(t *testing.T) {
		s, path := openTestStore(t)
		// The pool has one connection: this turns secure delete off for
		// every statement that follows.
		if _, err := s.db.Exec(`PRAGMA secure_delete = 0`); err != nil {
			t.Fatal(err)
		}
		org := mustCreateOrg(t, s, "acme")
		rec := enableRandomKey(t, s, org.ID, "k1", 72)
		if err := s.DisableKeys(ctx, org.ID); err != nil {
			t.Fatal(err)
		}
		found, err := s.LeftoverKeyMaterial(ctx, org.ID)
		if err != nil {
			t.Fatal(err)
		}
		halves := map[string]bool{}
		for _, f := range found {
			b, err := os.ReadFile(f.Where)
			if err != nil || f.Offset < 0 || !bytes.Contains(b[f.Offset:], rec.WrappedCustomerKey[:0]) {
				t.Fatalf("finding %+v does not name a readable file and offset", f)
			}
			want := rec.WrappedCustomerKey
			if f.Half == halfOperator {
				want = rec.WrappedOperatorKey
			}
			if !bytes.Equal(b[f.Offset:f.Offset+int64(len(want))], want) {
				t.Errorf("finding %+v: the bytes at that offset are not the %s half", f, f.Half)
			}
			if f.OrgID != org.ID || f.KeyID != "k1" || f.Copies < 1 || !strings.Contains(f.Problem, "PurgeDeletedKeyMaterial") {
				t.Errorf("finding %+v lacks the org, key, copies or what to do", f)
			}
			halves[f.Half] = true
		}
		if !halves[halfCustomer] || !halves[halfOperator] || !strings.HasPrefix(found[0].Where, path) {
			t.Fatalf("LeftoverKeyMaterial = %+v, want both halves found in the store's files", found)
		}
	})

	t.Run("copied into another table", func(t *testing.T) {
		s, _ := openTestStore(t)
		org := mustCreateOrg(t, s, "acme")
		rec := enableRandomKey(t, s, org.ID, "k1", 72)
		if _, err := s.db.Exec(`CREATE TABLE stash (b BLOB)`); err != nil {
			t.Fatal(err)
		}
		if _, err := s.db.Exec(`INSERT INTO stash (b) VALUES (?)`, append([]byte("prefix"), rec.WrappedOperatorKey...)); err != nil {
			t.Fatal(err)
		}
		if err := s.DisableKeys(ctx, org.ID); err != nil {
			t.Fatal(err)
		}
		found, err := s.LeftoverKeyMaterial(ctx, org.ID)
		if err != nil || len(found) != 1 || found[0].Half != halfOperator {
			t.Fatalf("LeftoverKeyMaterial = %+v, %v; want the operator half, in the copy", found, err)
		}
	})
}

// TestLeftoverKeyMaterialOnPostgres: the server's files are out of reach,
// so the check reports live rows holding a deleted half (in any BYTEA
// column) and deletes after which key_records was not rewritten.
func TestLeftoverKeyMaterialOnPostgres(t *testing.T) {
	ctx := context.Background()
	st := storeKinds[1].open(t)
	s := st.DB
	org := mustCreateOrg(t, s, "acme")
	rec := enableRandomKey(t, s, org.ID, "k1", 72)
	if _, err := s.db.Exec(`CREATE TABLE stash (id INTEGER, b BYTEA)`); err != nil {
		t.Fatal(err)
	}
	if _, err := s.db.Exec(`INSERT INTO stash (id, b) VALUES (1, $1)`, append([]byte("prefix"), rec.WrappedCustomerKey...)); err != nil {
		t.Fatal(err)
	}
	if err := s.DisableKeys(ctx, org.ID); err != nil {
		t.Fatal(err)
	}
	found, err := s.LeftoverKeyMaterial(ctx, org.ID)
	if err != nil || len(found) != 1 || found[0].Where != "stash.b" || found[0].Half != halfCustomer {
		t.Fatalf("LeftoverKeyMaterial = %+v, %v; want the customer half in stash.b", found, err)
	}

	// As if the rewrite after the delete had failed.
	if _, err := s.db.Exec(`UPDATE shredded_key_material SET purged = 0`); err != nil {
		t.Fatal(err)
	}
	if _, err := s.db.Exec(`DELETE FROM stash`); err != nil {
		t.Fatal(err)
	}
	found, err = s.LeftoverKeyMaterial(ctx, org.ID)
	if err != nil || len(found) != 2 || found[0].Where != "key_records table files" || found[0].Copies != 0 {
		t.Fatalf("LeftoverKeyMaterial = %+v, %v; want both halves reported as not rewritten since the delete", found, err)
	}
	if err := s.PurgeDeletedKeyMaterial(ctx); err != nil {
		t.Fatal(err)
	}
	if found, err := s.LeftoverKeyMaterial(ctx, org.ID); err != nil || len(found) != 0 {
		t.Fatalf("after PurgeDeletedKeyMaterial: %+v, %v; want nothing", found, err)
	}
}

// TestPostgresShredLeavesNoCopyInTableFiles reads the PostgreSQL server's
// own files (the test server runs on this machine and we may read them):
// after DisableKeys, key_records' files hold no deleted half. It also
// logs what a plain VACUUM would have left, which is why the purge uses
// VACUUM FULL. The server's WAL (pg_wal) still holds the inserted rows:
// that is the copy README tells operators about.
func TestPostgresShredLeavesNoCopyInTableFiles(t *testing.T) {
	ctx := context.Background()
	s := storeKinds[1].open(t).DB
	var dataDir string
	if err := s.db.QueryRow(`SHOW data_directory`).Scan(&dataDir); err != nil {
		t.Skipf("cannot learn the server's data directory: %v", err)
	}
	tableFiles := func() []byte {
		t.Helper()
		if _, err := s.db.Exec(`CHECKPOINT`); err != nil { // dirty pages to disk
			t.Fatal(err)
		}
		var all []byte
		rows, err := s.db.Query(`SELECT pg_relation_filepath(c.oid) FROM pg_class c
			WHERE c.oid = 'key_records'::regclass OR c.oid = (SELECT reltoastrelid FROM pg_class WHERE oid = 'key_records'::regclass)`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		for rows.Next() {
			var rel string
			if err := rows.Scan(&rel); err != nil {
				t.Fatal(err)
			}
			matches, _ := filepath.Glob(filepath.Join(dataDir, rel) + "*") // every fork and segment
			for _, m := range matches {
				b, err := os.ReadFile(m)
				if err != nil {
					t.Skipf("cannot read the server's files: %v", err)
				}
				all = append(all, b...)
			}
		}
		return all
	}

	org := mustCreateOrg(t, s, "acme")
	other := mustCreateOrg(t, s, "other")
	live := enableRandomKey(t, s, other.ID, "klive", 72)

	plain := enableRandomKey(t, s, org.ID, "kplain", 72)
	if _, err := s.db.Exec(`DELETE FROM key_records WHERE key_id = 'kplain'`); err != nil {
		t.Fatal(err)
	}
	if _, err := s.db.Exec(`VACUUM key_records`); err != nil {
		t.Fatal(err)
	}
	t.Logf("after DELETE and a plain VACUUM, key_records' files still hold the deleted half: %v",
		bytes.Contains(tableFiles(), plain.WrappedCustomerKey))

	rec := enableRandomKey(t, s, org.ID, "k1", 72)
	if err := s.UpdateWrappedKeys(ctx, rec.KeyID, randomBytes(72), randomBytes(72), time.Now()); err != nil {
		t.Fatal(err)
	}
	current, _ := s.CurrentKey(ctx, org.ID)
	if err := s.DisableKeys(ctx, org.ID); err != nil {
		t.Fatal(err)
	}
	files := tableFiles()
	if !bytes.Contains(files, live.WrappedCustomerKey) {
		t.Fatal("the live record is not in key_records' files: this test is not looking at the right bytes")
	}
	for _, half := range [][]byte{plain.WrappedCustomerKey, plain.WrappedOperatorKey, rec.WrappedCustomerKey, rec.WrappedOperatorKey, current.WrappedCustomerKey, current.WrappedOperatorKey} {
		if bytes.Contains(files, half) {
			t.Error("a deleted wrapped half is still in key_records' files")
		}
	}
}

// TestUpgradeErasesKeysDeletedBeforeSecureDelete: a store written by an
// older sealcache (schema 1, no secure delete) still holds the bytes of
// key records it deleted; opening it with this one rewrites the files.
func TestUpgradeErasesKeysDeletedBeforeSecureDelete(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "meta.db")
	params := url.Values{"_journal_mode": {"WAL"}, "_txlock": {"immediate"}, "_pragma": {"secure_delete(0)"}}
	raw, err := sql.Open("sqlite", path+"?"+params.Encode())
	if err != nil {
		t.Fatal(err)
	}
	raw.SetMaxOpenConns(1)
	old := newDB(raw, sqliteDialect)
	if err := old.migrate(ctx, migrations[:1]); err != nil {
		t.Fatal(err)
	}
	org := mustCreateOrg(t, old, "acme")
	rec := randomKeyRecord(org.ID, "k1", 72)
	// What schema-1 code did: insert, later delete.
	if _, err := raw.Exec(`INSERT INTO key_records (`+keyRecordColumns+`) VALUES (?, ?, ?, ?, ?, ?, 0, 0)`,
		rec.KeyID, rec.OrgID, rec.CustomerKeyURI, rec.WrappedCustomerKey, rec.OperatorKeyURI, rec.WrappedOperatorKey); err != nil {
		t.Fatal(err)
	}
	if _, err := raw.Exec(`DELETE FROM key_records`); err != nil {
		t.Fatal(err)
	}
	if _, err := raw.Exec(`PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
		t.Fatal(err)
	}
	old.Close()
	if in := whereFound(storeFiles(t, filepath.Dir(path)), rec.WrappedCustomerKey); len(in) == 0 {
		t.Fatal("the old store does not hold the deleted half: this test does not reproduce an old store")
	}

	s, err := OpenSQLite(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetOrg(ctx, org.ID); err != nil {
		t.Fatalf("org lost in the upgrade: %v", err)
	}
	s.Close()
	if in := whereFound(storeFiles(t, filepath.Dir(path)), rec.WrappedCustomerKey); len(in) > 0 {
		t.Fatalf("after the upgrade the deleted half is still in %v", in)
	}
}
