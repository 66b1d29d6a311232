package pgindex

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sealcache/sealcache/cas"
)

// Defaults of Config.
const (
	DefaultMinRetention  = time.Hour
	DefaultFlushInterval = 2 * time.Second
	DefaultMaxConns      = 16
	// maxTouchAfter caps TouchAfter: LRU order finer than a minute buys
	// nothing but row writes.
	maxTouchAfter = time.Minute
)

// Tombstone lifetimes (see doc.go).
const (
	// TombstoneTTL is how long a finished delete's tombstone is kept.
	TombstoneTTL = 6 * time.Hour
	// MaxWriteDuration is the longest a write may take from its ticket to
	// its commit; a slower write is refused, since tombstones it must see
	// may be forgotten.
	MaxWriteDuration = TombstoneTTL / 2
	// UnfinishedAfter is when a delete that is not done is taken to have
	// died with its node, and may be finished by the evictor.
	UnfinishedAfter = 10 * time.Minute
)

// orgLockClass is the first key of the two-key advisory locks on an org
// (the second is hashtext(org)): shared while a write commits, exclusive
// while a delete of one key or a partition writes its tombstone.
const orgLockClass int32 = 0x5eac

// ErrDeletedWhileWriting is returned by CommitWrite when a delete of the key
// (an eviction, a Delete, a partition delete) overlapped the write, so the
// object's bytes may be gone: the row was not committed. Writing the object
// again is the right answer.
var ErrDeletedWhileWriting = errors.New("the object was deleted (evicted, or its org's data deleted) while it was being written; upload it again")

// Config configures Open. URL is required.
type Config struct {
	// URL is the PostgreSQL connection URL (postgres://USER:PASSWORD@HOST/DB).
	URL string
	// MinRetention is how long after its last use an object is kept at
	// least: the evictor never deletes an object used more recently.
	// Default DefaultMinRetention.
	MinRetention time.Duration
	// TouchAfter: a use is written only when the stored last access is
	// older than this. Default min(MinRetention/4, 1 minute).
	TouchAfter time.Duration
	// FlushInterval is how often recorded uses are written. Default
	// DefaultFlushInterval; it must be well below MinRetention/2.
	FlushInterval time.Duration
	// MaxConns bounds the connection pool. Default DefaultMaxConns.
	MaxConns int32
	// MaxPendingTouches bounds the uses waiting for the next flush; more
	// are dropped (and counted). Default 100,000.
	MaxPendingTouches int
	Logger            *slog.Logger
}

