package orgs

import (
	"context"
	"testing"
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
