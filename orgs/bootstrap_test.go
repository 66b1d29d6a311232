package orgs

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/sealcache/sealcache/internal/pgtest"
)

func TestBootstrapFirstStartThenSecondStart(t *testing.T) {
	eachStore(t, func(t *testing.T, st testStore) {
		ctx := context.Background()
		s := st.DB

		first, err := s.Bootstrap(ctx)
		if err != nil {
			t.Fatalf("Bootstrap: %v", err)
		}
		if !first.Created || first.DefaultOrg.Name != DefaultOrgName || first.AdminSecret == "" || first.OperatorSecret == "" {
			t.Fatalf("first Bootstrap = %+v, want the default org and two secrets", first)
		}

		a := newTestAuthenticator(t, s, AuthConfig{})
		admin, err := a.Authenticate(ctx, first.AdminSecret)
		if err != nil || admin.Role != RoleAdmin || admin.OrgID != first.DefaultOrg.ID || admin.Label != "initial admin" {
			t.Errorf("admin secret authenticates as %+v, %v", admin, err)
		}
		op, err := a.Authenticate(ctx, first.OperatorSecret)
		if err != nil || op.Role != RoleOperator || op.OrgID != "" || op.Label != "initial operator" {
			t.Errorf("operator secret authenticates as %+v, %v", op, err)
		}
		a.Close()
		s.Close()

		s2 := st.another(t)
		second, err := s2.Bootstrap(ctx)
		if err != nil {
			t.Fatalf("second Bootstrap: %v", err)
		}
		if second.Created || second.AdminSecret != "" || second.OperatorSecret != "" {
			t.Fatalf("second Bootstrap = %+v, want Created=false and no secrets", second)
		}
		if orgs, _ := s2.ListOrgs(ctx); len(orgs) != 1 {
			t.Errorf("after two bootstraps there are %d orgs, want 1", len(orgs))
		}
	})
}

func TestBootstrapLeavesAStoreWithOrgsAlone(t *testing.T) {
	eachStore(t, func(t *testing.T, st testStore) {
		s := st.DB
		mustCreateOrg(t, s, "acme")
		res, err := s.Bootstrap(context.Background())
		if err != nil || res.Created {
			t.Fatalf("Bootstrap on a store with an org = %+v, %v; want Created=false", res, err)
		}
	})
}

// TestBootstrapOnceWhenNodesStartTogether: three nodes open one fresh
// store at the same moment (migrations and all) and bootstrap it; exactly
// one creates the default org and its keys.
func TestBootstrapOnceWhenNodesStartTogether(t *testing.T) {
	for _, kind := range []struct {
		name string
		open func(t *testing.T) func() (*DB, error)
	}{
		{"sqlite", func(t *testing.T) func() (*DB, error) {
			path := filepath.Join(t.TempDir(), "meta.db")
			return func() (*DB, error) { return OpenSQLite(path) }
		}},
		{"postgres", func(t *testing.T) func() (*DB, error) {
			url := pgtest.NewDatabase(t)
			return func() (*DB, error) { return OpenPostgres(context.Background(), url) }
		}},
	} {
		t.Run(kind.name, func(t *testing.T) {
			open := kind.open(t)
			const nodes = 3
			start := make(chan struct{})
			type outcome struct {
				s   *DB
				res BootstrapResult
				err error
			}
			outcomes := make(chan outcome, nodes)
			for range nodes {
				go func() {
					<-start
					s, err := open()
					if err != nil {
						outcomes <- outcome{err: fmt.Errorf("open: %w", err)}
						return
					}
					res, err := s.Bootstrap(context.Background())
					outcomes <- outcome{s: s, res: res, err: err}
				}()
			}
			close(start)
			created := 0
			var node *DB
			for range nodes {
				o := <-outcomes
				if o.s != nil {
					t.Cleanup(func() { o.s.Close() })
					node = o.s
				}
				if o.err != nil {
					t.Fatalf("a node failed to start: %v", o.err)
				}
				if o.res.Created {
					created++
				}
			}
			if created != 1 {
				t.Fatalf("%d nodes report Created, want exactly 1", created)
			}
			orgs, _ := node.ListOrgs(context.Background())
			operators, _ := node.ListAPIKeys(context.Background(), "")
			if len(orgs) != 1 || len(operators) != 1 {
				t.Fatalf("after the joint start: %d orgs and %d operator keys, want 1 and 1", len(orgs), len(operators))
			}
		})
	}
}
