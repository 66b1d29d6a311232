package encryption

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/sealcache/sealcache/cas"
	"github.com/sealcache/sealcache/cas/fence"
	"github.com/sealcache/sealcache/cas/memory"
	"github.com/sealcache/sealcache/encryption/kms"
	"github.com/sealcache/sealcache/internal/fakeclock"
)

// fakeWrapper is a KMS key: it really encrypts (XChaCha20-Poly1305 with a
// key of its own), binds the associated data, counts calls and fails on
// demand.
type fakeWrapper struct {
	uri     string
	key     []byte
	wraps   atomic.Int64
	unwraps atomic.Int64

	mu       sync.Mutex
	fail     error // every call fails with it
	failOnce error // the next call fails with it
}

func newFakeWrapper(uri string) *fakeWrapper {
	k := make([]byte, chacha20poly1305.KeySize)
	rand.Read(k)
	return &fakeWrapper{uri: uri, key: k}
}

func (w *fakeWrapper) URI() string { return w.uri }

func (w *fakeWrapper) setFail(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.fail = err
}

func (w *fakeWrapper) setFailOnce(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.failOnce = err
}

func (w *fakeWrapper) failure() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.failOnce; err != nil {
		w.failOnce = nil
		return err
	}
	return w.fail
}

func (w *fakeWrapper) Wrap(ctx context.Context, plaintext, ad []byte) ([]byte, error) {
	w.wraps.Add(1)
	if err := w.failure(); err != nil {
		return nil, err
	}
	a, _ := chacha20poly1305.NewX(w.key)
	nonce := make([]byte, a.NonceSize())
	rand.Read(nonce)
	return a.Seal(nonce, nonce, plaintext, ad), nil
}

func (w *fakeWrapper) Unwrap(ctx context.Context, ciphertext, ad []byte) ([]byte, error) {
	w.unwraps.Add(1)
	if err := w.failure(); err != nil {
		return nil, err
	}
	a, _ := chacha20poly1305.NewX(w.key)
	if len(ciphertext) < a.NonceSize() {
		return nil, w.kmsError(kms.KindInvalidCiphertext, "unwrap", errors.New("short ciphertext"))
	}
	pt, err := a.Open(nil, ciphertext[:a.NonceSize()], ciphertext[a.NonceSize():], ad)
	if err != nil {
		return nil, w.kmsError(kms.KindInvalidCiphertext, "unwrap", err)
	}
	return pt, nil
}

func (w *fakeWrapper) kmsError(kind kms.ErrorKind, op string, err error) *kms.Error {
	return &kms.Error{Kind: kind, URI: w.uri, Op: op, Provider: providerOf(w.uri), Err: err}
}

// fakeKMS opens fakeWrappers by URI; unknown URIs are invalid.
type fakeKMS struct {
	mu       sync.Mutex
	wrappers map[string]*fakeWrapper
}

func newFakeKMS(uris ...string) *fakeKMS {
	k := &fakeKMS{wrappers: map[string]*fakeWrapper{}}
	for _, u := range uris {
		k.wrappers[u] = newFakeWrapper(u)
	}
	return k
}

func (k *fakeKMS) open(ctx context.Context, uri string) (kms.Wrapper, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	w, ok := k.wrappers[uri]
	if !ok {
		return nil, &kms.Error{Kind: kms.KindInvalidURI, URI: uri, Op: "open", Provider: providerOf(uri), Err: errors.New("no such key")}
	}
	return w, nil
}

func (k *fakeKMS) get(uri string) *fakeWrapper {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.wrappers[uri]
}

// fakeRecords is an in-memory KeyRecordStore.
type fakeRecords struct {
	mu           sync.Mutex
	current      map[string]KeyRecord
	status       map[string]KMSStatus
	currentCalls atomic.Int64
	statusWrites atomic.Int64
}

func newFakeRecords() *fakeRecords {
	return &fakeRecords{current: map[string]KeyRecord{}, status: map[string]KMSStatus{}}
}

func (r *fakeRecords) CurrentKey(ctx context.Context, orgID string) (KeyRecord, error) {
	r.currentCalls.Add(1)
	r.mu.Lock()
	defer r.mu.Unlock()
	rec, ok := r.current[orgID]
	if !ok {
		return KeyRecord{}, ErrNoKeyRecord
	}
	return rec, nil
}

func (r *fakeRecords) EnableKey(ctx context.Context, rec KeyRecord) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.current[rec.OrgID] = rec
	return nil
}

func (r *fakeRecords) DisableKeys(ctx context.Context, orgID string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.current, orgID)
	return nil
}

func (r *fakeRecords) ListKeyRecords(ctx context.Context) ([]KeyRecord, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []KeyRecord
	for _, rec := range r.current {
		out = append(out, rec)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].OrgID < out[j].OrgID })
	return out, nil
}