func (c Config) withDefaults() (Config, error) {
	if c.URL == "" {
		return c, errors.New("the object index needs a PostgreSQL URL (--metadata_url postgres://...)")
	}
	if c.MinRetention == 0 {
		c.MinRetention = DefaultMinRetention
	}
	if c.MinRetention < 0 {
		return c, fmt.Errorf("minimum retention %s is negative", c.MinRetention)
	}
	if c.TouchAfter == 0 {
		c.TouchAfter = min(c.MinRetention/4, maxTouchAfter)
	}
	if c.FlushInterval == 0 {
		c.FlushInterval = DefaultFlushInterval
	}
	if c.MaxConns == 0 {
		c.MaxConns = DefaultMaxConns
	}
	if c.MaxPendingTouches == 0 {
		c.MaxPendingTouches = 100_000
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c, nil
}

// Index is the shared object index. It is safe for concurrent use.
type Index struct {
	pool    *pgxpool.Pool
	cfg     Config
	touches *toucher
}

// Open connects to PostgreSQL, applies the index's migrations (under an
// advisory lock, so nodes may start together) and starts the writer of
// recorded uses.
func Open(ctx context.Context, cfg Config) (*Index, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	pcfg, err := pgxpool.ParseConfig(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("the object index's PostgreSQL URL: %s; use postgres://USER:PASSWORD@HOST:PORT/DATABASE", redactURLError(err))
	}
	pcfg.MaxConns = cfg.MaxConns
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("connecting to the object index at %s: %w", describe(pcfg.ConnConfig), err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("connecting to the object index at %s: %w; check --metadata_url and that PostgreSQL is running", describe(pcfg.ConnConfig), err)
	}
	if err := migrate(ctx, pool); err != nil {
		pool.Close()
		return nil, fmt.Errorf("object index at %s: %w", describe(pcfg.ConnConfig), err)
	}
	ix := &Index{pool: pool, cfg: cfg}
	ix.touches = newToucher(ix)
	return ix, nil
}

// Close writes the recorded uses and closes the connections.
func (ix *Index) Close() {
	ix.touches.close()
	ix.pool.Close()
}

// Ping checks that the database answers.
func (ix *Index) Ping(ctx context.Context) error { return ix.pool.Ping(ctx) }

// urgentAfter: uses of objects last used longer ago are written at once.
func (ix *Index) urgentAfter() time.Duration { return ix.cfg.MinRetention / 2 }

// describe names a database without its password, for messages.
func describe(c *pgx.ConnConfig) string {
	return fmt.Sprintf("postgres://%s@%s:%d/%s", c.User, c.Host, c.Port, c.Database)
}

// redactURLError keeps a password out of a URL parse error.
func redactURLError(err error) string {
	msg := err.Error()
	if i := strings.Index(msg, "://"); i >= 0 {
		return "cannot parse it"
	}
	return msg
}

// seconds turns a duration into the float parameter the SQL multiplies by
// interval '1 second'.
func seconds(d time.Duration) float64 { return d.Seconds() }

// keyCols holds keys as the column arrays that unnest() takes.
type keyCols struct {
	partitions []string
	kinds      []int16
	instances  []string
	fns        []int16
	hashes     [][]byte
	sizes      []int64
}

func (c *keyCols) add(k cas.Key) error {
	if err := k.Partition.Validate(); err != nil {
		return err
	}
	hash, err := hex.DecodeString(k.Digest.Hash)
	if err != nil || len(hash) == 0 {
		return fmt.Errorf("key %s: hash %q is not hex", k, k.Digest.Hash)
	}
	if strings.IndexByte(k.Instance, 0) >= 0 {
		return fmt.Errorf("key %s: instance name holds a NUL byte", k)
	}
	c.partitions = append(c.partitions, string(k.Partition))
	c.kinds = append(c.kinds, int16(k.Kind))
	c.instances = append(c.instances, k.Instance)
	c.fns = append(c.fns, int16(k.Digest.Function))
	c.hashes = append(c.hashes, hash)
	c.sizes = append(c.sizes, k.Digest.Size)
	return nil
}

func (c *keyCols) len() int { return len(c.partitions) }

func (c *keyCols) args() []any {
	return []any{c.partitions, c.kinds, c.instances, c.fns, c.hashes, c.sizes}
}

// keyArgs are the primary key columns of one key as query arguments.
func keyArgs(k cas.Key) ([]any, error) {
	var c keyCols
	if err := c.add(k); err != nil {
		return nil, err
	}
	return []any{c.partitions[0], c.kinds[0], c.instances[0], c.fns[0], c.hashes[0], c.sizes[0]}, nil
}

// unnestKeys is the FROM item of key arrays $1..$6 with their position.
const unnestKeys = `unnest($1::text[], $2::int2[], $3::text[], $4::int2[], $5::bytea[], $6::int8[]) WITH ORDINALITY
	AS k(partition, kind, instance, digest_fn, hash, size, ord)`

// matchKey joins table aliases t and k on the primary key columns.
func matchKey(t, k string) string {
	return fmt.Sprintf(`%[1]s.partition = %[2]s.partition AND %[1]s.kind = %[2]s.kind AND %[1]s.instance = %[2]s.instance
	AND %[1]s.digest_fn = %[2]s.digest_fn AND %[1]s.hash = %[2]s.hash AND %[1]s.size = %[2]s.size`, t, k)
}

// keyColumns are the primary key columns in order.
const keyColumns = `partition, kind, instance, digest_fn, hash, size`

// keyRow receives the primary key columns of one row, in keyColumns order.
type keyRow struct {
	partition, instance string
	kind, fn            int16
	hash                []byte
	size                int64
}

// dest is what Scan fills for a row that selects keyColumns and then the
// columns extra receives.
func (r *keyRow) dest(extra ...any) []any {
	return append([]any{&r.partition, &r.kind, &r.instance, &r.fn, &r.hash, &r.size}, extra...)
}

// key is the scanned key.
func (r *keyRow) key() cas.Key {
	return cas.Key{
		Partition: cas.Partition(r.partition),
		Kind:      cas.Kind(r.kind),
		Instance:  r.instance,
		Digest:    cas.Digest{Function: cas.DigestFunction(r.fn), Hash: hex.EncodeToString(r.hash), Size: r.size},
	}
}

// inPartition is the condition "column partition is p or below p", as a
// byte range in the C collation ('0' follows '/'), so the primary key's
// index serves it. $n is the partition parameter.
func inPartition(n int) string {
	return fmt.Sprintf(`(partition = $%[1]d OR (partition > $%[1]d || '/' AND partition < $%[1]d || '0'))`, n)
}

// retryable reports errors after which a statement may simply run again:
// a deadlock between statements that lock overlapping rows in different
// orders, or a serialization failure.
func retryable(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "40P01" || pgErr.Code == "40001")
}

// withRetry runs fn up to three times while it fails with a retryable error.
func withRetry(ctx context.Context, fn func() error) error {
	var err error
	for range 3 {
		if err = fn(); !retryable(err) || ctx.Err() != nil {
			return err
		}
	}
	return err
}

// failed wraps a database error with what was being done.
func failed(what string, err error) error {
	return fmt.Errorf("object index: %s: %w", what, err)
}

// evictorLockID is the session-level advisory lock the evictor holds while
// it runs a pass, so one node evicts at a time. A node that dies loses its
// session and with it the lock.
const evictorLockID int64 = 0x5ea1cac4e1d0002

// TryEvictorLock takes the evictor lock if no other session holds it. The
// returned release must be called when the pass is done.
func (ix *Index) TryEvictorLock(ctx context.Context) (release func(), ok bool, err error) {
	conn, err := ix.pool.Acquire(ctx)
	if err != nil {
		return nil, false, failed("taking the evictor lock", err)
	}
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, evictorLockID).Scan(&ok); err != nil || !ok {
		conn.Release()
		if err != nil {
			return nil, false, failed("taking the evictor lock", err)
		}
		return nil, false, nil
	}
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := conn.Exec(ctx, `SELECT pg_advisory_unlock($1)`, evictorLockID); err != nil {
			// A session that may still hold the lock must not be reused.
			conn.Conn().Close(ctx)
		}
		conn.Release()
	}, true, nil
}
