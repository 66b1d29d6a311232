package orgs

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
)

// PostgreSQL connection pool limits, per node. Authentication is served
// from a cache and the rest is admin traffic and background jobs, so a
// few connections are plenty; the LISTEN connection of Watch is extra.
const (
	postgresMaxOpenConns = 8
	postgresMaxIdleTime  = 5 * time.Minute
)

// OpenPostgres connects to the PostgreSQL database at url (a
// postgres://user:password@host:port/db?sslmode=... URL or a key=value
// connection string) and applies pending schema migrations. Several nodes
// may open the same database at the same moment: migrations run once,
// under an advisory lock.
//
// Many sealcache nodes share one PostgreSQL; each learns of the others'
// changes through Watch (LISTEN/NOTIFY). Errors never repeat the URL,
// which may carry a password.
func OpenPostgres(ctx context.Context, url string) (*DB, error) {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		// pgx's parse errors already redact the password.
		return nil, fmt.Errorf("%w: metadata URL: %v: use postgres://USER:PASSWORD@HOST:PORT/DATABASE?sslmode=...", ErrInvalidArgument, err)
	}
	db := stdlib.OpenDB(*cfg)
	db.SetMaxOpenConns(postgresMaxOpenConns)
	db.SetMaxIdleConns(postgresMaxOpenConns)
	db.SetConnMaxIdleTime(postgresMaxIdleTime)

	s := newDB(db, postgresDialect)
	where := fmt.Sprintf("PostgreSQL database %q on %s:%d", cfg.Database, cfg.Host, cfg.Port)
	s.listen = func() { s.goBackground(func() { s.listenPostgres(cfg) }) }
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("connecting to the metadata store, %s: %w (check the URL, that the server is up and that the user may connect)", where, err)
	}
	if err := s.migrate(ctx, migrations); err != nil {
		db.Close()
		return nil, fmt.Errorf("metadata store, %s: %w", where, err)
	}
	return s, nil
}
