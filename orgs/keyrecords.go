package orgs

import (
	"context"
	"crypto/subtle"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/sealcache/sealcache/encryption"
)

// The CMEK key records: only wrapped key halves are stored (see
// encryption.KeyRecord). Each method below is one transaction.

var _ encryption.KeyRecordStore = (*DB)(nil)
var _ encryption.Auditor = (*DB)(nil)

const keyRecordColumns = `key_id, org_id, customer_key_uri, wrapped_customer_key, operator_key_uri, wrapped_operator_key, created, last_rewrapped`

func scanKeyRecord(row interface{ Scan(...any) error }) (encryption.KeyRecord, error) {
	var rec encryption.KeyRecord
	var created, rewrapped int64
	err := row.Scan(&rec.KeyID, &rec.OrgID, &rec.CustomerKeyURI, &rec.WrappedCustomerKey,
		&rec.OperatorKeyURI, &rec.WrappedOperatorKey, &created, &rewrapped)
	if err != nil {
		return encryption.KeyRecord{}, err
	}
	rec.Created, rec.LastRewrapped = fromNanos(created), fromNanos(rewrapped)
	return rec, nil
}

// CurrentKey returns the org's active key record, or
// encryption.ErrNoKeyRecord when CMEK is off (or the org does not exist).
func (s *DB) CurrentKey(ctx context.Context, orgID string) (encryption.KeyRecord, error) {
	rec, err := scanKeyRecord(s.run().queryRow(ctx,
		`SELECT `+keyRecordColumns+` FROM key_records WHERE org_id = ? ORDER BY created DESC LIMIT 1`, orgID))
	if err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return encryption.KeyRecord{}, fmt.Errorf("org id %q: %w", orgID, encryption.ErrNoKeyRecord)
		}
		return encryption.KeyRecord{}, fmt.Errorf("reading key record of org %q: %w", orgID, err)
	}
	return rec, nil
}

func validateKeyRecord(rec encryption.KeyRecord) error {
	missing := ""
	switch {
	case rec.KeyID == "":
		missing = "KeyID"
	case rec.OrgID == "":
		missing = "OrgID"
	case rec.CustomerKeyURI == "":
		missing = "CustomerKeyURI"
	case len(rec.WrappedCustomerKey) == 0:
		missing = "WrappedCustomerKey"
	case rec.OperatorKeyURI == "":
		missing = "OperatorKeyURI"
	case len(rec.WrappedOperatorKey) == 0:
		missing = "WrappedOperatorKey"
	default:
		return nil
	}
	return fmt.Errorf("%w: key record has no %s", ErrInvalidArgument, missing)
}

// EnableKey stores rec as the org's only key record and turns the org's
// encryption flag on, in one transaction. Earlier records of the org are
// deleted (their data becomes unreadable) and erased from the store's
// files (see shred.go). ErrNotFound if the org does not exist;
// ErrAlreadyExists if rec.KeyID is used by another record.
func (s *DB) EnableKey(ctx context.Context, rec encryption.KeyRecord) error {
	if err := validateKeyRecord(rec); err != nil {
		return err
	}
	if rec.Created.IsZero() {
		rec.Created = time.Now().UTC()
	}
	if rec.LastRewrapped.IsZero() {
		rec.LastRewrapped = rec.Created
	}
	replaced := 0
	err := s.inTx(ctx, func(r runner) error {
		if err := r.lockOrg(ctx, rec.OrgID); err != nil {
			return err
		}
		if _, err := r.exec(ctx, `UPDATE orgs SET encryption_enabled = 1 WHERE id = ?`, rec.OrgID); err != nil {
			return err
		}
		var err error
		if replaced, err = r.deleteKeyRecords(ctx, rec.OrgID, time.Now()); err != nil {
			return err
		}
		_, err = r.exec(ctx, `INSERT INTO key_records (`+keyRecordColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
			rec.KeyID, rec.OrgID, rec.CustomerKeyURI, rec.WrappedCustomerKey,
			rec.OperatorKeyURI, rec.WrappedOperatorKey, toNanos(rec.Created), toNanos(rec.LastRewrapped))
		if s.dialect.isUniqueViolation(err) {
			return fmt.Errorf("key id %q: %w", rec.KeyID, ErrAlreadyExists)
		}
		if err != nil {
			return err
		}
		return r.notify(ctx, Change{Kind: KeyRecordsChanged, OrgID: rec.OrgID, KeyID: rec.KeyID})
	})
	if err != nil {
		return fmt.Errorf("enabling encryption key: %w", err)
	}
	if replaced > 0 {
		return s.afterShred(ctx, "enabling encryption key (replacing the previous one)")
	}
	return nil
}

