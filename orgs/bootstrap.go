package orgs

import (
	"context"
	"fmt"
)

// DefaultOrgName is the org Bootstrap creates.
const DefaultOrgName = "default"

// BootstrapResult says what Bootstrap did. The secrets are set only when
// Created is true; they are shown this once and never stored.
type BootstrapResult struct {
	Created        bool
	DefaultOrg     Org
	AdminSecret    string // admin key of DefaultOrg, labelled "initial admin"
	OperatorSecret string // operator key, labelled "initial operator"
}

// Bootstrap makes a fresh store usable: if it holds no org and no API key,
// it creates the org "default", an admin key for it and an operator key, in
// one transaction, and returns their secrets. On any other store it changes
// nothing and returns Created false. Nodes starting together on one fresh
// PostgreSQL database bootstrap it once: exactly one gets Created true.
func (s *DB) Bootstrap(ctx context.Context) (BootstrapResult, error) {
	var res BootstrapResult
	err := s.inTx(ctx, func(r runner) error {
		// Taken before counting, so a node that waited sees what the first
		// one created.
		if err := r.lock(ctx, lockBootstrap); err != nil {
			return err
		}
		var orgs, keys int
		if err := r.queryRow(ctx, `SELECT COUNT(*) FROM orgs`).Scan(&orgs); err != nil {
			return err
		}
		if err := r.queryRow(ctx, `SELECT COUNT(*) FROM api_keys`).Scan(&keys); err != nil {
			return err
		}
		if orgs > 0 || keys > 0 {
			return nil
		}
		org, err := s.createOrg(ctx, r, DefaultOrgName)
		if err != nil {
			return err
		}
		_, adminSecret, err := s.createAPIKey(ctx, r, org.ID, RoleAdmin, "initial admin")
		if err != nil {
			return err
		}
		_, operatorSecret, err := s.createAPIKey(ctx, r, "", RoleOperator, "initial operator")
		if err != nil {
			return err
		}
		res = BootstrapResult{Created: true, DefaultOrg: org, AdminSecret: adminSecret, OperatorSecret: operatorSecret}
		return nil
	})
	if err != nil {
		return BootstrapResult{}, fmt.Errorf("bootstrapping metadata store: %w", err)
	}
	return res, nil
}
