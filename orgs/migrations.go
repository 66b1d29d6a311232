package orgs

import (
	"context"
	"fmt"
	"time"
)

// migration is one step of the schema. Migrations are applied in order,
// each in its own transaction together with its row in schema_migrations,
// and never edited once released: change the schema by appending a new one.
//
// Conventions, so the same text works on SQLite and PostgreSQL:
//   - times are BIGINT Unix nanoseconds, 0 meaning "never";
//   - booleans are INTEGER 0/1;
//   - {{BLOB}} and {{SERIAL_PK}} are expanded by the dialect;
//   - one statement per string (drivers differ on multi-statement Exec).
type migration struct {
	version    int
	name       string
	statements []string
	// scrubAfter: when this step is applied to a store that existed
	// before, erase deleted bytes from the whole store afterwards (see
	// DB.scrub).
	scrubAfter bool
}

var migrations = []migration{
	{
		version: 1,
		name:    "orgs, api keys, audit log, key records",
		statements: []string{
			`CREATE TABLE orgs (
				id                       TEXT PRIMARY KEY,
				name                     TEXT NOT NULL UNIQUE,
				created                  BIGINT NOT NULL,
				encryption_enabled       INTEGER NOT NULL DEFAULT 0,
				kms_last_success         BIGINT NOT NULL DEFAULT 0,
				kms_last_failure         BIGINT NOT NULL DEFAULT 0,
				kms_last_failure_message TEXT NOT NULL DEFAULT ''
			)`,
			// org_id is NULL for operator keys, which belong to no org.
			`CREATE TABLE api_keys (
				id            TEXT PRIMARY KEY,
				org_id        TEXT REFERENCES orgs(id),
				role          TEXT NOT NULL,
				label         TEXT NOT NULL,
				secret_sha256 {{BLOB}} NOT NULL,
				created       BIGINT NOT NULL,
				last_used     BIGINT NOT NULL DEFAULT 0
			)`,
			`CREATE INDEX api_keys_org_id ON api_keys (org_id)`,
			// No foreign key: operator events have org_id '' and must
			// outlive the orgs they mention.
			`CREATE TABLE audit_events (
				id           {{SERIAL_PK}},
				org_id       TEXT NOT NULL,
				actor_key_id TEXT NOT NULL,
				action       TEXT NOT NULL,
				details      TEXT NOT NULL,
				at           BIGINT NOT NULL
			)`,
			`CREATE INDEX audit_events_org_id_id ON audit_events (org_id, id)`,
			`CREATE TABLE key_records (
				key_id               TEXT PRIMARY KEY,
				org_id               TEXT NOT NULL REFERENCES orgs(id),
				customer_key_uri     TEXT NOT NULL,
				wrapped_customer_key {{BLOB}} NOT NULL,
				operator_key_uri     TEXT NOT NULL,
				wrapped_operator_key {{BLOB}} NOT NULL,
				created              BIGINT NOT NULL,
				last_rewrapped       BIGINT NOT NULL
			)`,
			`CREATE INDEX key_records_org_id ON key_records (org_id)`,
		},
	},
	{
		version: 2,
		name:    "fingerprints of shredded key material",
		statements: []string{
			// One row per wrapped key half that was deleted or replaced:
			// enough to find a copy left in the store (see shred.go),
			// nothing to rebuild it. No foreign key: the rows outlive the
			// org, like operator audit events. purged is when the store
			// last erased deleted bytes after this row was written (WAL
			// checkpoint, VACUUM FULL); 0 means not yet.
			`CREATE TABLE shredded_key_material (
				id           {{SERIAL_PK}},
				org_id       TEXT NOT NULL,
				key_id       TEXT NOT NULL,
				half         TEXT NOT NULL,
				length       BIGINT NOT NULL,
				rolling_hash BIGINT NOT NULL,
				sha256       {{BLOB}} NOT NULL,
				shredded     BIGINT NOT NULL,
				purged       BIGINT NOT NULL DEFAULT 0
			)`,
			`CREATE INDEX shredded_key_material_org_id ON shredded_key_material (org_id)`,
		},
		// Stores written before this migration deleted key records without
		// secure_delete: their old bytes may sit in free space. Rewrite the
		// files once.
		scrubAfter: true,
	},
}

// migrate brings the schema up to the last of steps (migrations, except in
// tests that build an old store). It is safe to run from several processes
// at once: each step runs in a transaction that holds the migrations lock
// (PostgreSQL advisory lock; SQLite's write lock) and checks whether
// another process applied it first.
func (s *DB) migrate(ctx context.Context, steps []migration) error {
	err := s.inTx(ctx, func(r runner) error {
		if err := r.lock(ctx, lockMigrations); err != nil {
			return err
		}
		_, err := r.exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
			version BIGINT PRIMARY KEY,
			name    TEXT NOT NULL,
			applied BIGINT NOT NULL
		)`)
		return err
	})
	if err != nil {
		return fmt.Errorf("creating schema_migrations: %w", err)
	}

	var newest int
	if err := s.run().queryRow(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&newest); err != nil {
		return fmt.Errorf("reading schema version: %w", err)
	}
	if known := steps[len(steps)-1].version; newest > known {
		return fmt.Errorf("metadata database schema is version %d but this sealcache knows only up to %d: run a newer sealcache (downgrades are not supported)", newest, known)
	}

	scrub := false
	for _, m := range steps {
		appliedNow := false
		err := s.inTx(ctx, func(r runner) error {
			if err := r.lock(ctx, lockMigrations); err != nil {
				return err
			}
			var applied int
			if err := r.queryRow(ctx, `SELECT COUNT(*) FROM schema_migrations WHERE version = ?`, m.version).Scan(&applied); err != nil {
				return err
			}
			if applied > 0 {
				return nil
			}
			for _, stmt := range m.statements {
				if _, err := r.exec(ctx, s.dialect.schema(stmt)); err != nil {
					return err
				}
			}
			_, err := r.exec(ctx, `INSERT INTO schema_migrations (version, name, applied) VALUES (?, ?, ?)`,
				m.version, m.name, toNanos(time.Now()))
			appliedNow = err == nil
			return err
		})
		if err != nil {
			return fmt.Errorf("applying schema migration %d (%s): %w", m.version, m.name, err)
		}
		// newest > 0: the store held data before this open.
		scrub = scrub || appliedNow && m.scrubAfter && newest > 0
	}
	if scrub {
		if err := s.scrub(ctx); err != nil {
			return fmt.Errorf("erasing deleted data after upgrading the schema: %w", err)
		}
	}
	return nil
}