func (r *fakeRecords) UpdateWrappedKeys(ctx context.Context, keyID string, wc, wo []byte, at time.Time) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for org, rec := range r.current {
		if rec.KeyID == keyID {
			rec.WrappedCustomerKey, rec.WrappedOperatorKey, rec.LastRewrapped = wc, wo, at
			r.current[org] = rec
			return nil
		}
	}
	return fmt.Errorf("no key record %s", keyID)
}

func (r *fakeRecords) RecordKMSStatus(ctx context.Context, orgID string, success bool, msg string, at time.Time) error {
	r.statusWrites.Add(1)
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.status[orgID]
	if success {
		s.LastSuccess = at
	} else {
		s.LastFailure, s.LastFailureMessage = at, msg
	}
	r.status[orgID] = s
	return nil
}

func (r *fakeRecords) KMSStatus(ctx context.Context, orgID string) (KMSStatus, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.status[orgID], nil
}

// fakeAuditor keeps events as "org actor action details" and also sends
// them to events, for tests that wait for background work.
type fakeAuditor struct {
	mu     sync.Mutex
	log    []string
	events chan string
}

func newFakeAuditor() *fakeAuditor { return &fakeAuditor{events: make(chan string, 100)} }

func (a *fakeAuditor) Audit(ctx context.Context, orgID, actor, action, details string) error {
	e := strings.Join([]string{orgID, actor, action, details}, " ")
	a.mu.Lock()
	a.log = append(a.log, e)
	a.mu.Unlock()
	select {
	case a.events <- e:
	default:
	}
	return nil
}

// actions lists the audited actions of org, in order.
func (a *fakeAuditor) actions(org string) []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []string
	for _, e := range a.log {
		f := strings.SplitN(e, " ", 4)
		if f[0] == org {
			out = append(out, f[2])
		}
	}
	return out
}

func (a *fakeAuditor) find(org, action string) (string, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, e := range a.log {
		f := strings.SplitN(e, " ", 4)
		if f[0] == org && f[2] == action {
			return e, true
		}
	}
	return "", false
}

// env is one node's CMEK stack over fakes: KMS, records, auditor, clock,
// provider, manager and one in-memory backend shared by plain and sealed.
type env struct {
	t       testing.TB
	kms     *fakeKMS
	records *fakeRecords
	auditor *fakeAuditor
	clock   *fakeclock.Clock
	keys    *KeyProvider
	manager *Manager
	mem     *memory.Store
	fence   *fence.Fencer
	store   cas.BlobStore // fence over the sealing store over mem
}

const (
	customerURI  = "gcp-kms://projects/p/locations/l/keyRings/r/cryptoKeys/acme"
	customerURI2 = "aws-kms://arn:aws:kms:eu-west-1:111122223333:key/acme2"
	operatorURI  = "local-kms://operator"
)

func newEnv(t testing.TB) *env {
	t.Helper()
	e := &env{
		t:       t,
		kms:     newFakeKMS(customerURI, customerURI2, operatorURI),
		records: newFakeRecords(),
		auditor: newFakeAuditor(),
		clock:   fakeclock.New(),
		mem:     memory.New(),
	}
	keys, err := NewKeyProvider(KeyProviderConfig{
		Records: e.records, OpenKMS: e.kms.open, Auditor: e.auditor, Now: e.clock.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(keys.Close)
	e.keys = keys
	e.fence = fence.New(NewSealingStore(e.mem, e.mem, keys, nil))
	e.store = e.fence
	e.manager, err = NewManager(ManagerConfig{
		Records: e.records, OpenKMS: e.kms.open, Auditor: e.auditor, Keys: keys,
		Objects: e.mem, Fence: e.fence,
		OperatorKeyURI:     operatorURI,
		OperatorPrincipals: map[string]string{"gcp-kms": "sealcache@proj.iam.gserviceaccount.com", "aws-kms": "arn:aws:iam::1:role/sealcache"},
		Now:                e.clock.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *env) enable(org, uri string) KeyRecord {
	e.t.Helper()
	rec, err := e.manager.Enable(context.Background(), org, "admin-key", uri)
	if err != nil {
		e.t.Fatalf("Enable(%s, %s): %v", org, uri, err)
	}
	return rec
}

func (e *env) unwraps() int64 {
	return e.kms.get(customerURI).unwraps.Load() + e.kms.get(operatorURI).unwraps.Load()
}

// cachedKeyBytes returns the org's cached key slice itself (not a copy), so
// a test can look at it after the cache wiped it.
func (e *env) cachedKeyBytes(org string) []byte {
	e.t.Helper()
	c, ok := e.keys.keys.Get(org)
	if !ok || c.bytes() == nil {
		e.t.Fatalf("no cached key for %s", org)
	}
	return c.bytes()
}

// bytes returns the key slice itself, for tests that check the wipe.
func (c *cachedKey) bytes() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.key
}

func allZero(b []byte) bool {
	for _, x := range b {
		if x != 0 {
			return false
		}
	}
	return true
}
