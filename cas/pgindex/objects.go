package pgindex

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/sealcache/sealcache/cas"
)

// Ticket orders a write against deletes (see doc.go). Take it with
// BeginWrite before the object store can publish the object.
type Ticket struct {
	seq   int64
	taken time.Time // this node's clock, for MaxWriteDuration
}

// BeginWrite takes a ticket for a write about to start.
func (ix *Index) BeginWrite(ctx context.Context) (Ticket, error) {
	t := Ticket{taken: time.Now()}
	if err := ix.pool.QueryRow(ctx, `SELECT nextval('sealcache_write_seq')`).Scan(&t.seq); err != nil {
		return Ticket{}, failed("taking a write ticket", err)
	}
	return t, nil
}

// CommitWrite records that the object store now holds key's object of
// storedSize bytes, written under ticket t. It returns an error wrapping
// ErrDeletedWhileWriting, and records nothing, when a delete covering the
// key overlapped the write.
func (ix *Index) CommitWrite(ctx context.Context, t Ticket, key cas.Key, storedSize int64) error {
	if d := time.Since(t.taken); d > MaxWriteDuration {
		return failed("committing "+key.String(), errors.New("the write took "+d.Round(time.Second).String()+", longer than the "+MaxWriteDuration.String()+" allowed"))
	}
	args, err := keyArgs(key)
	if err != nil {
		return err
	}
	args = append(args, storedSize, t.seq, orgLockClass)
	err = withRetry(ctx, func() error {
		_, err := ix.pool.Exec(ctx, `SELECT sealcache_commit_write($1, $2, $3, $4, $5, $6, $7, $8, $9)`, args...)
		return err
	})
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "SC001" {
		return failed("committing "+key.String(), ErrDeletedWhileWriting)
	}
	if err != nil {
		return failed("committing "+key.String(), err)
	}
	return nil
}

