package orgs

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/jackc/pgx/v5"
)

// Crypto-shredding in the metadata store.
//
// An org's data is readable only with both wrapped halves of its key
// record. Deleting the record must therefore erase those bytes from every
// file the store keeps, not just mark them free:
//
//   - SQLite runs with secure_delete on (deleted cells and freed pages are
//     overwritten with zeros) and, after every change that deletes or
//     replaces key material, checkpoints the WAL with TRUNCATE, so older
//     page versions in the -wal file go too. The -shm file holds only the
//     WAL index (page numbers), never row bytes.
//   - PostgreSQL: the DELETE is followed by VACUUM FULL of key_records,
//     outside the transaction, which rewrites the table without the dead
//     row versions (see rewriteKeyRecords for why not a plain VACUUM).
//
// Each deleted or replaced half leaves a fingerprint (fingerprint.go) in
// shredded_key_material, written in the same transaction as the delete, so
// LeftoverKeyMaterial can later prove that no copy remains.
//
// What this cannot reach, and README must say: copies outside the
// server's control. Backups and file-system snapshots of metadata.db taken
// while a key record existed keep it; on PostgreSQL, the server's WAL
// segments keep the inserted row until they are recycled, WAL archives and
// base backups (point-in-time recovery) keep it for as long as they are
// retained; streaming replicas replay the rewrite, but logical replicas,
// dumps (pg_dump) and storage snapshots are copies of their own. Against
// those copies the guarantee is the KMS: once the customer disables or
// destroys their KMS key (or the operator its own), no copy of a wrapped
// half can be unwrapped. Erasing the halves here is what makes disabling
// CMEK effective without that step, for everything the server controls.

// shredHalves records fingerprints of a key record's two wrapped halves
// (deleted or replaced by the current transaction) and zeroes them.
func (r runner) shredHalves(ctx context.Context, orgID, keyID string, customer, operator []byte, at time.Time) error {
	defer clear(customer)
	defer clear(operator)
	for _, h := range []struct {
		name    string
		wrapped []byte
	}{{halfCustomer, customer}, {halfOperator, operator}} {
		if len(h.wrapped) == 0 {
			continue
		}
		fp := fingerprintOf(orgID, keyID, h.name, h.wrapped, at)
		_, err := r.exec(ctx, `INSERT INTO shredded_key_material (org_id, key_id, half, length, rolling_hash, sha256, shredded)
			VALUES (?, ?, ?, ?, ?, ?, ?)`,
			fp.OrgID, fp.KeyID, fp.Half, fp.Length, int64(fp.RollingHash), fp.SHA256[:], toNanos(fp.Shredded))
		if err != nil {
			return fmt.Errorf("recording the fingerprint of a shredded key: %w", err)
		}
	}
	return nil
}

// deleteKeyRecords deletes every key record of the org and fingerprints
// every half deleted, in the caller's transaction. It reports how many records went.
func (r runner) deleteKeyRecords(ctx context.Context, orgID string, at time.Time) (int, error) {
	rows, err := r.query(ctx, `DELETE FROM key_records WHERE org_id = ? RETURNING key_id, wrapped_customer_key, wrapped_operator_key`, orgID)
	if err != nil {
		return 0, err
	}
	type deleted struct {
		keyID              string
		customer, operator []byte
	}
	var gone []deleted
	for rows.Next() {
		var d deleted
		if err := rows.Scan(&d.keyID, &d.customer, &d.operator); err != nil {
			rows.Close()
			return 0, err
		}
		gone = append(gone, d)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, err
	}
	for _, d := range gone {
		if err := r.shredHalves(ctx, orgID, d.keyID, d.customer, d.operator, at); err != nil {
			return 0, err
		}
	}
	return len(gone), nil
}

