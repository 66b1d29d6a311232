package encryption

import (
	"context"
	"crypto/cipher"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/ristretto/v2"
	"golang.org/x/crypto/chacha20poly1305"
	"golang.org/x/sync/singleflight"

	"github.com/sealcache/sealcache/encryption/kms"
)

// Cache lifetimes. The derived key TTL bounds how long a node keeps serving
// an org after its KMS key is revoked, hence the hard maximum.
const (
	DefaultKeyTTL     = 10 * time.Minute
	MaxKeyTTL         = 10 * time.Minute
	DefaultErrorTTL   = 10 * time.Second
	DefaultRecordTTL  = 5 * time.Second
	DefaultKMSTimeout = 30 * time.Second
)

// refreshAfter is the share of the TTL after which a use of a cached key
// starts one background refresh, so keys in use never expire under load.
const refreshAfter = 0.8

// OpenKMSFunc opens a wrapper for a key URI (kms.Open in production).
type OpenKMSFunc func(ctx context.Context, uri string) (kms.Wrapper, error)

// KeyProviderConfig configures NewKeyProvider. Records and OpenKMS are required.
type KeyProviderConfig struct {
	Records KeyRecordStore
	OpenKMS OpenKMSFunc
	Auditor Auditor      // may be nil
	Logger  *slog.Logger // where unwrap failures are logged in full; nil: slog's default

	TTL        time.Duration // derived keys; default and maximum 10 min
	ErrorTTL   time.Duration // KMS failures; default 10 s
	RecordTTL  time.Duration // key records and "CMEK off"; default 5 s
	KMSTimeout time.Duration // one unwrap of both halves; default 30 s
	MaxKeys    int64         // derived keys held at once; default 100000
	Now        func() time.Time
}

// OrgKey is an org's current encryption state: either CMEK off (KeyID
// empty) or a key id with an AEAD for it. The AEAD is the caller's own, so
// the cache can wipe its key bytes at any time without harming a stream in
// flight.
type OrgKey struct {
	OrgID string
	KeyID string
	aead  cipher.AEAD
}

// Enabled reports whether the org's data is sealed.
func (k OrgKey) Enabled() bool { return k.KeyID != "" }

// KeyProvider answers "how is this org's data sealed right now", unwrapping
// keys with the KMS only when its cache has no live answer.
//
// Key lifetime: the cache holds the 32 derived key bytes in a cachedKey and
// zeroes them when ristretto drops the entry (expiry, eviction, rejection,
// replacement, Invalidate, Close). Callers never see those bytes: each
// Current call builds a fresh AEAD from them under the entry's lock, and a
// wiped entry builds none. So a stream keeps working after its entry left
// the cache (its AEAD holds its own copy, which x/crypto gives no way to
// wipe; it becomes garbage when the stream ends), and a reader can never
// pick up a half-wiped key. This was chosen over reference counting because
// it has no release to forget.
type KeyProvider struct {
	cfg      KeyProviderConfig
	keys     *ristretto.Cache[string, *cachedKey] // by org id
	wrappers *wrapperCache
	flights  singleflight.Group

	// records holds a cachedRecord by org id. Every request reads it, so
	// it is a sync.Map: reads share no lock.
	records sync.Map

	mu       sync.Mutex
	failures map[string]cachedFailure // by org id

	// invalidateMu orders Invalidate against loads that finish while it
	// runs: a load that started before an Invalidate does not cache.
	invalidateMu sync.Mutex
	generation   uint64

	background sync.WaitGroup
}

type cachedRecord struct {
	rec     KeyRecord
	enabled bool
	expires time.Time
}

type cachedFailure struct {
	keyID   string
	err     error
	expires time.Time
}

// cachedKey is one derived key in the cache.
type cachedKey struct {
	keyID      string
	refreshAt  time.Time
	expires    time.Time
	refreshing atomic.Bool

	mu  sync.Mutex
	key []byte // nil once wiped
}

// newAEAD returns an AEAD of its own for the key, or false once wiped.
func (c *cachedKey) newAEAD() (cipher.AEAD, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.key == nil {
		return nil, false
	}
	a, err := chacha20poly1305.NewX(c.key)
	return a, err == nil
}

func (c *cachedKey) wipe() {
	if c == nil { // ristretto may report a zero value
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.key)
	c.key = nil
}

