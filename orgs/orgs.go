package orgs

import (
	"context"
	"fmt"
	"time"
)

// Org is one tenant. Its ID (not its name) partitions storage.
type Org struct {
	ID                string // "o" + 12 chars of [a-z2-7]; a storage path segment
	Name              string // unique, DNS-label style, chosen by the operator
	Created           time.Time
	EncryptionEnabled bool // CMEK is on: see the key_records table
}

// MaxOrgNameLength is the longest org name accepted (a DNS label).
const MaxOrgNameLength = 63

// ValidateOrgName checks that name is 1-63 characters of a-z, 0-9 and '-',
// starting and ending with a letter or digit.
func ValidateOrgName(name string) error {
	bad := func(why string) error {
		return fmt.Errorf("%w: org name %q %s: use 1-%d characters a-z, 0-9 and '-', starting and ending with a letter or digit",
			ErrInvalidArgument, name, why, MaxOrgNameLength)
	}
	if name == "" {
		return bad("is empty")
	}
	if len(name) > MaxOrgNameLength {
		return bad(fmt.Sprintf("is %d characters long", len(name)))
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return bad(fmt.Sprintf("contains %q", rune(c)))
		}
	}
	if name[0] == '-' || name[len(name)-1] == '-' {
		return bad("starts or ends with '-'")
	}
	return nil
}

const orgColumns = `id, name, created, encryption_enabled`

func scanOrg(row interface{ Scan(...any) error }) (Org, error) {
	var o Org
	var created int64
	if err := row.Scan(&o.ID, &o.Name, &created, &o.EncryptionEnabled); err != nil {
		return Org{}, err
	}
	o.Created = fromNanos(created)
	return o, nil
}

// CreateOrg creates an org with a new random id. The name must be valid
// (see ValidateOrgName) and unused, else ErrInvalidArgument or
// ErrAlreadyExists.
func (s *DB) CreateOrg(ctx context.Context, name string) (Org, error) {
	return s.createOrg(ctx, s.run(), name)
}

func (s *DB) createOrg(ctx context.Context, r runner, name string) (Org, error) {
	if err := ValidateOrgName(name); err != nil {
		return Org{}, err
	}
	o := Org{ID: newID("o"), Name: name, Created: time.Now().UTC()}
	_, err := r.exec(ctx, `INSERT INTO orgs (id, name, created) VALUES (?, ?, ?)`, o.ID, o.Name, toNanos(o.Created))
	if s.dialect.isUniqueViolation(err) {
		return Org{}, fmt.Errorf("org %q: %w: pick another name", name, ErrAlreadyExists)
	}
	if err != nil {
		return Org{}, fmt.Errorf("creating org %q: %w", name, err)
	}
	return o, nil
}

// GetOrg returns the org with the given id, or ErrNotFound.
func (s *DB) GetOrg(ctx context.Context, id string) (Org, error) {
	o, err := scanOrg(s.run().queryRow(ctx, `SELECT `+orgColumns+` FROM orgs WHERE id = ?`, id))
	if err != nil {
		return Org{}, notFound(err, fmt.Sprintf("org id %q", id))
	}
	return o, nil
}

// GetOrgByName returns the org with the given name, or ErrNotFound.
func (s *DB) GetOrgByName(ctx context.Context, name string) (Org, error) {
	o, err := scanOrg(s.run().queryRow(ctx, `SELECT `+orgColumns+` FROM orgs WHERE name = ?`, name))
	if err != nil {
		return Org{}, notFound(err, fmt.Sprintf("org %q", name))
	}
	return o, nil
}

// ListOrgs returns every org, ordered by name.
func (s *DB) ListOrgs(ctx context.Context) ([]Org, error) {
	rows, err := s.run().query(ctx, `SELECT `+orgColumns+` FROM orgs ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("listing orgs: %w", err)
	}
	defer rows.Close()
	var out []Org
	for rows.Next() {
		o, err := scanOrg(rows)
		if err != nil {
			return nil, fmt.Errorf("listing orgs: %w", err)
		}
		out = append(out, o)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing orgs: %w", err)
	}
	return out, nil
}

// DeleteOrg deletes the org, its CMEK key records (first, so its data is
// crypto-shredded even if a later step failed; erased from the store's
// files afterwards, see shred.go), its API keys and its audit events, in
// one transaction. Operator audit events (org id "") are kept, so the
// deletion itself stays on record, and so are the fingerprints of the
// org's shredded keys (see LeftoverKeyMaterial). Authenticators built on
// this store forget the org's keys at once; other nodes' through Watch.
func (s *DB) DeleteOrg(ctx context.Context, id string) error {
	if id == "" {
		// "" is the operator's pseudo-org; never match its audit events.
		return fmt.Errorf("deleting org: empty org id: %w", ErrNotFound)
	}
	err := s.inTx(ctx, func(r runner) error {
		if err := r.lockOrg(ctx, id); err != nil {
			return err
		}
		if _, err := r.deleteKeyRecords(ctx, id, time.Now()); err != nil {
			return err
		}
		for _, stmt := range []string{
			`DELETE FROM api_keys WHERE org_id = ?`,
			`DELETE FROM audit_events WHERE org_id = ?`,
		} {
			if _, err := r.exec(ctx, stmt, id); err != nil {
				return err
			}
		}
		res, err := r.exec(ctx, `DELETE FROM orgs WHERE id = ?`, id)
		if err := affectedOne(res, err, fmt.Sprintf("org id %q", id)); err != nil {
			return err
		}
		return r.notify(ctx, Change{Kind: OrgDeleted, OrgID: id})
	})
	if err != nil {
		return fmt.Errorf("deleting org: %w", err)
	}
	s.invalidateAuthCaches()
	return s.afterShred(ctx, "deleting org")
}
