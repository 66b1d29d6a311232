package encryption

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sealcache/sealcache/cas"
	"github.com/sealcache/sealcache/encryption/kms"
)

func TestCMEKOffIsReportedAndCachedBriefly(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	for range 3 {
		k, err := e.keys.Current(ctx, "acme")
		if err != nil || k.Enabled() {
			t.Fatalf("Current = %+v, %v; want CMEK off", k, err)
		}
	}
	if n := e.records.currentCalls.Load(); n != 1 {
		t.Fatalf("%d key record lookups for 3 requests within the record TTL, want 1", n)
	}
	e.clock.Advance(DefaultRecordTTL + time.Second)
	e.keys.Current(ctx, "acme")
	if n := e.records.currentCalls.Load(); n != 2 {
		t.Fatalf("%d key record lookups after the record TTL, want 2", n)
	}
}

func TestConcurrentRequestsMakeOneKMSCallPerKeyPerTTL(t *testing.T) {
	e := newEnv(t)
	e.enable("acme", customerURI)
	before := e.unwraps()
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for range 100 {
		wg.Go(func() {
			k, err := e.keys.Current(context.Background(), "acme")
			if err == nil && !k.Enabled() {
				err = errors.New("CMEK off")
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	// Enable's round trip unwrapped each half once already.
	if c, o := e.kms.get(customerURI).unwraps.Load()-1, e.kms.get(operatorURI).unwraps.Load()-1; c != 1 || o != 1 || e.unwraps()-before != 2 {
		t.Fatalf("100 concurrent requests unwrapped customer %d and operator %d times, want 1 each", c, o)
	}
	if n := e.records.statusWrites.Load(); n != 2 { // Enable's own check, then the one unwrap
		t.Fatalf("%d key health writes, want 2 (one per KMS call, none per cache hit)", n)
	}
}

func TestKeyExpiresAfterTTLAndIsWiped(t *testing.T) {
	e := newEnv(t)
	e.enable("acme", customerURI)
	ctx := context.Background()
	first, err := e.keys.Current(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	old := e.cachedKeyBytes("acme")
	e.clock.Advance(DefaultKeyTTL + time.Second)
	second, err := e.keys.Current(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	if e.unwraps() != 6 {
		t.Fatalf("%d unwraps after the TTL, want 6 (2 for Enable, 2 per load)", e.unwraps())
	}
	if !allZero(old) {
		t.Fatal("expired key bytes were not zeroed")
	}
	if first.KeyID != second.KeyID {
		t.Fatal("key id changed on reload")
	}
	// The caller's AEAD from before the wipe still works: streams in
	// flight are not hurt by the cache letting go.
	sealed := first.aead.Seal(nil, make([]byte, 24), []byte("x"), nil)
	if _, err := second.aead.Open(nil, make([]byte, 24), sealed, nil); err != nil {
		t.Fatalf("the reloaded key differs from the wiped one: %v", err)
	}
}

func TestKeyInUseIsRefreshedAheadOfExpiry(t *testing.T) {
	e := newEnv(t)
	e.enable("acme", customerURI)
	ctx := context.Background()
	if _, err := e.keys.Current(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	old := e.cachedKeyBytes("acme")
	e.clock.Advance(DefaultKeyTTL * 85 / 100)
	if _, err := e.keys.Current(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	e.keys.background.Wait()
	if e.unwraps() != 6 {
		t.Fatalf("%d unwraps after a use at 85%% of the TTL, want 6 (Enable, load, one background refresh)", e.unwraps())
	}
	if !allZero(old) {
		t.Fatal("the replaced key was not zeroed")
	}
	e.clock.Advance(DefaultKeyTTL * 20 / 100) // past the first load's expiry
	if _, err := e.keys.Current(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	e.keys.background.Wait()
	if e.unwraps() != 6 {
		t.Fatalf("%d unwraps, want still 6: the refreshed key is valid", e.unwraps())
	}
}

func TestKMSFailureIsUnavailableCachedAuditedAndRetried(t *testing.T) {
	e := newEnv(t)
	e.enable("acme", customerURI)
	ctx := context.Background()
	cw := e.kms.get(customerURI)
	cw.setFail(cw.kmsError(kms.KindPermissionDenied, "unwrap", errors.New("IAM says no")))

	_, err := e.keys.Current(ctx, "acme")
	var kerr *KeyUnavailableError
	if !errors.As(err, &kerr) || kerr.KeyURI != customerURI || kerr.Half != "customer" {
		t.Fatalf("err = %v, want a *KeyUnavailableError for %s", err, customerURI)
	}
	if errors.Is(err, cas.ErrNotFound) {
		t.Fatal("a key failure must never look like a miss")
	}
	for _, want := range []string{customerURI, "IAM says no", "acme"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message %q does not mention %q", err, want)
		}
	}
	if _, ok := e.auditor.find("acme", "kms_failure"); !ok {
		t.Error("KMS failure not audited")
	}
	if st, _ := e.records.KMSStatus(ctx, "acme"); !strings.Contains(st.LastFailureMessage, "IAM says no") {
		t.Errorf("key health = %+v, want the failure recorded", st)
	}

	calls := cw.unwraps.Load()
	e.clock.Advance(DefaultErrorTTL / 2)
	if _, err := e.keys.Current(ctx, "acme"); !errors.As(err, &kerr) {
		t.Fatalf("within the error TTL: err = %v, want the cached failure", err)
	}
	if cw.unwraps.Load() != calls {
		t.Fatal("a cached failure still called the KMS")
	}

	cw.setFail(nil)
	e.clock.Advance(DefaultErrorTTL)
	if _, err := e.keys.Current(ctx, "acme"); err != nil {
		t.Fatalf("after the error TTL with the KMS healthy again: %v", err)
	}
	if cw.unwraps.Load() != calls+1 {
		t.Fatal("no retry after the error TTL")
	}
}

func TestCancellationIsNotCached(t *testing.T) {
	e := newEnv(t)
	e.enable("acme", customerURI)
	cw := e.kms.get(customerURI)
	cw.setFailOnce(fmt.Errorf("rpc aborted: %w", context.Canceled))
	if _, err := e.keys.Current(context.Background(), "acme"); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if _, err := e.keys.Current(context.Background(), "acme"); err != nil {
		t.Fatalf("a cancelled unwrap was cached: %v", err)
	}
	if _, ok := e.auditor.find("acme", "kms_failure"); ok {
		t.Fatal("a cancellation was audited as a KMS failure")
	}
}

func TestCallerCancellationReturnsAtOnce(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := e.keys.Current(ctx, "acme")
	if err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want nil (answer was ready) or context.Canceled", err)
	}
}

func TestInvalidateAndCloseWipeKeys(t *testing.T) {
	e := newEnv(t)
	e.enable("acme", customerURI)
	e.enable("beta", customerURI)
	ctx := context.Background()
	e.keys.Current(ctx, "acme")
	e.keys.Current(ctx, "beta")
	a, b := e.cachedKeyBytes("acme"), e.cachedKeyBytes("beta")
	e.keys.Invalidate("acme")
	if !allZero(a) {
		t.Fatal("Invalidate left the key bytes")
	}
	if allZero(b) {
		t.Fatal("Invalidate of acme wiped beta")
	}
	e.keys.Close()
	if !allZero(b) {
		t.Fatal("Close left the key bytes")
	}
}

func TestEvictedKeysAreWiped(t *testing.T) {
	e := newEnv(t)
	keys, err := NewKeyProvider(KeyProviderConfig{Records: e.records, OpenKMS: e.kms.open, Now: e.clock.Now, MaxKeys: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer keys.Close()
	var cached [][]byte
	for _, org := range []string{"o1", "o2", "o3"} {
		e.enable(org, customerURI)
		if _, err := keys.Current(context.Background(), org); err != nil {
			t.Fatal(err)
		}
		if c, ok := keys.keys.Get(org); ok && c.bytes() != nil {
			cached = append(cached, c.bytes())
		}
	}
	live := 0
	for _, org := range []string{"o1", "o2", "o3"} {
		if _, ok := keys.keys.Get(org); ok {
			live++
		}
	}
	wiped := 0
	for _, b := range cached {
		if allZero(b) {
			wiped++
		}
	}
	if live > 1 || wiped < len(cached)-live {
		t.Fatalf("capacity 1: %d keys live, %d of %d wiped", live, wiped, len(cached))
	}
}

func TestTTLAboveMaximumIsRejected(t *testing.T) {
	_, err := NewKeyProvider(KeyProviderConfig{Records: newFakeRecords(), OpenKMS: newFakeKMS().open, TTL: 11 * time.Minute})
	if err == nil || !strings.Contains(err.Error(), "at most") {
		t.Fatalf("err = %v, want TTL rejected", err)
	}
}

func TestDeriveKey(t *testing.T) {
	c, o := newKeyHalf(), newKeyHalf()
	k1, err := DeriveKey(c, o, "acme", "k1")
	if err != nil {
		t.Fatal(err)
	}
	k1again, _ := DeriveKey(c, o, "acme", "k1")
	if string(k1) != string(k1again) || len(k1) != KeySize {
		t.Fatal("derivation is not deterministic")
	}
	for _, other := range [][2]string{{"acme", "k2"}, {"beta", "k1"}, {"acmek", "1"}, {"acm", "ek1"}} {
		k, _ := DeriveKey(c, o, other[0], other[1])
		if string(k) == string(k1) {
			t.Errorf("org %q key %q derives the same key as acme/k1", other[0], other[1])
		}
	}
	if k, _ := DeriveKey(o, c, "acme", "k1"); string(k) == string(k1) {
		t.Error("swapping the halves gives the same key")
	}
	if _, err := DeriveKey(c[:31], o, "acme", "k1"); err == nil {
		t.Error("short half accepted")
	}
}