// NewKeyProvider checks cfg, fills in defaults and starts the cache. Call
// Close when done; it wipes every cached key.
func NewKeyProvider(cfg KeyProviderConfig) (*KeyProvider, error) {
	if cfg.Records == nil || cfg.OpenKMS == nil {
		return nil, errors.New("encryption: KeyProviderConfig needs Records and OpenKMS")
	}
	if cfg.TTL == 0 {
		cfg.TTL = DefaultKeyTTL
	}
	if cfg.TTL < 0 || cfg.TTL > MaxKeyTTL {
		return nil, fmt.Errorf("encryption: key cache TTL %v is out of range; use at most %v", cfg.TTL, MaxKeyTTL)
	}
	if cfg.ErrorTTL <= 0 {
		cfg.ErrorTTL = DefaultErrorTTL
	}
	if cfg.RecordTTL <= 0 {
		cfg.RecordTTL = DefaultRecordTTL
	}
	if cfg.KMSTimeout <= 0 {
		cfg.KMSTimeout = DefaultKMSTimeout
	}
	if cfg.MaxKeys <= 0 {
		cfg.MaxKeys = 100_000
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	keys, err := ristretto.NewCache(&ristretto.Config[string, *cachedKey]{
		NumCounters:        10 * cfg.MaxKeys,
		MaxCost:            cfg.MaxKeys,
		BufferItems:        64,
		IgnoreInternalCost: true,
		// Called for every value that leaves: evicted, rejected, expired,
		// replaced or deleted.
		OnExit: func(k *cachedKey) { k.wipe() },
	})
	if err != nil {
		return nil, fmt.Errorf("encryption: creating the key cache: %w", err)
	}
	return &KeyProvider{
		cfg:      cfg,
		keys:     keys,
		wrappers: newWrapperCache(cfg.OpenKMS),
		failures: map[string]cachedFailure{},
	}, nil
}

// Close waits for background refreshes and wipes every cached key.
func (p *KeyProvider) Close() {
	p.background.Wait()
	p.keys.Close()
}

// Current returns the org's encryption state: CMEK off, or its active key.
// An unwrap failure is a *KeyUnavailableError; it is remembered for the
// error TTL so a broken KMS is not asked again on every request.
func (p *KeyProvider) Current(ctx context.Context, orgID string) (OrgKey, error) {
	rec, enabled, err := p.record(ctx, orgID)
	if err != nil || !enabled {
		return OrgKey{OrgID: orgID}, err
	}
	now := p.cfg.Now()
	if e, ok := p.keys.Get(orgID); ok && e.keyID == rec.KeyID && now.Before(e.expires) {
		if a, ok := e.newAEAD(); ok {
			p.maybeRefresh(e, rec, now)
			return OrgKey{OrgID: orgID, KeyID: rec.KeyID, aead: a}, nil
		}
	}
	if err := p.recentFailure(orgID, rec.KeyID, now); err != nil {
		return OrgKey{OrgID: orgID}, err
	}
	a, err := p.load(ctx, rec)
	if err != nil {
		return OrgKey{OrgID: orgID}, err
	}
	return OrgKey{OrgID: orgID, KeyID: rec.KeyID, aead: a}, nil
}

// Invalidate forgets everything cached for the org and wipes its key, so
// an enable or disable on this node takes effect at once.
func (p *KeyProvider) Invalidate(orgID string) {
	p.invalidateMu.Lock()
	defer p.invalidateMu.Unlock()
	p.generation++
	p.keys.Del(orgID)
	p.keys.Wait()
	p.records.Delete(orgID)
	p.mu.Lock()
	delete(p.failures, orgID)
	p.mu.Unlock()
}

// record returns the org's key record (cached for RecordTTL) and whether
// CMEK is on.
func (p *KeyProvider) record(ctx context.Context, orgID string) (KeyRecord, bool, error) {
	now := p.cfg.Now()
	if v, ok := p.records.Load(orgID); ok {
		if c := v.(cachedRecord); now.Before(c.expires) {
			return c.rec, c.enabled, nil
		}
	}
	v, err := p.shared(ctx, "record/"+orgID, func(ctx context.Context) (any, error) {
		gen := p.currentGeneration()
		rec, err := p.cfg.Records.CurrentKey(ctx, orgID)
		c := cachedRecord{rec: rec, enabled: err == nil, expires: p.cfg.Now().Add(p.cfg.RecordTTL)}
		if err != nil && !errors.Is(err, ErrNoKeyRecord) {
			return nil, fmt.Errorf("reading the encryption key record of org %s: %w", orgID, err)
		}
		p.invalidateMu.Lock()
		if p.generation == gen {
			p.records.Store(orgID, c)
		}
		p.invalidateMu.Unlock()
		return c, nil
	})
	if err != nil {
		return KeyRecord{}, false, err
	}
	c := v.(cachedRecord)
	return c.rec, c.enabled, nil
}

func (p *KeyProvider) currentGeneration() uint64 {
	p.invalidateMu.Lock()
	defer p.invalidateMu.Unlock()
	return p.generation
}

func (p *KeyProvider) recentFailure(orgID, keyID string, now time.Time) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	f, ok := p.failures[orgID]
	if ok && f.keyID == keyID && now.Before(f.expires) {
		return f.err
	}
	return nil
}

