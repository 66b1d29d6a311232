// Package orgs is Sealcache's metadata store: organizations, API keys and
// their roles, the audit log and the CMEK key records (only wrapped keys).
//
// The embedded default is SQLite (modernc.org/sqlite, pure Go). All SQL is
// kept portable and database differences live in dialect.go, so PostgreSQL
// can be added for many-node deployments without changing callers.
package orgs

import (
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver
)

// DB is the metadata store: orgs, API keys, the audit log and CMEK key
// records. It is safe for concurrent use.
type DB struct {
	db      *sql.DB
	dialect *dialect

	// queryHook, when set, sees every statement before it runs. Tests use
	// it to count database round trips.
	queryHook atomic.Pointer[func(query string)]

	// authenticators are told when an API key or org goes away, so that a
	// revocation through this process takes effect at once.
	authMu         sync.Mutex
	authenticators map[*Authenticator]struct{}
}

// sqliteBusyTimeout is how long a write waits for another process holding
// the database lock (e.g. `sealcache admin` next to a running server).
const sqliteBusyTimeout = 5 * time.Second

// OpenSQLite opens (creating if needed) the SQLite database at path and
// applies pending schema migrations. The database runs in WAL mode with
// foreign keys enforced.
//
// The pool holds a single connection: every statement is serialized, which
// rules out SQLITE_BUSY between our own goroutines. That is plenty, because
// authentication is served from a cache and the rest is admin traffic.
func OpenSQLite(path string) (*DB, error) {
	if path == "" || strings.ContainsAny(path, "?#") || strings.HasPrefix(path, "file:") {
		return nil, fmt.Errorf("%w: metadata database path %q: give a plain file path without '?', '#' or a file: prefix", ErrInvalidArgument, path)
	}
	params := url.Values{
		"_busy_timeout": {fmt.Sprint(sqliteBusyTimeout.Milliseconds())},
		"_journal_mode": {"WAL"},
		"_synchronous":  {"NORMAL"}, // durable across process crashes; WAL makes this safe
		"_foreign_keys": {"1"},
		// Take the write lock when a transaction begins, not at its first
		// write, so read-then-write transactions never fail half way.
		"_txlock": {"immediate"},
	}
	db, err := sql.Open("sqlite", path+"?"+params.Encode())
	if err != nil {
		return nil, fmt.Errorf("opening metadata database %s: %w", path, err)
	}
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	db.SetConnMaxLifetime(0)

	s := &DB{db: db, dialect: sqliteDialect, authenticators: map[*Authenticator]struct{}{}}
	ctx := context.Background()
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("opening metadata database %s: %w (check that the directory exists and is writable)", path, err)
	}
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("metadata database %s: %w", path, err)
	}
	return s, nil
}

// Close closes the database. Authenticators built on the store must be
// closed first.
func (s *DB) Close() error { return s.db.Close() }

// setQueryHook installs f to see every statement (nil removes it).
func (s *DB) setQueryHook(f func(query string)) {
	if f == nil {
		s.queryHook.Store(nil)
		return
	}
	s.queryHook.Store(&f)
}

// queryer is what *sql.DB and *sql.Tx have in common.
type queryer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// runner runs portable SQL on a connection or transaction: it rewrites
// placeholders for the dialect and reports each statement to the hook.
type runner struct {
	q queryer
	s *DB
}

func (s *DB) run() runner { return runner{q: s.db, s: s} }

func (r runner) prepare(query string) string {
	if hook := r.s.queryHook.Load(); hook != nil {
		(*hook)(query)
	}
	return r.s.dialect.rebind(query)
}

func (r runner) exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	return r.q.ExecContext(ctx, r.prepare(query), args...)
}

func (r runner) query(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	return r.q.QueryContext(ctx, r.prepare(query), args...)
}

func (r runner) queryRow(ctx context.Context, query string, args ...any) *sql.Row {
	return r.q.QueryRowContext(ctx, r.prepare(query), args...)
}

// inTx runs f in one transaction, committing if f returns nil. Inside f use
// only the given runner: the pool has one connection, which the transaction
// holds.
func (s *DB) inTx(ctx context.Context, f func(r runner) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := f(runner{q: tx, s: s}); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

// affectedOne turns "no row matched" into ErrNotFound with a message.
func affectedOne(res sql.Result, err error, what string) error {
	if err != nil {
		return err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("%s: %w", what, ErrNotFound)
	}
	return nil
}

// notFound maps sql.ErrNoRows to ErrNotFound with a message.
func notFound(err error, what string) error {
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("%s: %w", what, ErrNotFound)
	}
	return err
}

// newID returns prefix + 12 random characters of [a-z2-7] (60 bits). IDs
// become storage partition path segments, so they are lowercase, URL-safe
// and never contain '/' or '.'.
func newID(prefix string) string {
	return prefix + strings.ToLower(rand.Text()[:12])
}

// Times are stored as Unix nanoseconds; 0 means "never".
func toNanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromNanos(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}