// Lookup returns the stored size of key's object and records a use, or
// found false when the index has no such object. Like Present, it writes
// the use at once when the object was last used more than half the
// minimum retention ago, else with the next flush.
func (ix *Index) Lookup(ctx context.Context, key cas.Key) (storedSize int64, found bool, err error) {
	args, err := keyArgs(key)
	if err != nil {
		return 0, false, err
	}
	args = append(args, seconds(ix.urgentAfter()), seconds(ix.cfg.TouchAfter))
	var stale bool
	err = withRetry(ctx, func() error {
		return ix.pool.QueryRow(ctx, `
WITH cur AS (
	SELECT stored_size, last_access FROM sealcache_objects
	WHERE partition = $1 AND kind = $2 AND instance = $3 AND digest_fn = $4 AND hash = $5 AND size = $6
),
urgent AS (
	UPDATE sealcache_objects SET last_access = now()
	WHERE partition = $1 AND kind = $2 AND instance = $3 AND digest_fn = $4 AND hash = $5 AND size = $6
	  AND (SELECT last_access FROM cur) < now() - $7 * interval '1 second'
	RETURNING stored_size
)
SELECT stored_size, false FROM urgent
UNION ALL
SELECT stored_size, last_access < now() - $8 * interval '1 second' FROM cur
WHERE last_access >= now() - $7 * interval '1 second'`, args...).Scan(&storedSize, &stale)
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, failed("looking up "+key.String(), err)
	}
	if stale {
		ix.touches.add(key)
	}
	return storedSize, true, nil
}

// Present reports which keys the index holds, in input order, with one
// statement, and records each found key as used: at once for objects
// close to eviction (last used more than half the minimum retention ago),
// else with the next flush.
func (ix *Index) Present(ctx context.Context, keys []cas.Key) ([]bool, error) {
	present := make([]bool, len(keys))
	if len(keys) == 0 {
		return present, nil
	}
	// Each distinct key once (an UPDATE ... FROM joins a row to one of
	// several equal keys only), in primary key order, so that statements
	// writing overlapping rows lock them in the same order and rarely
	// deadlock (a deadlock is retried).
	distinct := slices.Clone(keys)
	slices.SortFunc(distinct, compareKeys)
	distinct = slices.Compact(distinct)
	var cols keyCols
	first := make(map[cas.Key]int, len(distinct))
	for i, k := range distinct {
		if err := cols.add(k); err != nil {
			return nil, err
		}
		first[k] = i
	}
	found := make([]bool, len(distinct))
	var queue []cas.Key
	args := append(cols.args(), seconds(ix.urgentAfter()), seconds(ix.cfg.TouchAfter))
	err := withRetry(ctx, func() error {
		clear(found)
		queue = queue[:0]
		rows, err := ix.pool.Query(ctx, `SELECT ord, stale FROM sealcache_present($1, $2, $3, $4, $5, $6, $7, $8)`, args...)
		if err != nil {
			return err
		}
		for rows.Next() {
			var ord int64
			var stale bool
			if err := rows.Scan(&ord, &stale); err != nil {
				rows.Close()
				return err
			}
			found[ord-1] = true
			if stale {
				queue = append(queue, distinct[ord-1])
			}
		}
		return rows.Err()
	})
	if err != nil {
		return nil, failed("finding missing objects", err)
	}
	ix.touches.add(queue...)
	for i, k := range keys {
		present[i] = found[first[k]]
	}
	return present, nil
}

// walkPage is how many rows Walk reads per query; between pages it holds
// no connection.
const walkPage = 1000

// Walk calls fn for every indexed object at or below partition, in key
// order, reading a page of rows at a time.
func (ix *Index) Walk(ctx context.Context, partition cas.Partition, fn func(cas.StoredObject) error) error {
	if err := partition.Validate(); err != nil {
		return err
	}
	// The position after the last row seen: the primary key columns.
	after := []any{"", int16(0), "", int16(0), []byte{}, int64(-2)}
	for {
		args := append([]any{string(partition), walkPage}, after...)
		rows, err := ix.pool.Query(ctx, `SELECT `+keyColumns+`, stored_size FROM sealcache_objects
			WHERE `+inPartition(1)+` AND (`+keyColumns+`) > ($3, $4, $5, $6, $7, $8)
			ORDER BY `+keyColumns+` LIMIT $2`, args...)
		if err != nil {
			return failed("walking partition "+string(partition), err)
		}
		var page []cas.StoredObject
		for rows.Next() {
			var r keyRow
			var stored int64
			if err := rows.Scan(r.dest(&stored)...); err != nil {
				rows.Close()
				return failed("walking partition "+string(partition), err)
			}
			page = append(page, cas.StoredObject{Key: r.key(), Size: stored})
			after = []any{r.partition, r.kind, r.instance, r.fn, r.hash, r.size}
		}
		if err := rows.Err(); err != nil {
			return failed("walking partition "+string(partition), err)
		}
		for _, o := range page {
			if err := fn(o); err != nil {
				return err
			}
		}
		if len(page) < walkPage {
			return nil
		}
	}
}

// OrgUsage is the bytes the org's objects take in the object store, plain
// and sealed: a sum over the org's counter rows.
func (ix *Index) OrgUsage(ctx context.Context, orgID string) (int64, error) {
	var n int64
	err := ix.pool.QueryRow(ctx, `SELECT coalesce(sum(bytes), 0) FROM sealcache_usage WHERE org = $1`, orgID).Scan(&n)
	if err != nil {
		return 0, failed("reading the usage of org "+orgID, err)
	}
	return n, nil
}

// Usage is the number of indexed objects and their stored bytes.
func (ix *Index) Usage(ctx context.Context) (objects, bytes int64, err error) {
	err = ix.pool.QueryRow(ctx, `SELECT coalesce(sum(objects), 0), coalesce(sum(bytes), 0) FROM sealcache_usage`).Scan(&objects, &bytes)
	if err != nil {
		return 0, 0, failed("reading the total usage", err)
	}
	return objects, bytes, nil
}

// OrgBytes is one org's stored bytes.
type OrgBytes struct {
	Org   string
	Bytes int64
}

// OrgsOver lists the orgs storing more than quota bytes, largest first.
func (ix *Index) OrgsOver(ctx context.Context, quota int64) ([]OrgBytes, error) {
	rows, err := ix.pool.Query(ctx, `SELECT org, sum(bytes) FROM sealcache_usage
		GROUP BY org HAVING sum(bytes) > $1 ORDER BY 2 DESC`, quota)
	if err != nil {
		return nil, failed("listing orgs over their quota", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (OrgBytes, error) {
		var o OrgBytes
		err := r.Scan(&o.Org, &o.Bytes)
		return o, err
	})
	if err != nil {
		return nil, failed("listing orgs over their quota", err)
	}
	return out, nil
}

// Has reports which keys the index holds, in input order, without
// recording uses: for sweeps, not for clients.
func (ix *Index) Has(ctx context.Context, keys []cas.Key) ([]bool, error) {
	has := make([]bool, len(keys))
	if len(keys) == 0 {
		return has, nil
	}
	var cols keyCols
	for _, k := range keys {
		if err := cols.add(k); err != nil {
			return nil, err
		}
	}
	rows, err := ix.pool.Query(ctx, `SELECT k.ord FROM `+unnestKeys+` CROSS JOIN LATERAL (
		SELECT 1 FROM sealcache_objects o WHERE `+matchKey("o", "k")+` LIMIT 1) o`, cols.args()...)
	if err != nil {
		return nil, failed("looking up objects", err)
	}
	ords, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, failed("looking up objects", err)
	}
	for _, o := range ords {
		has[o-1] = true
	}
	return has, nil
}

// JobDue reports whether the job named name last ran more than every ago
// (or never), and if so records that it runs now: of several nodes asking
// at once, one is told yes.
func (ix *Index) JobDue(ctx context.Context, name string, every time.Duration) (bool, error) {
	rows, err := ix.pool.Query(ctx, `INSERT INTO sealcache_index_jobs (name, last_run) VALUES ($1, now())
		ON CONFLICT (name) DO UPDATE SET last_run = now()
		WHERE sealcache_index_jobs.last_run < now() - $2 * interval '1 second'
		RETURNING 1`, name, seconds(every))
	if err != nil {
		return false, failed("scheduling "+name, err)
	}
	n, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		return false, failed("scheduling "+name, err)
	}
	return len(n) == 1, nil
}

// compareKeys orders keys as the primary key does (the hash compares as
// lowercase hex compares as bytes).
func compareKeys(a, b cas.Key) int {
	return cmp.Or(
		strings.Compare(string(a.Partition), string(b.Partition)),
		cmp.Compare(a.Kind, b.Kind),
		strings.Compare(a.Instance, b.Instance),
		cmp.Compare(a.Digest.Function, b.Digest.Function),
		strings.Compare(a.Digest.Hash, b.Digest.Hash),
		cmp.Compare(a.Digest.Size, b.Digest.Size),
	)
}