// shared runs fn once for all concurrent callers with the same flight key.
// fn gets a context of its own (the first caller's values, no cancellation,
// KMSTimeout), so one caller giving up does not fail the others; each
// caller still returns as soon as its own ctx ends.
func (p *KeyProvider) shared(ctx context.Context, flight string, fn func(context.Context) (any, error)) (any, error) {
	ch := p.flights.DoChan(flight, func() (any, error) {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.cfg.KMSTimeout)
		defer cancel()
		return fn(fctx)
	})
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case res := <-ch:
		return res.Val, res.Err
	}
}

// load unwraps the record's key (once for all concurrent callers), caches
// it and returns an AEAD for it.
func (p *KeyProvider) load(ctx context.Context, rec KeyRecord) (cipher.AEAD, error) {
	v, err := p.shared(ctx, "key/"+rec.OrgID+"/"+rec.KeyID, func(ctx context.Context) (any, error) {
		return p.unwrapAndCache(ctx, rec)
	})
	if err != nil {
		return nil, err
	}
	return v.(cipher.AEAD), nil
}

func (p *KeyProvider) unwrapAndCache(ctx context.Context, rec KeyRecord) (cipher.AEAD, error) {
	// A caller that missed just before the previous flight cached its
	// result arrives here after it: answer from the cache, not the KMS.
	now := p.cfg.Now()
	if err := p.recentFailure(rec.OrgID, rec.KeyID, now); err != nil {
		return nil, err
	}
	if e, ok := p.keys.Get(rec.OrgID); ok && e.keyID == rec.KeyID && now.Before(e.refreshAt) {
		if a, ok := e.newAEAD(); ok {
			return a, nil
		}
	}
	gen := p.currentGeneration()
	key, err := p.unwrapDerived(ctx, rec)
	now = p.cfg.Now()
	if err != nil {
		p.reportFailure(ctx, rec, err, now)
		return nil, err
	}
	p.reportSuccess(ctx, rec.OrgID, now)
	a, err := chacha20poly1305.NewX(key)
	if err != nil {
		clear(key)
		return nil, err
	}
	e := &cachedKey{
		keyID:     rec.KeyID,
		key:       key,
		refreshAt: now.Add(time.Duration(refreshAfter * float64(p.cfg.TTL))),
		expires:   now.Add(p.cfg.TTL),
	}
	p.invalidateMu.Lock()
	defer p.invalidateMu.Unlock()
	if p.generation != gen || !p.keys.SetWithTTL(rec.OrgID, e, 1, p.cfg.TTL) {
		e.wipe() // invalidated meanwhile, or the cache dropped the set
		return a, nil
	}
	p.keys.Wait() // make it visible before the callers return, or they would all miss again
	p.mu.Lock()
	delete(p.failures, rec.OrgID)
	p.mu.Unlock()
	return a, nil
}

// unwrapDerived unwraps both halves (associated data: the org id) and
// derives the data key. The halves are zeroed before it returns.
func (p *KeyProvider) unwrapDerived(ctx context.Context, rec KeyRecord) ([]byte, error) {
	customer, err := p.unwrapHalf(ctx, rec, "customer", rec.CustomerKeyURI, rec.WrappedCustomerKey)
	if err != nil {
		return nil, err
	}
	defer clear(customer)
	operator, err := p.unwrapHalf(ctx, rec, "operator", rec.OperatorKeyURI, rec.WrappedOperatorKey)
	if err != nil {
		return nil, err
	}
	defer clear(operator)
	return DeriveKey(customer, operator, rec.OrgID, rec.KeyID)
}

func (p *KeyProvider) unwrapHalf(ctx context.Context, rec KeyRecord, half, uri string, wrapped []byte) ([]byte, error) {
	key, err := unwrapKeyHalf(ctx, p.wrappers, uri, wrapped, rec.OrgID)
	if err != nil {
		return nil, &KeyUnavailableError{OrgID: rec.OrgID, KeyID: rec.KeyID, Half: half, KeyURI: uri, Cause: err}
	}
	return key, nil
}