// PurgeDeletedKeyMaterial erases from the store's files what deleted key
// records left behind: on SQLite it checkpoints and truncates the WAL, on
// PostgreSQL it rewrites key_records (VACUUM FULL). Every change that deletes key
// material (DisableKeys, EnableKey replacing a record, UpdateWrappedKeys,
// DeleteOrg) runs it; call it yourself only to finish after one of those
// reported that this step failed, or after LeftoverKeyMaterial found
// something.
func (s *DB) PurgeDeletedKeyMaterial(ctx context.Context) error {
	// Fingerprints written before the purge starts are covered by it.
	var upTo int64
	if err := s.run().queryRow(ctx, `SELECT COALESCE(MAX(id), 0) FROM shredded_key_material`).Scan(&upTo); err != nil {
		return fmt.Errorf("erasing deleted key material: %w", err)
	}
	if err := s.dialect.purgeDeleted(ctx, s.db); err != nil {
		return fmt.Errorf("erasing deleted key material from the metadata store's files: %w", err)
	}
	_, err := s.run().exec(ctx, `UPDATE shredded_key_material SET purged = ? WHERE purged = 0 AND id <= ?`, toNanos(time.Now()), upTo)
	if err != nil {
		return fmt.Errorf("recording the erasure of deleted key material: %w", err)
	}
	return nil
}

// afterShred runs PurgeDeletedKeyMaterial after a committed change that
// deleted key material, and explains a failure in terms of that change.
func (s *DB) afterShred(ctx context.Context, what string) error {
	if err := s.PurgeDeletedKeyMaterial(ctx); err != nil {
		return fmt.Errorf("%s: done, and the key records are gone, but their bytes may remain in the store's files: %w; run it again to finish", what, err)
	}
	return nil
}

