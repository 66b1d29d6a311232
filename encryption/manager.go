package encryption

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/sealcache/sealcache/cas"
	"github.com/sealcache/sealcache/encryption/kms"
)

// DefaultRewrapInterval is how often RunRewrapLoop re-wraps every key, so
// a customer's rotated KMS key version is in use within a day.
const DefaultRewrapInterval = 6 * time.Hour

// Fencer runs a function while no upload of the org can publish, and makes
// uploads of the org that started before it fail (cas/fence implements it).
type Fencer interface {
	Fence(ctx context.Context, orgID string, fn func(context.Context) error) error
}

// ManagerConfig configures NewManager. Records, OpenKMS, OperatorKeyURI,
// Objects and Fence are required.
type ManagerConfig struct {
	Records        KeyRecordStore
	OpenKMS        OpenKMSFunc
	Auditor        Auditor      // may be nil
	Keys           *KeyProvider // this node's cache, invalidated on enable and disable; may be nil
	OperatorKeyURI string       // the operator's KMS key, wrapping every org's operator half

	// Objects is the storage backend, where an org's stored objects are
	// deleted when its encryption state changes; Fence keeps uploads that
	// were in flight from landing after such a delete.
	Objects cas.PartitionStore
	Fence   Fencer

	// OperatorPrincipals names the identity this server uses at each KMS
	// provider ("gcp-kms" -> "sealcache@proj.iam.gserviceaccount.com",
	// "aws-kms" -> "arn:aws:iam::1:role/sealcache"), so permission errors can
	// tell the admin exactly what to grant.
	OperatorPrincipals map[string]string
	Now                func() time.Time
}

// Manager changes an org's CMEK state: enable, disable, check, re-wrap.
type Manager struct {
	cfg      ManagerConfig
	wrappers *wrapperCache
	after    func(time.Duration) <-chan time.Time // time.After; tests replace it
	random   func() float64                       // rand.Float64; tests replace it
}

