package pgindex

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// migrationLockID is the transaction-level advisory lock held while the
// schema is migrated, so nodes starting together migrate one at a time.
// It differs from every other advisory lock Sealcache takes.
const migrationLockID int64 = 0x5ea1cac4e1d0001

// migrations are applied in order, each once, in one transaction per
// start. Never edit an applied migration: append a new one.
var migrations = []string{
	// 1: objects, usage counters, tombstones, the write sequence and the
	// function that commits a write.
	`
CREATE TABLE sealcache_objects (
	partition   text COLLATE "C" NOT NULL,
	kind        smallint NOT NULL,
	instance    text COLLATE "C" NOT NULL,
	digest_fn   smallint NOT NULL,
	hash        bytea NOT NULL,
	size        bigint NOT NULL,
	stored_size bigint NOT NULL,
	created     timestamptz NOT NULL,
	last_access timestamptz NOT NULL,
	PRIMARY KEY (partition, kind, instance, digest_fn, hash, size)
);
CREATE INDEX sealcache_objects_lru ON sealcache_objects (last_access);

CREATE TABLE sealcache_usage (
	org     text COLLATE "C" NOT NULL,
	shard   integer NOT NULL,
	objects bigint NOT NULL,
	bytes   bigint NOT NULL,
	PRIMARY KEY (org, shard)
);

-- Usage counters follow every statement on sealcache_objects. Each
-- connection adds to its own shard row (backend pid mod 16), so writers on
-- many connections do not queue on one counter row.
CREATE FUNCTION sealcache_usage_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO sealcache_usage AS u (org, shard, objects, bytes)
	SELECT split_part(partition, '/', 1), pg_backend_pid() % 16, count(*), sum(stored_size)
	FROM new_rows GROUP BY 1
	ON CONFLICT (org, shard) DO UPDATE SET objects = u.objects + EXCLUDED.objects, bytes = u.bytes + EXCLUDED.bytes;
	RETURN NULL;
END $$;
CREATE FUNCTION sealcache_usage_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO sealcache_usage AS u (org, shard, objects, bytes)
	SELECT split_part(partition, '/', 1), pg_backend_pid() % 16, -count(*), -sum(stored_size)
	FROM old_rows GROUP BY 1
	ON CONFLICT (org, shard) DO UPDATE SET objects = u.objects + EXCLUDED.objects, bytes = u.bytes + EXCLUDED.bytes;
	RETURN NULL;
END $$;
-- Updates change sizes only when an object is overwritten; access time
-- updates leave the counters alone (HAVING drops zero changes).
CREATE FUNCTION sealcache_usage_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO sealcache_usage AS u (org, shard, objects, bytes)
	SELECT org, pg_backend_pid() % 16, 0, sum(delta) FROM (
		SELECT split_part(partition, '/', 1) AS org, stored_size AS delta FROM new_rows
		UNION ALL
		SELECT split_part(partition, '/', 1), -stored_size FROM old_rows
	) changes GROUP BY org HAVING sum(delta) <> 0
	ON CONFLICT (org, shard) DO UPDATE SET bytes = u.bytes + EXCLUDED.bytes;
	RETURN NULL;
END $$;
CREATE TRIGGER sealcache_objects_inserted AFTER INSERT ON sealcache_objects
	REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION sealcache_usage_inserted();
CREATE TRIGGER sealcache_objects_deleted AFTER DELETE ON sealcache_objects
	REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION sealcache_usage_deleted();
CREATE TRIGGER sealcache_objects_updated AFTER UPDATE ON sealcache_objects
	REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION sealcache_usage_updated();

CREATE SEQUENCE sealcache_write_seq;

CREATE TABLE sealcache_deleted_objects (
	partition text COLLATE "C" NOT NULL,
	kind      smallint NOT NULL,
	instance  text COLLATE "C" NOT NULL,
	digest_fn smallint NOT NULL,
	hash      bytea NOT NULL,
	size      bigint NOT NULL,
	gen       bigint NOT NULL, -- which delete wrote the tombstone: only it may finish it
	started   timestamptz NOT NULL,
	done      bigint,          -- sealcache_write_seq after the object was deleted
	done_at   timestamptz,
	PRIMARY KEY (partition, kind, instance, digest_fn, hash, size)
);
CREATE INDEX sealcache_deleted_objects_started ON sealcache_deleted_objects (started);

CREATE TABLE sealcache_deleted_partitions (
	id        bigserial PRIMARY KEY,
	partition text COLLATE "C" NOT NULL,
	started   timestamptz NOT NULL,
	done      bigint,
	done_at   timestamptz
);

-- sealcache_commit_write publishes a written object's row, unless a delete
-- that may have removed the object's bytes overlapped the write (see
-- doc.go). The check runs after the upsert, in a new snapshot (this is a
-- volatile function), so it sees every delete that committed while the
-- upsert waited for the row. The shared org lock makes a delete of rows
-- that do not exist yet (Delete of one key, DeletePartition) wait until
-- commits in progress are done before it writes its tombstone.
CREATE FUNCTION sealcache_commit_write(
	p_partition text, p_kind smallint, p_instance text, p_digest_fn smallint,
	p_hash bytea, p_size bigint, p_stored_size bigint, p_ticket bigint, p_lock_class integer
) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	PERFORM pg_advisory_xact_lock_shared(p_lock_class, hashtext(split_part(p_partition, '/', 1)));
	INSERT INTO sealcache_objects AS o (partition, kind, instance, digest_fn, hash, size, stored_size, created, last_access)
	VALUES (p_partition, p_kind, p_instance, p_digest_fn, p_hash, p_size, p_stored_size, now(), now())
	ON CONFLICT (partition, kind, instance, digest_fn, hash, size)
	DO UPDATE SET stored_size = EXCLUDED.stored_size, created = EXCLUDED.created, last_access = EXCLUDED.last_access;
	IF EXISTS (
		SELECT 1 FROM sealcache_deleted_objects d
		WHERE d.partition = p_partition AND d.kind = p_kind AND d.instance = p_instance
		  AND d.digest_fn = p_digest_fn AND d.hash = p_hash AND d.size = p_size
		  AND (d.done IS NULL OR d.done > p_ticket)
	) OR EXISTS (
		SELECT 1 FROM sealcache_deleted_partitions d
		WHERE (d.partition = p_partition OR starts_with(p_partition, d.partition || '/'))
		  AND (d.done IS NULL OR d.done > p_ticket)
	) THEN
		RAISE EXCEPTION 'the object was deleted while it was being written' USING ERRCODE = 'SC001';
	END IF;
END $$;
`,
}

// migrate applies the migrations not yet applied, under an advisory lock.
func migrate(ctx context.Context, conn interface {
	Begin(context.Context) (pgx.Tx, error)
}) error {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, migrationLockID); err != nil {
		return fmt.Errorf("waiting for the index migration lock: %w", err)
	}
	if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS sealcache_index_migrations (
		version integer PRIMARY KEY,
		applied timestamptz NOT NULL DEFAULT now()
	)`); err != nil {
		return err
	}
	var applied int
	if err := tx.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM sealcache_index_migrations`).Scan(&applied); err != nil {
		return err
	}
	if applied > len(migrations) {
		return fmt.Errorf("the object index has schema version %d, newer than the %d this binary knows; run the newer binary or restore the database", applied, len(migrations))
	}
	for v := applied + 1; v <= len(migrations); v++ {
		if _, err := tx.Exec(ctx, migrations[v-1]); err != nil {
			return fmt.Errorf("applying object index migration %d: %w", v, err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO sealcache_index_migrations (version) VALUES ($1)`, v); err != nil {
			return err
		}
	}
	return tx.Commit(ctx)
}
