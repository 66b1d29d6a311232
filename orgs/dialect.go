package orgs

import (
	"errors"
	"strings"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// dialect holds everything that differs between SQL databases, so that the
// queries in this package stay portable. Queries are written with `?`
// placeholders and plain SQL; migrations use {{TOKENS}} for column types.
// Adding PostgreSQL means adding a dialect value (placeholders $1..$n,
// BYTEA, identity columns, unique_violation 23505) and an Open function;
// callers of DB do not change.
type dialect struct {
	name string
	// schemaTokens replaces {{NAME}} in migration statements.
	schemaTokens map[string]string
	// rebind rewrites `?` placeholders into the database's own syntax.
	rebind func(query string) string
	// isUniqueViolation reports whether err is a UNIQUE or PRIMARY KEY
	// constraint failure.
	isUniqueViolation func(err error) bool
}

var sqliteDialect = &dialect{
	name: "sqlite",
	schemaTokens: map[string]string{
		"{{BLOB}}":      "BLOB",
		"{{SERIAL_PK}}": "INTEGER PRIMARY KEY AUTOINCREMENT",
	},
	rebind: func(q string) string { return q },
	isUniqueViolation: func(err error) bool {
		var e *sqlite.Error
		if !errors.As(err, &e) {
			return false
		}
		return e.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE || e.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
	},
}

// schema expands the {{TOKENS}} of a migration statement.
func (d *dialect) schema(stmt string) string {
	for token, sqlType := range d.schemaTokens {
		stmt = strings.ReplaceAll(stmt, token, sqlType)
	}
	return stmt
}
