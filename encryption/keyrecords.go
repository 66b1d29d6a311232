package encryption

import (
	"context"
	"errors"
	"time"
)

// KeyRecord is what the metadata store keeps for one CMEK key of an org:
// only wrapped halves, never the key bytes themselves.
type KeyRecord struct {
	KeyID              string // random, URL-safe; becomes a partition segment
	OrgID              string
	CustomerKeyURI     string
	WrappedCustomerKey []byte
	OperatorKeyURI     string
	WrappedOperatorKey []byte
	Created            time.Time
	LastRewrapped      time.Time
}

// KMSStatus is the last outcome of talking to the customer's KMS for an
// org, shown to admins as "key health".
type KMSStatus struct {
	LastSuccess        time.Time
	LastFailure        time.Time
	LastFailureMessage string
}

// ErrNoKeyRecord is returned by KeyRecordStore.CurrentKey when the org has
// CMEK turned off.
var ErrNoKeyRecord = errors.New("no encryption key record: CMEK is off for this org")

// KeyRecordStore is the part of the metadata store (package orgs) that the
// CMEK lifecycle needs. Each method is one transaction.
type KeyRecordStore interface {
	// CurrentKey returns the org's active key record, or ErrNoKeyRecord.
	CurrentKey(ctx context.Context, orgID string) (KeyRecord, error)
	// EnableKey stores rec and makes it the org's active key (turning the
	// org's encryption flag on), replacing any earlier record of the org.
	EnableKey(ctx context.Context, rec KeyRecord) error
	// DisableKeys deletes every key record of the org and clears the flag.
	DisableKeys(ctx context.Context, orgID string) error
	// ListKeyRecords returns every active key record (for the re-wrap job).
	ListKeyRecords(ctx context.Context) ([]KeyRecord, error)
	// UpdateWrappedKeys replaces both wrapped halves of a record after a re-wrap.
	UpdateWrappedKeys(ctx context.Context, keyID string, wrappedCustomer, wrappedOperator []byte, at time.Time) error
	// RecordKMSStatus stores the outcome of a KMS call for the org's key health.
	RecordKMSStatus(ctx context.Context, orgID string, success bool, message string, at time.Time) error
	// KMSStatus reads what RecordKMSStatus stored.
	KMSStatus(ctx context.Context, orgID string) (KMSStatus, error)
}

// Auditor records events in an org's audit log. actorKeyID is the API key
// that caused the event, or "system" for background work.
type Auditor interface {
	Audit(ctx context.Context, orgID, actorKeyID, action, details string) error
}
