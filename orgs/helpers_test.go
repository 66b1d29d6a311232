package orgs

import (
	"context"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sealcache/sealcache/internal/pgtest"
)

// openTestStore opens a fresh SQLite store in a temporary directory.
func openTestStore(t testing.TB) (*DB, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "meta.db")
	s, err := OpenSQLite(path)
	if err != nil {
		t.Fatalf("OpenSQLite: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s, path
}

// testStore is a fresh store of one kind, for tests that must behave the
// same on every database.
type testStore struct {
	*DB
	kind string // "sqlite" or "postgres"
	// another opens one more handle on the same store: another node, or
	// this node after a restart. It is closed when t ends.
	another func(t testing.TB) *DB
}

// storeKinds are the databases every store test runs against.
var storeKinds = []struct {
	name string
	open func(t testing.TB) testStore
}{
	{"sqlite", func(t testing.TB) testStore {
		s, path := openTestStore(t)
		return testStore{DB: s, kind: "sqlite", another: func(t testing.TB) *DB {
			t.Helper()
			s, err := OpenSQLite(path)
			if err != nil {
				t.Fatalf("OpenSQLite: %v", err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		}}
	}},
	{"postgres", func(t testing.TB) testStore {
		url := pgtest.NewDatabase(t)
		open := func(t testing.TB) *DB {
			t.Helper()
			s, err := OpenPostgres(context.Background(), url)
			if err != nil {
				t.Fatalf("OpenPostgres: %v", err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		}
		return testStore{DB: open(t), kind: "postgres", another: open}
	}},
}

// eachStore runs test once per database kind, as subtests.
func eachStore(t *testing.T, test func(t *testing.T, s testStore)) {
	for _, k := range storeKinds {
		t.Run(k.name, func(t *testing.T) { test(t, k.open(t)) })
	}
}

// settleChangeFeed waits until s receives changes from every node (on
// PostgreSQL, its LISTEN connection is up) and everything published so far
// was delivered, so a test's next step is not overtaken by a late Resync.
func settleChangeFeed(t testing.TB, s *DB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), eventTimeout)
	defer cancel()
	if s.listen != nil {
		select {
		case <-s.changes.whenListening():
		case <-ctx.Done():
			t.Fatalf("the change feed did not start listening within %v", eventTimeout)
		}
	}
	if err := s.changes.settle(ctx); err != nil {
		t.Fatalf("change feed did not settle: %v", err)
	}
}

// eventTimeout bounds every wait for an event: a safety net for a broken
// feed, not synchronisation.
const eventTimeout = 10 * time.Second

func mustCreateOrg(t testing.TB, s *DB, name string) Org {
	t.Helper()
	o, err := s.CreateOrg(context.Background(), name)
	if err != nil {
		t.Fatalf("CreateOrg(%q): %v", name, err)
	}
	return o
}

func mustCreateKey(t testing.TB, s *DB, orgID string, role Role) (APIKey, string) {
	t.Helper()
	k, secret, err := s.CreateAPIKey(context.Background(), orgID, role, "test "+string(role))
	if err != nil {
		t.Fatalf("CreateAPIKey(%q, %s): %v", orgID, role, err)
	}
	return k, secret
}

// queryCounter counts statements that contain a substring, through the
// store's query hook.
type queryCounter struct{ n atomic.Int64 }

func countQueries(s *DB, contains string) *queryCounter {
	c := &queryCounter{}
	s.setQueryHook(func(q string) {
		if strings.Contains(q, contains) {
			c.n.Add(1)
		}
	})
	return c
}

func newTestAuthenticator(t testing.TB, s *DB, cfg AuthConfig) *Authenticator {
	t.Helper()
	a, err := NewAuthenticator(s, cfg)
	if err != nil {
		t.Fatalf("NewAuthenticator: %v", err)
	}
	t.Cleanup(a.Close)
	settleChangeFeed(t, s)
	return a
}
