package orgs

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// APIKey is an API key's record. It never carries the secret or its hash.
type APIKey struct {
	ID       string // "k" + 12 chars of [a-z2-7]; also the middle part of the secret
	OrgID    string // "" for operator keys
	Role     Role
	Label    string
	Created  time.Time
	LastUsed time.Time // zero if never used; updated at most once a minute
}

// Secret format: "sck_" + key id + "_" + base64url(32 random bytes).
// The key id inside the secret lets Authenticate find the record by primary
// key instead of scanning hashes.
const (
	secretPrefix      = "sck_"
	secretRandomBytes = 32
	// MaxAPIKeyLabelLength bounds labels shown in the UI and audit log.
	MaxAPIKeyLabelLength = 200
)

var secretRandomLen = base64.RawURLEncoding.EncodedLen(secretRandomBytes)

// newSecret returns a fresh secret for keyID.
func newSecret(keyID string) string {
	var b [secretRandomBytes]byte
	rand.Read(b[:]) // never fails (crypto/rand since Go 1.24)
	secret := secretPrefix + keyID + "_" + base64.RawURLEncoding.EncodeToString(b[:])
	clear(b[:])
	return secret
}

// parseSecret extracts the key id from a secret, or reports it malformed.
// It checks shape only; the hash comparison decides authenticity.
func parseSecret(secret string) (keyID string, ok bool) {
	rest, ok := strings.CutPrefix(secret, secretPrefix)
	if !ok {
		return "", false
	}
	keyID, random, ok := strings.Cut(rest, "_")
	if !ok || !validKeyID(keyID) || len(random) != secretRandomLen {
		return "", false
	}
	return keyID, true
}

func validKeyID(id string) bool {
	if len(id) < 2 || len(id) > 32 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// hashSecret is what the database stores instead of the secret.
//
// A fast hash (SHA-256) is right here, unlike for passwords: the secret
// carries 256 bits of randomness, so there is nothing to brute-force and a
// slow KDF would only cost CPU on every cache miss.
func hashSecret(secret string) [sha256.Size]byte {
	return sha256.Sum256([]byte(secret))
}

func validateLabel(label string) error {
	if utf8.RuneCountInString(label) > MaxAPIKeyLabelLength || !utf8.ValidString(label) || strings.ContainsAny(label, "\r\n\x00") {
		return fmt.Errorf("%w: API key label must be valid UTF-8 on one line, at most %d characters", ErrInvalidArgument, MaxAPIKeyLabelLength)
	}
	return nil
}

// CreateAPIKey creates a key for the org with the given role and returns
// it with its secret. The secret is shown only here: the store keeps its
// SHA-256. Operator keys are created with orgID ""; every other role needs
// an existing org.
func (s *DB) CreateAPIKey(ctx context.Context, orgID string, role Role, label string) (APIKey, string, error) {
	var key APIKey
	var secret string
	err := s.inTx(ctx, func(r runner) error {
		var err error
		key, secret, err = s.createAPIKey(ctx, r, orgID, role, label)
		return err
	})
	if err != nil {
		return APIKey{}, "", err
	}
	return key, secret, nil
}

func (s *DB) createAPIKey(ctx context.Context, r runner, orgID string, role Role, label string) (APIKey, string, error) {
	if _, err := ParseRole(string(role)); err != nil {
		return APIKey{}, "", err
	}
	if err := validateLabel(label); err != nil {
		return APIKey{}, "", err
	}
	var orgColumn sql.NullString
	switch {
	case role == RoleOperator && orgID != "":
		return APIKey{}, "", fmt.Errorf("%w: operator keys belong to no org: create them with an empty org id", ErrInvalidArgument)
	case role != RoleOperator && orgID == "":
		return APIKey{}, "", fmt.Errorf("%w: a %s key needs an org id", ErrInvalidArgument, role)
	case role != RoleOperator:
		var one int
		if err := r.queryRow(ctx, `SELECT 1 FROM orgs WHERE id = ?`, orgID).Scan(&one); err != nil {
			return APIKey{}, "", fmt.Errorf("creating API key: %w", notFound(err, fmt.Sprintf("org id %q", orgID)))
		}
		orgColumn = sql.NullString{String: orgID, Valid: true}
	}

	key := APIKey{ID: newID("k"), OrgID: orgID, Role: role, Label: label, Created: time.Now().UTC()}
	secret := newSecret(key.ID)
	hash := hashSecret(secret)
	_, err := r.exec(ctx, `INSERT INTO api_keys (id, org_id, role, label, secret_sha256, created) VALUES (?, ?, ?, ?, ?, ?)`,
		key.ID, orgColumn, string(role), label, hash[:], toNanos(key.Created))
	if err != nil {
		return APIKey{}, "", fmt.Errorf("creating API key: %w", err)
	}
	return key, secret, nil
}

const apiKeyColumns = `id, org_id, role, label, created, last_used`

func scanAPIKey(row interface{ Scan(...any) error }, extra ...any) (APIKey, error) {
	var k APIKey
	var org sql.NullString
	var role string
	var created, lastUsed int64
	dest := append([]any{&k.ID, &org, &role, &k.Label, &created, &lastUsed}, extra...)
	if err := row.Scan(dest...); err != nil {
		return APIKey{}, err
	}
	k.OrgID, k.Role, k.Created, k.LastUsed = org.String, Role(role), fromNanos(created), fromNanos(lastUsed)
	return k, nil
}

// GetAPIKey returns the key record with the given id, or ErrNotFound.
// Callers that act for an org must check the OrgID of the result.
func (s *DB) GetAPIKey(ctx context.Context, keyID string) (APIKey, error) {
	k, err := scanAPIKey(s.run().queryRow(ctx, `SELECT `+apiKeyColumns+` FROM api_keys WHERE id = ?`, keyID))
	if err != nil {
		return APIKey{}, notFound(err, fmt.Sprintf("API key %q", keyID))
	}
	return k, nil
}

// apiKeyWithHash returns the record and the stored SHA-256 of its secret,
// for Authenticator only.
func (s *DB) apiKeyWithHash(ctx context.Context, keyID string) (APIKey, []byte, error) {
	var hash []byte
	k, err := scanAPIKey(s.run().queryRow(ctx, `SELECT `+apiKeyColumns+`, secret_sha256 FROM api_keys WHERE id = ?`, keyID), &hash)
	if err != nil {
		return APIKey{}, nil, notFound(err, "API key")
	}
	return k, hash, nil
}

// ListAPIKeys returns the org's keys, oldest first; orgID "" lists the
// operator keys. Secrets and hashes are never returned.
func (s *DB) ListAPIKeys(ctx context.Context, orgID string) ([]APIKey, error) {
	query, args := `SELECT `+apiKeyColumns+` FROM api_keys WHERE org_id = ? ORDER BY created, id`, []any{orgID}
	if orgID == "" {
		query, args = `SELECT `+apiKeyColumns+` FROM api_keys WHERE org_id IS NULL ORDER BY created, id`, nil
	}
	rows, err := s.run().query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("listing API keys: %w", err)
	}
	defer rows.Close()
	var out []APIKey
	for rows.Next() {
		k, err := scanAPIKey(rows)
		if err != nil {
			return nil, fmt.Errorf("listing API keys: %w", err)
		}
		out = append(out, k)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing API keys: %w", err)
	}
	return out, nil
}