// NewManager checks cfg and fills in defaults.
func NewManager(cfg ManagerConfig) (*Manager, error) {
	if cfg.Records == nil || cfg.OpenKMS == nil || cfg.OperatorKeyURI == "" || cfg.Objects == nil || cfg.Fence == nil {
		return nil, errors.New("encryption: ManagerConfig needs Records, OpenKMS, OperatorKeyURI, Objects and Fence")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Manager{cfg: cfg, wrappers: newWrapperCache(cfg.OpenKMS), after: time.After, random: rand.Float64}, nil
}

// EnableError says why CMEK could not be enabled. Err is usually a
// *kms.Error (errors.As finds it) whose Kind picks the status code; Hint
// says what the admin should do.
type EnableError struct {
	OrgID  string
	KeyURI string // the KMS key that failed
	Step   string // e.g. "opening the customer key"
	Hint   string
	Err    error
}

func (e *EnableError) Error() string {
	msg := fmt.Sprintf("cannot enable CMEK for org %s: %s %s failed: %v", e.OrgID, e.Step, e.KeyURI, e.Err)
	if e.Hint != "" {
		msg += "; " + e.Hint
	}
	return msg
}

func (e *EnableError) Unwrap() error { return e.Err }

// OperatorKeyError refuses to enable CMEK with the operator's own KMS key
// as the customer key: the operator alone could then open the org's data.
type OperatorKeyError struct{ URI string }

func (e *OperatorKeyError) Error() string {
	return e.URI + " is the server operator's own key: CMEK needs a second key that your organization controls, so give the URI of one of your KMS keys"
}

// Enable turns CMEK on for the org with the customer's KMS key. Both KMS
// keys must pass a wrap + unwrap round trip first (of the freshly drawn
// halves themselves); on any failure nothing changes, the attempt is
// audited as "cmek_enable_failed" and an *EnableError is returned.
// Enabling again with the URI already in use returns the current record.
//
// Once the new key is in place, every object the org stored before is
// deleted, fenced against uploads still in flight: no plaintext of the org
// stays on storage, and none can come back if CMEK is disabled later.
func (m *Manager) Enable(ctx context.Context, orgID, actorKeyID, customerKeyURI string) (KeyRecord, error) {
	if _, err := cas.OrgPartition(orgID); err != nil {
		return KeyRecord{}, err
	}
	if customerKeyURI == m.cfg.OperatorKeyURI {
		// Both halves under one key would make the operator alone able to
		// open the org's data: CMEK means the customer's key is needed too.
		return KeyRecord{}, &OperatorKeyError{URI: customerKeyURI}
	}
	cur, err := m.cfg.Records.CurrentKey(ctx, orgID)
	switch {
	case err == nil && cur.CustomerKeyURI == customerKeyURI:
		return cur, nil
	case err != nil && !errors.Is(err, ErrNoKeyRecord):
		return KeyRecord{}, fmt.Errorf("reading the key record of org %s: %w", orgID, err)
	}
	rec, err := m.newKeyRecord(ctx, orgID, customerKeyURI)
	if err == nil {
		if err = m.cfg.Records.EnableKey(ctx, rec); err != nil {
			err = fmt.Errorf("storing the new key record of org %s: %w", orgID, err)
		}
	}
	if err != nil {
		audit(ctx, m.cfg.Auditor, orgID, actorKeyID, "cmek_enable_failed", fmt.Sprintf("uri=%s: %v", customerKeyURI, err))
		return KeyRecord{}, err
	}
	if m.cfg.Keys != nil {
		m.cfg.Keys.Invalidate(orgID)
	}
	m.recordSuccess(ctx, orgID)
	audit(ctx, m.cfg.Auditor, orgID, actorKeyID, "cmek_enabled", fmt.Sprintf("key_id=%s uri=%s", rec.KeyID, customerKeyURI))
	if err := m.deleteObjects(ctx, orgID, actorKeyID, "data stored before enabling"); err != nil {
		return rec, err
	}
	return rec, nil
}

// deleteObjects deletes every stored object of the org, plain and sealed,
// while no upload of the org can publish, and audits how much went. It
// outlives the request: a client hanging up must not leave data behind.
func (m *Manager) deleteObjects(ctx context.Context, orgID, actorKeyID, what string) error {
	ctx = context.WithoutCancel(ctx)
	var freed int64
	err := m.cfg.Fence.Fence(ctx, orgID, func(ctx context.Context) error {
		var err error
		freed, err = m.cfg.Objects.DeletePartition(ctx, cas.Partition(orgID))
		return err
	})
	if err != nil {
		audit(ctx, m.cfg.Auditor, orgID, "system", "data_delete_failed", fmt.Sprintf("%s: %v", what, err))
		return fmt.Errorf("deleting the stored objects of org %s (%s): %w; run the operation again to finish it", orgID, what, err)
	}
	audit(ctx, m.cfg.Auditor, orgID, actorKeyID, "data_deleted", fmt.Sprintf("%s: bytes=%d", what, freed))
	return nil
}

// newKeyRecord draws both halves, checks each KMS key with a round trip of
// its half (operator first, so an operator fault is not blamed on the
// customer's key) and returns the record holding the wrapped halves.
func (m *Manager) newKeyRecord(ctx context.Context, orgID, customerKeyURI string) (KeyRecord, error) {
	operator := newKeyHalf()
	defer clear(operator)
	wrappedOperator, err := m.roundTrip(ctx, orgID, "the operator key", m.cfg.OperatorKeyURI, operator)
	if err != nil {
		return KeyRecord{}, err
	}
	customer := newKeyHalf()
	defer clear(customer)
	wrappedCustomer, err := m.roundTrip(ctx, orgID, "the customer key", customerKeyURI, customer)
	if err != nil {
		return KeyRecord{}, err
	}
	now := m.cfg.Now()
	return KeyRecord{
		KeyID:              newKeyID(),
		OrgID:              orgID,
		CustomerKeyURI:     customerKeyURI,
		WrappedCustomerKey: wrappedCustomer,
		OperatorKeyURI:     m.cfg.OperatorKeyURI,
		WrappedOperatorKey: wrappedOperator,
		Created:            now,
		LastRewrapped:      now,
	}, nil
}

// roundTrip opens uri, wraps key bound to the org id, unwraps it again and
// compares; it returns the wrapped key.
func (m *Manager) roundTrip(ctx context.Context, orgID, which, uri string, key []byte) ([]byte, error) {
	fail := func(step string, err error) error {
		return &EnableError{OrgID: orgID, KeyURI: uri, Step: step + " " + which, Hint: m.hint(uri, err), Err: err}
	}
	w, err := m.wrappers.get(ctx, uri)
	if err != nil {
		return nil, fail("opening", err)
	}
	wrapped, err := w.Wrap(ctx, key, []byte(orgID))
	if err != nil {
		return nil, fail("wrapping with", err)
	}
	back, err := w.Unwrap(ctx, wrapped, []byte(orgID))
	if err != nil {
		return nil, fail("unwrapping with", err)
	}
	defer clear(back)
	if subtle.ConstantTimeCompare(back, key) != 1 {
		return nil, fail("round trip through", &kms.Error{Kind: kms.KindInvalidCiphertext, URI: uri, Op: "unwrap",
			Provider: providerOf(uri), Err: errors.New("unwrapping returned other bytes than were wrapped")})
	}
	return wrapped, nil
}

// Disable deletes the org's key records (its sealed data is then
// crypto-shredded), wipes this node's cached key at once (other nodes stop
// within the record TTL), then deletes the sealed objects themselves, so
// the ciphertext does not wait for eviction either.
func (m *Manager) Disable(ctx context.Context, orgID, actorKeyID string) error {
	if err := m.shredKeys(ctx, orgID); err != nil {
		return err
	}
	audit(ctx, m.cfg.Auditor, orgID, actorKeyID, "cmek_disabled", "key records deleted")
	return m.deleteObjects(ctx, orgID, actorKeyID, "data sealed under the deleted key")
}

// EraseOrg deletes everything stored for an org that is being deleted: its
// key records first (the shred), then every object. The org's other
// records are the caller's to delete.
func (m *Manager) EraseOrg(ctx context.Context, orgID, actorKeyID string) error {
	if _, err := cas.OrgPartition(orgID); err != nil {
		return err
	}
	if err := m.shredKeys(ctx, orgID); err != nil {
		return err
	}
	return m.deleteObjects(ctx, orgID, actorKeyID, "org deleted")
}

func (m *Manager) shredKeys(ctx context.Context, orgID string) error {
	if err := m.cfg.Records.DisableKeys(ctx, orgID); err != nil {
		return fmt.Errorf("deleting the key records of org %s: %w", orgID, err)
	}
	if m.cfg.Keys != nil {
		m.cfg.Keys.Invalidate(orgID)
	}
	return nil
}

// Check unwraps the org's customer half now, records the outcome in the
// key health and returns a *KeyUnavailableError if it failed.
func (m *Manager) Check(ctx context.Context, orgID, actorKeyID string) error {
	rec, err := m.cfg.Records.CurrentKey(ctx, orgID)
	if err != nil {
		return fmt.Errorf("checking the key of org %s: %w", orgID, err)
	}
	key, err := unwrapKeyHalf(ctx, m.wrappers, rec.CustomerKeyURI, rec.WrappedCustomerKey, orgID)
	if err != nil {
		err = &KeyUnavailableError{OrgID: orgID, KeyID: rec.KeyID, Half: "customer", KeyURI: rec.CustomerKeyURI, Cause: err}
		recordKMSFailure(ctx, m.cfg.Records, m.cfg.Auditor, orgID, rec.KeyID, err, m.cfg.Now())
		return err
	}
	clear(key)
	m.recordSuccess(ctx, orgID)
	return nil
}

// RewrapAll unwraps and wraps again both halves of every key record, so
// each is wrapped under its KMS key's current primary version. A failure
// for one org does not stop the others; all failures are returned joined.
func (m *Manager) RewrapAll(ctx context.Context) error {
	recs, err := m.cfg.Records.ListKeyRecords(ctx)
	if err != nil {
		return fmt.Errorf("listing key records for re-wrapping: %w", err)
	}
	var errs []error
	for _, rec := range recs {
		if err := m.rewrap(ctx, rec); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (m *Manager) rewrap(ctx context.Context, rec KeyRecord) error {
	customer, err := m.rewrapHalf(ctx, rec, "customer", rec.CustomerKeyURI, rec.WrappedCustomerKey)
	if err != nil {
		return err
	}
	operator, err := m.rewrapHalf(ctx, rec, "operator", rec.OperatorKeyURI, rec.WrappedOperatorKey)
	if err != nil {
		return err
	}
	if err := m.cfg.Records.UpdateWrappedKeys(ctx, rec.KeyID, customer, operator, m.cfg.Now()); err != nil {
		return fmt.Errorf("storing re-wrapped keys of org %s: %w", rec.OrgID, err)
	}
	m.recordSuccess(ctx, rec.OrgID)
	audit(ctx, m.cfg.Auditor, rec.OrgID, "system", "cmek_rewrapped", "key_id="+rec.KeyID)
	return nil
}

func (m *Manager) rewrapHalf(ctx context.Context, rec KeyRecord, half, uri string, wrapped []byte) ([]byte, error) {
	fail := func(err error) ([]byte, error) {
		err = &KeyUnavailableError{OrgID: rec.OrgID, KeyID: rec.KeyID, Half: half, KeyURI: uri, Cause: err}
		recordKMSFailure(ctx, m.cfg.Records, m.cfg.Auditor, rec.OrgID, rec.KeyID, err, m.cfg.Now())
		return nil, err
	}
	key, err := unwrapKeyHalf(ctx, m.wrappers, uri, wrapped, rec.OrgID)
	if err != nil {
		return fail(err)
	}
	defer clear(key)
	w, err := m.wrappers.get(ctx, uri)
	if err != nil {
		return fail(err)
	}
	rewrapped, err := w.Wrap(ctx, key, []byte(rec.OrgID))
	if err != nil {
		return fail(err)
	}
	return rewrapped, nil
}

// RunRewrapLoop calls RewrapAll every interval (DefaultRewrapInterval if
// zero), each wait jittered by ±10% so that nodes do not all call the KMS at
// once, until ctx ends. Failures are audited by RewrapAll.
func (m *Manager) RunRewrapLoop(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = DefaultRewrapInterval
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-m.after(jittered(interval, m.random())):
		}
		_ = m.RewrapAll(ctx)
	}
}

// jittered maps r in [0, 1) to a duration in [0.9 d, 1.1 d).
func jittered(d time.Duration, r float64) time.Duration {
	return d + time.Duration((r*0.2-0.1)*float64(d))
}

func (m *Manager) recordSuccess(ctx context.Context, orgID string) {
	if err := m.cfg.Records.RecordKMSStatus(ctx, orgID, true, "", m.cfg.Now()); err != nil {
		audit(ctx, m.cfg.Auditor, orgID, "system", "kms_status_write_failed", err.Error())
	}
}

// hint says what to do about a failed KMS call, for the admin.
func (m *Manager) hint(uri string, err error) string {
	var kerr *kms.Error
	if !errors.As(err, &kerr) {
		return ""
	}
	provider := kerr.Provider
	if provider == "" {
		provider = providerOf(uri)
	}
	switch kerr.Kind {
	case kms.KindInvalidURI:
		return "use a key URI of the form gcp-kms://projects/P/locations/L/keyRings/R/cryptoKeys/K, aws-kms://arn:aws:kms:REGION:ACCOUNT:key/ID or local-kms://NAME"
	case kms.KindPermissionDenied:
		return PermissionHint(provider, m.cfg.OperatorPrincipals[provider], uri)
	case kms.KindNotFound:
		return "check that the key URI names an existing key"
	case kms.KindDisabled:
		return "enable the key (and its primary version) in the KMS"
	case kms.KindUnavailable:
		return "the KMS could not be reached; try again"
	}
	return ""
}
