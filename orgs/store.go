// Package orgs is Sealcache's metadata store: organizations, API keys and
// their roles, the audit log and the CMEK key records (only wrapped keys).
//
// The embedded default is SQLite (modernc.org/sqlite, pure Go; OpenSQLite);
// many nodes share one PostgreSQL (OpenPostgres). All SQL is kept portable
// and database differences live in dialect.go, so callers never see which
// database is in use.
//
// Where to look:
//   - store.go: DB, OpenSQLite, how statements and transactions run;
//   - postgres.go: OpenPostgres;
//   - migrations.go: the schema;
//   - orgs.go, apikeys.go, auth.go, audit.go, keyrecords.go: the records;
//   - shred.go, fingerprint.go: erasing deleted key material from the
//     store's files and checking that it is gone;
//   - watch.go, listen_postgres.go: change notifications across nodes.
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

	// sqlitePath is the database file (SQLite only): LeftoverKeyMaterial
	// reads it and its -wal and -shm files directly.
	sqlitePath string
	// listen starts the feed of changes made by other nodes (PostgreSQL
	// only; nil for SQLite). See watch.go.
	listen func()
	// beforeListenerConnect, when set, runs before each connection attempt
	// of the PostgreSQL change feed (tests hold reconnects with it).
	beforeListenerConnect func(ctx context.Context)

	changes   *changeHub
	closing   chan struct{} // closed by Close: background work stops
	closeOnce sync.Once
	bg        sync.WaitGroup // background goroutines, waited for by Close

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
		// Overwrite deleted content with zeros instead of only marking the
		// space free, so a deleted key record leaves no bytes in the file
		// (crypto-shredding; see shred.go). Freed overflow and freelist
		// pages are zeroed too. Each connection needs it; the pool has one.
		// temp_store keeps SQLite's temporary files (sorts, VACUUM) in
		// memory, so no copy of a page ever lands in a file outside the
		// store either.
		"_pragma":       {"secure_delete(1)", "temp_store(2)"},
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

	s := newDB(db, sqliteDialect)
	s.sqlitePath = path
	ctx := context.Background()
	if err := pingSQLite(ctx, db); err != nil {
		db.Close()
		return nil, fmt.Errorf("opening metadata database %s: %w (check that the directory exists and is writable)", path, err)
	}
	if err := s.migrate(ctx, migrations); err != nil {
		db.Close()
		return nil, fmt.Errorf("metadata database %s: %w", path, err)
	}
	return s, nil
}

// pingSQLite opens the first connection. Switching a fresh database to WAL
// needs an exclusive lock, and SQLite answers SQLITE_BUSY there at once,
// without waiting out busy_timeout, when another process (a second server
// or `sealcache admin` started at the same moment) is doing the same. So a
// busy answer is retried until the busy timeout has passed.
func pingSQLite(ctx context.Context, db *sql.DB) error {
	deadline := time.Now().Add(sqliteBusyTimeout)
	for wait := time.Millisecond; ; wait = min(2*wait, 100*time.Millisecond) {
		err := db.PingContext(ctx)
		if err == nil || !isSQLiteBusy(err) || time.Now().After(deadline) {
			return err
		}
		time.Sleep(wait)
	}
}

func newDB(db *sql.DB, d *dialect) *DB {
	s := &DB{
		db:             db,
		dialect:        d,
		closing:        make(chan struct{}),
		authenticators: map[*Authenticator]struct{}{},
	}
	s.changes = newChangeHub(s)
	return s
}

// Close stops watching for changes and closes the database.
// Authenticators built on the store must be closed first.
func (s *DB) Close() error {
	s.closeOnce.Do(func() {
		s.changes.close()
		close(s.closing)
	})
	s.bg.Wait()
	return s.db.Close()
}

// goBackground runs f in a goroutine that Close waits for. f must return
// once s.closing is closed.
func (s *DB) goBackground(f func()) {
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		f()
	}()
}

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
	q  queryer
	s  *DB
	tx *txState // nil outside a transaction
}

// txState is what a transaction carries besides its statements.
type txState struct {
	// changes are published to this process's watchers after commit
	// (dialects without notifyStmt; see runner.notify).
	changes []Change
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
// only the given runner: the SQLite pool has one connection, which the
// transaction holds.
func (s *DB) inTx(ctx context.Context, f func(r runner) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	state := &txState{}
	if err := f(runner{q: tx, s: s, tx: state}); err != nil {
		tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	for _, c := range state.changes {
		s.changes.publish(c)
	}
	return nil
}

// lock takes the named transaction lock (dialect.txLock) until the
// transaction ends, where the dialect needs one.
func (r runner) lock(ctx context.Context, name int64) error {
	if r.s.dialect.txLock == "" {
		return nil
	}
	_, err := r.exec(ctx, r.s.dialect.txLock, name)
	return err
}

// lockOrg locks the org's row until the transaction ends, so changes to
// one org's keys and key records happen one after the other on every
// node. It reports ErrNotFound if the org does not exist.
func (r runner) lockOrg(ctx context.Context, orgID string) error {
	var one int
	err := r.queryRow(ctx, `SELECT 1 FROM orgs WHERE id = ?`+r.s.dialect.forUpdate, orgID).Scan(&one)
	return notFound(err, fmt.Sprintf("org id %q", orgID))
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
