package pgindex

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sealcache/sealcache/cas"
)

// Deletes follow one protocol (see doc.go): the index writes the
// tombstones and deletes the rows; the caller deletes the objects from the
// object store; then it calls Finish, which marks the tombstones done.
// Until then, and for a write that overlapped the delete also after,
// CommitWrite refuses the keys.

// KeyDelete is a started delete of single objects.
type KeyDelete struct {
	gen int64
	// Keys are every key whose object the caller must delete from the
	// object store before calling FinishKeys.
	Keys []cas.Key
	// Objects are the rows that were deleted, with their stored sizes.
	Objects []cas.StoredObject
}

// Bytes is the sum of the deleted rows' stored sizes.
func (d *KeyDelete) Bytes() int64 {
	var n int64
	for _, o := range d.Objects {
		n += o.Size
	}
	return n
}

// inOrgLock runs fn in a transaction that holds org's lock exclusively,
// retried as withRetry does. Taking the lock waits for writes of the org
// that are committing: a row they are inserting is not yet visible to fn,
// and their commit must see the tombstone fn writes.
func (ix *Index) inOrgLock(ctx context.Context, org string, fn func(pgx.Tx) error) error {
	return withRetry(ctx, func() error {
		return pgx.BeginFunc(ctx, ix.pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1, hashtext($2))`, orgLockClass, org); err != nil {
				return err
			}
			return fn(tx)
		})
	})
}

// DeleteKey starts the delete of one object. The object's bytes may exist
// without a row (a write that failed to commit), so the caller deletes
// them whether or not a row was deleted.
func (ix *Index) DeleteKey(ctx context.Context, key cas.Key) (*KeyDelete, error) {
	args, err := keyArgs(key)
	if err != nil {
		return nil, err
	}
	d := &KeyDelete{Keys: []cas.Key{key}}
	err = ix.inOrgLock(ctx, key.Partition.Org(), func(tx pgx.Tx) error {
		var stored *int64
		err := tx.QueryRow(ctx, `
WITH g AS (SELECT nextval('sealcache_write_seq') AS gen),
tomb AS (
	INSERT INTO sealcache_deleted_objects (`+keyColumns+`, gen, started)
	SELECT $1, $2, $3, $4, $5, $6, g.gen, now() FROM g
	ON CONFLICT (`+keyColumns+`) DO UPDATE SET gen = EXCLUDED.gen, started = EXCLUDED.started, done = NULL, done_at = NULL
	RETURNING gen
),
del AS (
	DELETE FROM sealcache_objects
	WHERE partition = $1 AND kind = $2 AND instance = $3 AND digest_fn = $4 AND hash = $5 AND size = $6
	RETURNING stored_size
)
SELECT (SELECT gen FROM tomb), (SELECT stored_size FROM del)`, args...).Scan(&d.gen, &stored)
		if err != nil {
			return err
		}
		d.Objects = nil
		if stored != nil {
			d.Objects = []cas.StoredObject{{Key: key, Size: *stored}}
		}
		return nil
	})
	if err != nil {
		return nil, failed("deleting "+key.String(), err)
	}
	return d, nil
}

// EvictLRU starts the delete of up to limit of the least recently used
// objects that were last used more than the minimum retention ago, all of
// them or only those of org (when not ""). It returns nil when there are
// none. Rows locked by a statement in progress (a write committing, a use
// being recorded) are skipped.
func (ix *Index) EvictLRU(ctx context.Context, org string, limit int) (*KeyDelete, error) {
	var d *KeyDelete
	err := withRetry(ctx, func() error {
		rows, err := ix.pool.Query(ctx, `
WITH g AS (SELECT nextval('sealcache_write_seq') AS gen),
cand AS (
	SELECT `+keyColumns+` FROM sealcache_objects
	WHERE last_access < now() - $1 * interval '1 second' AND ($3 = '' OR split_part(partition, '/', 1) = $3)
	ORDER BY last_access LIMIT $2
	FOR UPDATE SKIP LOCKED
),
del AS (
	DELETE FROM sealcache_objects o USING cand k WHERE `+matchKey("o", "k")+`
	RETURNING o.partition, o.kind, o.instance, o.digest_fn, o.hash, o.size, o.stored_size
),
tomb AS (
	INSERT INTO sealcache_deleted_objects (`+keyColumns+`, gen, started)
	SELECT del.partition, del.kind, del.instance, del.digest_fn, del.hash, del.size, g.gen, now() FROM del, g
	ON CONFLICT (`+keyColumns+`) DO UPDATE SET gen = EXCLUDED.gen, started = EXCLUDED.started, done = NULL, done_at = NULL
)
SELECT del.*, g.gen FROM del, g`, seconds(ix.cfg.MinRetention), limit, org)
		if err != nil {
			return err
		}
		d = &KeyDelete{}
		for rows.Next() {
			var r keyRow
			var stored int64
			if err := rows.Scan(r.dest(&stored, &d.gen)...); err != nil {
				rows.Close()
				return err
			}
			k := r.key()
			d.Keys = append(d.Keys, k)
			d.Objects = append(d.Objects, cas.StoredObject{Key: k, Size: stored})
		}
		return rows.Err()
	})
	if err != nil {
		return nil, failed("evicting least recently used objects", err)
	}
	if len(d.Keys) == 0 {
		return nil, nil
	}
	return d, nil
}

// FinishKeys marks d's tombstones done: the caller has deleted the objects.
// A tombstone that a later delete of the same key took over stays for that
// delete to finish.
func (ix *Index) FinishKeys(ctx context.Context, d *KeyDelete) error {
	var cols keyCols
	for _, k := range d.Keys {
		if err := cols.add(k); err != nil {
			return err
		}
	}
	args := append(cols.args(), d.gen)
	err := withRetry(ctx, func() error {
		_, err := ix.pool.Exec(ctx, `SELECT sealcache_finish_deletes($1, $2, $3, $4, $5, $6, $7)`, args...)
		return err
	})
	if err != nil {
		return failed("finishing the delete of objects", err)
	}
	return nil
}

// PartitionDelete is a started delete of a whole partition.
type PartitionDelete struct {
	id        int64
	Partition cas.Partition
	// Objects and Bytes count the rows deleted.
	Objects, Bytes int64
}

// DeletePartition starts the delete of every object at or below p: it
// writes the partition's tombstone, then deletes the rows. The caller then
// deletes every object under the partition from the object store (rows or
// not) and calls FinishPartition.
func (ix *Index) DeletePartition(ctx context.Context, p cas.Partition) (*PartitionDelete, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	d := &PartitionDelete{Partition: p}
	err := ix.inOrgLock(ctx, p.Org(), func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, `INSERT INTO sealcache_deleted_partitions (partition, started) VALUES ($1, now()) RETURNING id`, string(p)).Scan(&d.id)
	})
	if err != nil {
		return nil, failed("deleting partition "+string(p), err)
	}
	// The tombstone is committed: from here no write of the partition can
	// commit, and the rows of writes that committed before are visible.
	if err := ix.deletePartitionRows(ctx, d); err != nil {
		return nil, err
	}
	return d, nil
}

// deletePartitionRows deletes the rows at or below d's partition and
// counts them in d. Once d's tombstone is committed no row can be added
// under it, so running it again (for a delete whose node died before its
// rows went) deletes exactly what the first run would have.
func (ix *Index) deletePartitionRows(ctx context.Context, d *PartitionDelete) error {
	err := withRetry(ctx, func() error {
		return ix.pool.QueryRow(ctx, `WITH del AS (DELETE FROM sealcache_objects WHERE `+inPartition(1)+` RETURNING stored_size)
			SELECT count(*), coalesce(sum(stored_size), 0) FROM del`, string(d.Partition)).Scan(&d.Objects, &d.Bytes)
	})
	if err != nil {
		return failed("deleting the rows of partition "+string(d.Partition), err)
	}
	return nil
}

// FinishPartition marks d's tombstone done: the caller has deleted the
// partition's objects.
func (ix *Index) FinishPartition(ctx context.Context, d *PartitionDelete) error {
	_, err := ix.pool.Exec(ctx, `UPDATE sealcache_deleted_partitions SET done = nextval('sealcache_write_seq'), done_at = now()
		WHERE id = $1 AND done IS NULL`, d.id)
	if err != nil {
		return failed("finishing the delete of partition "+string(d.Partition), err)
	}
	return nil
}

// maxUnfinished bounds the tombstones one Unfinished call returns.
const maxUnfinished = 10_000

// Unfinished returns deletes that started more than UnfinishedAfter ago and
// are not done: their node died, or failed to delete the objects. Their
// rows are gone; the caller deletes the objects again and finishes them.
func (ix *Index) Unfinished(ctx context.Context) ([]*KeyDelete, []*PartitionDelete, error) {
	return ix.unfinished(ctx, UnfinishedAfter)
}

func (ix *Index) unfinished(ctx context.Context, after time.Duration) ([]*KeyDelete, []*PartitionDelete, error) {
	rows, err := ix.pool.Query(ctx, `SELECT `+keyColumns+`, gen FROM sealcache_deleted_objects
		WHERE done IS NULL AND started < now() - $1 * interval '1 second' ORDER BY gen LIMIT $2`, seconds(after), maxUnfinished)
	if err != nil {
		return nil, nil, failed("listing unfinished deletes", err)
	}
	byGen := map[int64]*KeyDelete{}
	var keys []*KeyDelete
	for rows.Next() {
		var r keyRow
		var gen int64
		if err := rows.Scan(r.dest(&gen)...); err != nil {
			rows.Close()
			return nil, nil, failed("listing unfinished deletes", err)
		}
		d := byGen[gen]
		if d == nil {
			d = &KeyDelete{gen: gen}
			byGen[gen] = d
			keys = append(keys, d)
		}
		d.Keys = append(d.Keys, r.key())
	}
	if err := rows.Err(); err != nil {
		return nil, nil, failed("listing unfinished deletes", err)
	}
	rows, err = ix.pool.Query(ctx, `SELECT id, partition FROM sealcache_deleted_partitions
		WHERE done IS NULL AND started < now() - $1 * interval '1 second' ORDER BY id`, seconds(after))
	if err != nil {
		return nil, nil, failed("listing unfinished partition deletes", err)
	}
	parts, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*PartitionDelete, error) {
		d := &PartitionDelete{}
		var p string
		err := r.Scan(&d.id, &p)
		d.Partition = cas.Partition(p)
		return d, err
	})
	if err != nil {
		return nil, nil, failed("listing unfinished partition deletes", err)
	}
	// DeletePartition commits the tombstone before it deletes the rows, so
	// a node that died in between left rows whose objects the caller is
	// about to delete.
	for _, d := range parts {
		if err := ix.deletePartitionRows(ctx, d); err != nil {
			return nil, nil, err
		}
	}
	return keys, parts, nil
}

// ForgetFinished drops tombstones finished more than TombstoneTTL ago and
// returns how many.
func (ix *Index) ForgetFinished(ctx context.Context) (int64, error) {
	var n int64
	for _, table := range []string{"sealcache_deleted_objects", "sealcache_deleted_partitions"} {
		tag, err := ix.pool.Exec(ctx, `DELETE FROM `+table+` WHERE done_at < now() - $1 * interval '1 second'`, seconds(TombstoneTTL))
		if err != nil {
			return n, failed("forgetting old tombstones", err)
		}
		n += tag.RowsAffected()
	}
	return n, nil
}