// DisableKeys deletes every key record of the org and clears its
// encryption flag, in one transaction, then erases the deleted records
// from the store's files (see shred.go). ErrNotFound if the org does not
// exist.
func (s *DB) DisableKeys(ctx context.Context, orgID string) error {
	err := s.inTx(ctx, func(r runner) error {
		if err := r.lockOrg(ctx, orgID); err != nil {
			return err
		}
		if _, err := r.deleteKeyRecords(ctx, orgID, time.Now()); err != nil {
			return err
		}
		if _, err := r.exec(ctx, `UPDATE orgs SET encryption_enabled = 0 WHERE id = ?`, orgID); err != nil {
			return err
		}
		return r.notify(ctx, Change{Kind: KeyRecordsChanged, OrgID: orgID})
	})
	if err != nil {
		return fmt.Errorf("disabling encryption keys: %w", err)
	}
	// Always, even when there was nothing to delete: disabling again is
	// how an earlier purge that failed is finished.
	return s.afterShred(ctx, "disabling encryption keys")
}

// ListKeyRecords returns every key record, for the re-wrap job.
func (s *DB) ListKeyRecords(ctx context.Context) ([]encryption.KeyRecord, error) {
	rows, err := s.run().query(ctx, `SELECT `+keyRecordColumns+` FROM key_records ORDER BY org_id, key_id`)
	if err != nil {
		return nil, fmt.Errorf("listing key records: %w", err)
	}
	defer rows.Close()
	var out []encryption.KeyRecord
	for rows.Next() {
		rec, err := scanKeyRecord(rows)
		if err != nil {
			return nil, fmt.Errorf("listing key records: %w", err)
		}
		out = append(out, rec)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing key records: %w", err)
	}
	return out, nil
}

// UpdateWrappedKeys replaces both wrapped halves of a record after a
// re-wrap; the old halves are erased from the store's files (see
// shred.go). ErrNotFound if the record is gone (CMEK was disabled
// meanwhile: the re-wrap result must then be dropped, not resurrected).
func (s *DB) UpdateWrappedKeys(ctx context.Context, keyID string, wrappedCustomer, wrappedOperator []byte, at time.Time) error {
	if len(wrappedCustomer) == 0 || len(wrappedOperator) == 0 {
		return fmt.Errorf("%w: re-wrapped keys of %q are empty", ErrInvalidArgument, keyID)
	}
	err := s.inTx(ctx, func(r runner) error {
		// Lock the record: two nodes re-wrapping at once must each
		// fingerprint the halves they replace.
		var orgID string
		var oldCustomer, oldOperator []byte
		err := r.queryRow(ctx, `SELECT org_id, wrapped_customer_key, wrapped_operator_key FROM key_records WHERE key_id = ?`+s.dialect.forUpdate, keyID).
			Scan(&orgID, &oldCustomer, &oldOperator)
		if err != nil {
			return notFound(err, fmt.Sprintf("key record %q", keyID))
		}
		_, err = r.exec(ctx, `UPDATE key_records SET wrapped_customer_key = ?, wrapped_operator_key = ?, last_rewrapped = ? WHERE key_id = ?`,
			wrappedCustomer, wrappedOperator, toNanos(at), keyID)
		if err != nil {
			return err
		}
		// A half the re-wrap left unchanged is still live: not shredded.
		if subtle.ConstantTimeCompare(oldCustomer, wrappedCustomer) == 1 {
			clear(oldCustomer)
			oldCustomer = nil
		}
		if subtle.ConstantTimeCompare(oldOperator, wrappedOperator) == 1 {
			clear(oldOperator)
			oldOperator = nil
		}
		if err := r.shredHalves(ctx, orgID, keyID, oldCustomer, oldOperator, time.Now()); err != nil {
			return err
		}
		return r.notify(ctx, Change{Kind: KeyRecordsChanged, OrgID: orgID, KeyID: keyID})
	})
	if err != nil {
		return fmt.Errorf("updating wrapped keys: %w", err)
	}
	return s.afterShred(ctx, "updating wrapped keys")
}

// RecordKMSStatus stores the outcome of a KMS call for the org's key
// health: a success sets LastSuccess; a failure sets LastFailure and its
// message. ErrNotFound if the org does not exist.
func (s *DB) RecordKMSStatus(ctx context.Context, orgID string, success bool, message string, at time.Time) error {
	query, args := `UPDATE orgs SET kms_last_success = ? WHERE id = ?`, []any{toNanos(at), orgID}
	if !success {
		query, args = `UPDATE orgs SET kms_last_failure = ?, kms_last_failure_message = ? WHERE id = ?`, []any{toNanos(at), message, orgID}
	}
	res, err := s.run().exec(ctx, query, args...)
	if err := affectedOne(res, err, fmt.Sprintf("org id %q", orgID)); err != nil {
		return fmt.Errorf("recording KMS status: %w", err)
	}
	return nil
}

// KMSStatus returns what RecordKMSStatus stored (zero times: never).
func (s *DB) KMSStatus(ctx context.Context, orgID string) (encryption.KMSStatus, error) {
	var st encryption.KMSStatus
	var success, failure int64
	err := s.run().queryRow(ctx, `SELECT kms_last_success, kms_last_failure, kms_last_failure_message FROM orgs WHERE id = ?`, orgID).
		Scan(&success, &failure, &st.LastFailureMessage)
	if err != nil {
		return encryption.KMSStatus{}, fmt.Errorf("reading KMS status: %w", notFound(err, fmt.Sprintf("org id %q", orgID)))
	}
	st.LastSuccess, st.LastFailure = fromNanos(success), fromNanos(failure)
	return st, nil
}