// checkpointSQLite copies the WAL into the database file and truncates
// the WAL to zero bytes, so no older version of a page survives in it.
func checkpointSQLite(ctx context.Context, db *sql.DB) error {
	var busy, logFrames, checkpointed int
	if err := db.QueryRowContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`).Scan(&busy, &logFrames, &checkpointed); err != nil {
		return fmt.Errorf("WAL checkpoint: %w", err)
	}
	if busy != 0 {
		return errors.New("WAL checkpoint could not finish: another process (such as `sealcache admin`) kept the database busy for longer than the busy timeout")
	}
	return nil
}

// scrubSQLite rewrites the whole database file (VACUUM: free pages and
// unused space within pages are not carried over), then truncates the
// WAL. For stores written before secure_delete was on.
func scrubSQLite(ctx context.Context, db *sql.DB) error {
	if _, err := db.ExecContext(ctx, `VACUUM`); err != nil {
		return fmt.Errorf("VACUUM: %w", err)
	}
	return checkpointSQLite(ctx, db)
}

// rewriteKeyRecords rewrites key_records into a new file (VACUUM FULL)
// after the delete committed (VACUUM cannot run inside a transaction).
//
// A plain VACUUM is not enough: it makes the space of removed rows free
// but leaves their bytes in the page until something overwrites them
// (TestPostgresShredLeavesNoCopyInTableFiles shows both). VACUUM FULL
// copies the live rows into a new file and truncates the old one. The
// table holds one small row per CMEK org, so the rewrite takes
// milliseconds; it holds an exclusive lock meanwhile, and gives up after
// postgresRewriteLockTimeout rather than queue readers behind a long
// transaction (the caller then reports that the purge must be re-run).
func rewriteKeyRecords(ctx context.Context, db *sql.DB) error {
	conn, err := db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, fmt.Sprintf(`SET lock_timeout = %d`, postgresRewriteLockTimeout.Milliseconds())); err != nil {
		return err
	}
	// The connection goes back to the pool: restore the default whatever
	// happens.
	defer conn.ExecContext(context.WithoutCancel(ctx), `RESET lock_timeout`)
	if _, err := conn.ExecContext(ctx, `VACUUM FULL key_records`); err != nil {
		return fmt.Errorf("VACUUM FULL key_records: %w", err)
	}
	return nil
}

// postgresRewriteLockTimeout bounds the wait for key_records' lock.
const postgresRewriteLockTimeout = 5 * time.Second

// scrub erases deleted data from the whole store once (see migration 2).
func (s *DB) scrub(ctx context.Context) error {
	if s.dialect.scrub == nil {
		return nil
	}
	return s.dialect.scrub(ctx, s.db)
}

// Finding is a place where LeftoverKeyMaterial found a deleted wrapped key
// half, or found that one may remain.
type Finding struct {
	OrgID    string
	KeyID    string    // the CMEK key record the half belonged to
	Half     string    // "customer" or "operator"
	Shredded time.Time // when the half was deleted or replaced
	// Where is the place: a file of the store (SQLite), a column of a
	// live row "table.column" (PostgreSQL), or "key_records table files"
	// (PostgreSQL, not rewritten since the delete).
	Where  string
	Offset int64 // byte offset of the first copy in the file Where; -1 when Where is no file
	Copies int   // copies found in that place (0 when only possibly there)
	// Problem says what was found and what to do next.
	Problem string
}

// LeftoverKeyMaterial looks in the metadata store for any copy of the
// org's deleted wrapped key halves (every half ever deleted or replaced
// by a re-wrap, through their fingerprints) and returns where it found
// one; none means the shred holds in the store. orgID may be that of a
// deleted org.
//
//   - SQLite: the database, -wal, -shm (and -journal, if any) files are
//     read directly, byte by byte, wherever a copy might hide: live rows of
//     any table, free space in pages, freelist and overflow pages, old WAL
//     frames.
//   - PostgreSQL: the server's files cannot be read from here. It reports
//     any live row, in any BYTEA column of the store's schema, that holds a
//     deleted half, and every deleted half after whose delete key_records
//     was not rewritten (VACUUM FULL). The server's WAL keeps the inserted
//     rows until its segments are recycled; see the notes at the top of
//     shred.go on copies outside the server's control.
//
// The fingerprints are kept when the org is deleted, like the operator's
// audit events: they are the record that the org's keys were shredded,
// they let this check run for a deleted org, and they reveal nothing
// about the keys (see keyFingerprint).
func (s *DB) LeftoverKeyMaterial(ctx context.Context, orgID string) ([]Finding, error) {
	if orgID == "" {
		return nil, fmt.Errorf("%w: checking for leftover key material needs an org id", ErrInvalidArgument)
	}
	fps, err := s.fingerprints(ctx, orgID)
	if err != nil {
		return nil, fmt.Errorf("checking for leftover key material of org %q: %w", orgID, err)
	}
	if len(fps) == 0 {
		return nil, nil
	}
	findings, err := s.dialect.findLeftovers(ctx, s, newFingerprintScanner(fps))
	if err != nil {
		return nil, fmt.Errorf("checking for leftover key material of org %q: %w", orgID, err)
	}
	return findings, nil
}

func (s *DB) fingerprints(ctx context.Context, orgID string) ([]keyFingerprint, error) {
	rows, err := s.run().query(ctx, `SELECT org_id, key_id, half, length, rolling_hash, sha256, shredded, purged
		FROM shredded_key_material WHERE org_id = ? ORDER BY id`, orgID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []keyFingerprint
	for rows.Next() {
		var fp keyFingerprint
		var hash, shredded, purged int64
		var sum []byte
		if err := rows.Scan(&fp.OrgID, &fp.KeyID, &fp.Half, &fp.Length, &hash, &sum, &shredded, &purged); err != nil {
			return nil, err
		}
		if len(sum) != len(fp.SHA256) {
			return nil, fmt.Errorf("fingerprint of key %s has a %d-byte SHA-256", fp.KeyID, len(sum))
		}
		fp.RollingHash, fp.Shredded, fp.Purged = uint64(hash), fromNanos(shredded), fromNanos(purged)
		copy(fp.SHA256[:], sum)
		out = append(out, fp)
	}
	return out, rows.Err()
}

// findingCollector merges copies of one half in one place into one Finding.
type findingCollector struct {
	list  []Finding
	index map[findingPlace]int // -> list index
}

// findingPlace is one fingerprinted half in one place.
type findingPlace struct {
	where string
	fp    *keyFingerprint
}

func (c *findingCollector) add(fp *keyFingerprint, where string, offset int64, problem string) {
	if c.index == nil {
		c.index = map[findingPlace]int{}
	}
	k := findingPlace{where, fp}
	if i, ok := c.index[k]; ok {
		c.list[i].Copies++
		return
	}
	c.index[k] = len(c.list)
	c.list = append(c.list, Finding{
		OrgID: fp.OrgID, KeyID: fp.KeyID, Half: fp.Half, Shredded: fp.Shredded,
		Where: where, Offset: offset, Copies: 1, Problem: problem,
	})
}

// leftoversInSQLiteFiles reads the store's files directly.
func leftoversInSQLiteFiles(ctx context.Context, s *DB, sc *fingerprintScanner) ([]Finding, error) {
	var c findingCollector
	for _, path := range []string{s.sqlitePath, s.sqlitePath + "-wal", s.sqlitePath + "-shm", s.sqlitePath + "-journal"} {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		f, err := os.Open(path)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		err = sc.scan(f, func(fp *keyFingerprint, offset int64) {
			c.add(fp, path, offset, fmt.Sprintf("a copy of the deleted %s half of key %s is still in %s: run PurgeDeletedKeyMaterial; if it stays, rebuild the file with VACUUM while the server is stopped", fp.Half, fp.KeyID, path))
		})
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", path, err)
		}
	}
	return c.list, nil
}

// leftoversInPostgres looks at live rows and at the vacuum record.
func leftoversInPostgres(ctx context.Context, s *DB, sc *fingerprintScanner) ([]Finding, error) {
	var c findingCollector
	for _, fp := range sc.all() {
		if fp.Purged.IsZero() {
			// Only possibly there: no copy was seen, so Copies is 0.
			c.list = append(c.list, Finding{
				OrgID: fp.OrgID, KeyID: fp.KeyID, Half: fp.Half, Shredded: fp.Shredded,
				Where: "key_records table files", Offset: -1,
				Problem: fmt.Sprintf("key_records was not rewritten since the %s half of key %s was deleted: its files may still hold the bytes; run PurgeDeletedKeyMaterial (VACUUM FULL key_records)", fp.Half, fp.KeyID),
			})
		}
	}

	cols, err := s.run().query(ctx, `SELECT table_name, column_name FROM information_schema.columns
		WHERE table_schema = current_schema() AND data_type = 'bytea' ORDER BY table_name, column_name`)
	if err != nil {
		return nil, err
	}
	var places [][2]string
	for cols.Next() {
		var table, column string
		if err := cols.Scan(&table, &column); err != nil {
			cols.Close()
			return nil, err
		}
		places = append(places, [2]string{table, column})
	}
	cols.Close()
	if err := cols.Err(); err != nil {
		return nil, err
	}
	for _, p := range places {
		if err := scanPostgresColumn(ctx, s, sc, p[0], p[1], &c); err != nil {
			return nil, fmt.Errorf("reading %s.%s: %w", p[0], p[1], err)
		}
	}
	return c.list, nil
}

func scanPostgresColumn(ctx context.Context, s *DB, sc *fingerprintScanner, table, column string, c *findingCollector) error {
	col := pgx.Identifier{column}.Sanitize()
	rows, err := s.db.QueryContext(ctx, `SELECT `+col+` FROM `+pgx.Identifier{table}.Sanitize()+` WHERE `+col+` IS NOT NULL`)
	if err != nil {
		return err
	}
	defer rows.Close()
	where := table + "." + column
	var value []byte
	defer func() { clear(value) }()
	for rows.Next() {
		clear(value)
		if err := rows.Scan(&value); err != nil {
			return err
		}
		err := sc.scan(bytes.NewReader(value), func(fp *keyFingerprint, _ int64) {
			c.add(fp, where, -1, fmt.Sprintf("a live row of %s holds the deleted %s half of key %s: find and delete that row, then run PurgeDeletedKeyMaterial", where, fp.Half, fp.KeyID))
		})
		if err != nil {
			return err
		}
	}
	return rows.Err()
}