// RevokeAPIKey deletes the key if it belongs to orgID ("" for operator
// keys), else returns ErrNotFound. It refuses, with ErrLastAdminKey, to
// revoke the org's last admin key: nobody could manage the org afterwards.
// The check and the delete are one transaction holding the org's row, so
// two admins revoking each other at the same moment (on any nodes) leave
// one of them. Authenticators built on this store stop accepting the key
// at once; other nodes' as soon as their Watch delivers the change.
func (s *DB) RevokeAPIKey(ctx context.Context, orgID, keyID string) error {
	err := s.inTx(ctx, func(r runner) error {
		if orgID == "" {
			res, err := r.exec(ctx, `DELETE FROM api_keys WHERE id = ? AND org_id IS NULL`, keyID)
			if err := affectedOne(res, err, fmt.Sprintf("API key %q", keyID)); err != nil {
				return err
			}
			return r.notify(ctx, Change{Kind: APIKeyRevoked, KeyID: keyID})
		}
		if err := r.lockOrg(ctx, orgID); errors.Is(err, ErrNotFound) {
			return fmt.Errorf("API key %q: %w", keyID, ErrNotFound)
		} else if err != nil {
			return err
		}
		var role string
		err := r.queryRow(ctx, `SELECT role FROM api_keys WHERE id = ? AND org_id = ?`, keyID, orgID).Scan(&role)
		if err != nil {
			return notFound(err, fmt.Sprintf("API key %q", keyID))
		}
		if Role(role) == RoleAdmin {
			var admins int
			err := r.queryRow(ctx, `SELECT COUNT(*) FROM api_keys WHERE org_id = ? AND role = ?`, orgID, string(RoleAdmin)).Scan(&admins)
			if err != nil {
				return err
			}
			if admins <= 1 {
				return fmt.Errorf("API key %q: %w", keyID, ErrLastAdminKey)
			}
		}
		if _, err := r.exec(ctx, `DELETE FROM api_keys WHERE id = ?`, keyID); err != nil {
			return err
		}
		return r.notify(ctx, Change{Kind: APIKeyRevoked, OrgID: orgID, KeyID: keyID})
	})
	if err != nil {
		return fmt.Errorf("revoking API key: %w", err)
	}
	s.invalidateAuthCaches()
	return nil
}

// touchAPIKey records a use of the key. The condition keeps LastUsed
// moving forward when several nodes write.
func (s *DB) touchAPIKey(ctx context.Context, keyID string, at time.Time) error {
	_, err := s.run().exec(ctx, `UPDATE api_keys SET last_used = ? WHERE id = ? AND last_used < ?`, toNanos(at), keyID, toNanos(at))
	return err
}
