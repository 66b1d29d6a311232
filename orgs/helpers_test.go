package orgs

import (
	"context"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
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

// fakeClock is a clock tests move by hand.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func newTestAuthenticator(t testing.TB, s *DB, cfg AuthConfig) *Authenticator {
	t.Helper()
	a, err := NewAuthenticator(s, cfg)
	if err != nil {
		t.Fatalf("NewAuthenticator: %v", err)
	}
	t.Cleanup(a.Close)
	return a
}