// unwrapKeyHalf opens uri and unwraps one 32-byte key half bound to orgID.
func unwrapKeyHalf(ctx context.Context, wrappers *wrapperCache, uri string, wrapped []byte, orgID string) ([]byte, error) {
	w, err := wrappers.get(ctx, uri)
	if err != nil {
		return nil, err
	}
	key, err := w.Unwrap(ctx, wrapped, []byte(orgID))
	if err != nil {
		return nil, err
	}
	if len(key) != KeySize {
		clear(key)
		return nil, fmt.Errorf("unwrapped key has %d bytes, want %d", len(key), KeySize)
	}
	return key, nil
}

// maybeRefresh starts one background unwrap when a key is used late in its
// life, so that busy orgs never see their key expire.
func (p *KeyProvider) maybeRefresh(e *cachedKey, rec KeyRecord, now time.Time) {
	if now.Before(e.refreshAt) || p.recentFailure(rec.OrgID, rec.KeyID, now) != nil {
		return
	}
	if !e.refreshing.CompareAndSwap(false, true) {
		return
	}
	p.background.Add(1)
	go func() {
		defer p.background.Done()
		if _, err := p.load(context.Background(), rec); err != nil {
			e.refreshing.Store(false) // try again after the error TTL
		}
	}()
}

// reportFailure remembers a failed unwrap for ErrorTTL (unless the call was
// merely cancelled), logs it and records it in the org's key health and
// audit log.
func (p *KeyProvider) reportFailure(ctx context.Context, rec KeyRecord, err error, now time.Time) {
	if errors.Is(err, context.Canceled) {
		return
	}
	p.mu.Lock()
	p.failures[rec.OrgID] = cachedFailure{keyID: rec.KeyID, err: err, expires: now.Add(p.cfg.ErrorTTL)}
	p.mu.Unlock()
	// Clients get a shorter message (KeyUnavailableError.ClientMessage);
	// this is where the operator finds the KMS's own words. Failures are
	// remembered for ErrorTTL, so this logs at most once per ErrorTTL.
	p.cfg.Logger.Warn("an org's encryption key is unavailable", "org", rec.OrgID, "key_id", rec.KeyID, "err", err.Error())
	recordKMSFailure(ctx, p.cfg.Records, p.cfg.Auditor, rec.OrgID, rec.KeyID, err, now)
}

func (p *KeyProvider) reportSuccess(ctx context.Context, orgID string, now time.Time) {
	if err := p.cfg.Records.RecordKMSStatus(ctx, orgID, true, "", now); err != nil {
		slog.Warn("encryption: recording KMS success failed", "org", orgID, "err", err)
	}
}

// recordKMSFailure writes a KMS failure to the key health and the audit
// log. Those writes are best effort: the KMS error is what the caller sees.
func recordKMSFailure(ctx context.Context, records KeyRecordStore, auditor Auditor, orgID, keyID string, err error, now time.Time) {
	if rerr := records.RecordKMSStatus(ctx, orgID, false, err.Error(), now); rerr != nil {
		slog.Warn("encryption: recording KMS failure failed", "org", orgID, "err", rerr)
	}
	audit(ctx, auditor, orgID, "system", "kms_failure", fmt.Sprintf("key_id=%s: %v", keyID, err))
}

func audit(ctx context.Context, auditor Auditor, orgID, actor, action, details string) {
	if auditor == nil {
		return
	}
	if err := auditor.Audit(ctx, orgID, actor, action, details); err != nil {
		slog.Warn("encryption: writing the audit log failed", "org", orgID, "action", action, "err", err)
	}
}

// wrapperCache keeps opened KMS clients, one per key URI: opening one
// (credentials, connection) costs far more than an unwrap.
type wrapperCache struct {
	open OpenKMSFunc
	mu   sync.Mutex
	m    map[string]kms.Wrapper
}

func newWrapperCache(open OpenKMSFunc) *wrapperCache {
	return &wrapperCache{open: open, m: map[string]kms.Wrapper{}}
}

func (c *wrapperCache) get(ctx context.Context, uri string) (kms.Wrapper, error) {
	c.mu.Lock()
	w, ok := c.m[uri]
	c.mu.Unlock()
	if ok {
		return w, nil
	}
	w, err := c.open(ctx, uri)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.m[uri] = w
	c.mu.Unlock()
	return w, nil
}
