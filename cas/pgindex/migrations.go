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

-- The statements that take arrays of keys run as functions with hash and
-- merge joins turned off: the planner then looks each key up in the
-- primary key's index (a few microseconds each) instead of scanning the
-- whole table to hash it, which it may think cheaper for small tables but
-- which grows with the table.

-- sealcache_present returns the position of every key found, and whether
-- its use is stale enough to be written by the next batch. Uses of rows
-- last used more than p_urgent seconds ago are written here, under the
-- row's lock, so the evictor cannot delete a row between this answer and
-- the write: a row it deleted first is not returned.
CREATE FUNCTION sealcache_present(
	p_partition text[], p_kind smallint[], p_instance text[], p_digest_fn smallint[], p_hash bytea[], p_size bigint[],
	p_urgent float8, p_touch float8
) RETURNS TABLE (ord bigint, stale boolean) LANGUAGE sql VOLATILE
SET enable_hashjoin = off SET enable_mergejoin = off
AS $$
WITH k AS (
	SELECT * FROM unnest(p_partition, p_kind, p_instance, p_digest_fn, p_hash, p_size) WITH ORDINALITY
		AS k(partition, kind, instance, digest_fn, hash, size, ord)
),
found AS MATERIALIZED (
	SELECT k.*, o.last_access FROM k CROSS JOIN LATERAL (
		SELECT o.last_access FROM sealcache_objects o
		WHERE o.partition = k.partition AND o.kind = k.kind AND o.instance = k.instance
		  AND o.digest_fn = k.digest_fn AND o.hash = k.hash AND o.size = k.size
		LIMIT 1
	) o
),
urgent AS (
	UPDATE sealcache_objects o SET last_access = now()
	FROM found f
	WHERE o.partition = f.partition AND o.kind = f.kind AND o.instance = f.instance
	  AND o.digest_fn = f.digest_fn AND o.hash = f.hash AND o.size = f.size
	  AND f.last_access < now() - p_urgent * interval '1 second'
	RETURNING f.ord
)
SELECT f.ord, f.last_access < now() - p_touch * interval '1 second' FROM found f
WHERE f.last_access >= now() - p_urgent * interval '1 second'
UNION ALL
SELECT u.ord, false FROM urgent u
$$;

-- sealcache_touch writes the uses of keys whose rows were last used more
-- than p_touch seconds ago. Rows locked by another statement are skipped:
-- whatever holds the lock (a write committing, another node's batch, an
-- urgent use, the evictor deleting the row) sets the access time itself
-- or removes the row. Returns how many rows it wrote.
CREATE FUNCTION sealcache_touch(
	p_partition text[], p_kind smallint[], p_instance text[], p_digest_fn smallint[], p_hash bytea[], p_size bigint[],
	p_touch float8
) RETURNS bigint LANGUAGE sql VOLATILE
SET enable_hashjoin = off SET enable_mergejoin = off
AS $$
WITH k AS (
	SELECT * FROM unnest(p_partition, p_kind, p_instance, p_digest_fn, p_hash, p_size)
		AS k(partition, kind, instance, digest_fn, hash, size)
),
s AS (
	SELECT o.partition, o.kind, o.instance, o.digest_fn, o.hash, o.size
	FROM k JOIN sealcache_objects o
	  ON o.partition = k.partition AND o.kind = k.kind AND o.instance = k.instance
	 AND o.digest_fn = k.digest_fn AND o.hash = k.hash AND o.size = k.size
	WHERE o.last_access < now() - p_touch * interval '1 second'
	FOR UPDATE OF o SKIP LOCKED
),
u AS (
	UPDATE sealcache_objects o SET last_access = now() FROM s
	WHERE o.partition = s.partition AND o.kind = s.kind AND o.instance = s.instance
	  AND o.digest_fn = s.digest_fn AND o.hash = s.hash AND o.size = s.size
	RETURNING 1
)
SELECT count(*) FROM u
$$;

-- sealcache_finish_deletes marks the tombstones of keys written by delete
-- p_gen done.
CREATE FUNCTION sealcache_finish_deletes(
	p_partition text[], p_kind smallint[], p_instance text[], p_digest_fn smallint[], p_hash bytea[], p_size bigint[],
	p_gen bigint
) RETURNS void LANGUAGE sql VOLATILE
SET enable_hashjoin = off SET enable_mergejoin = off
AS $$
UPDATE sealcache_deleted_objects d SET done = nextval('sealcache_write_seq'), done_at = now()
FROM unnest(p_partition, p_kind, p_instance, p_digest_fn, p_hash, p_size) AS k(partition, kind, instance, digest_fn, hash, size)
WHERE d.partition = k.partition AND d.kind = k.kind AND d.instance = k.instance
  AND d.digest_fn = k.digest_fn AND d.hash = k.hash AND d.size = k.size
  AND d.gen = p_gen AND d.done IS NULL
$$;
`,
	// 2: when periodic jobs (the orphan sweep) last ran, across nodes.
	`
CREATE TABLE sealcache_index_jobs (
	name     text PRIMARY KEY,
	last_run timestamptz NOT NULL
);
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
