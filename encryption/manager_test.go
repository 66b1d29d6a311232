package encryption

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sealcache/sealcache/encryption/kms"
)

func TestEnableStoresWrappedHalvesAndAudits(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	rec := e.enable("acme", customerURI)
	if !isKeyID(rec.KeyID) || rec.OrgID != "acme" || rec.CustomerKeyURI != customerURI || rec.OperatorKeyURI != operatorURI {
		t.Fatalf("record %+v", rec)
	}
	stored, err := e.records.CurrentKey(ctx, "acme")
	if err != nil || stored.KeyID != rec.KeyID {
		t.Fatalf("stored record %+v, %v", stored, err)
	}
	// Both halves are bound to the org id.
	for uri, wrapped := range map[string][]byte{customerURI: rec.WrappedCustomerKey, operatorURI: rec.WrappedOperatorKey} {
		if _, err := e.kms.get(uri).Unwrap(ctx, wrapped, []byte("acme")); err != nil {
			t.Errorf("%s half does not unwrap with ad=org: %v", uri, err)
		}
		if _, err := e.kms.get(uri).Unwrap(ctx, wrapped, []byte("beta")); err == nil {
			t.Errorf("%s half unwraps for another org", uri)
		}
	}
	ev, ok := e.auditor.find("acme", "cmek_enabled")
	if !ok || !strings.Contains(ev, rec.KeyID) || !strings.Contains(ev, customerURI) || !strings.Contains(ev, "admin-key") {
		t.Fatalf("audit event %q, want actor, key id and URI", ev)
	}
	k, err := e.keys.Current(ctx, "acme")
	if err != nil || k.KeyID != rec.KeyID {
		t.Fatalf("Current after Enable = %+v, %v", k, err)
	}
}

func TestEnableAgainWithSameURIIsIdempotent(t *testing.T) {
	e := newEnv(t)
	first := e.enable("acme", customerURI)
	again := e.enable("acme", customerURI)
	if again.KeyID != first.KeyID {
		t.Fatal("re-enabling with the same URI made a new key id")
	}
	if got := e.auditor.actions("acme"); fmt.Sprint(got) != "[cmek_enabled data_deleted]" {
		t.Fatalf("audit events %v; want one enable and its delete of the data stored before", got)
	}
	other := e.enable("acme", customerURI2)
	if other.KeyID == first.KeyID {
		t.Fatal("enabling with another URI kept the key id")
	}
}

func TestEnableFailureChangesNothingAndSaysWhatToDo(t *testing.T) {
	for _, tc := range []struct {
		name  string
		uri   string
		setup func(e *env)
		kind  kms.ErrorKind
		want  []string
	}{
		{name: "malformed URI", uri: "gcp-kms://nonsense", kind: kms.KindInvalidURI,
			want: []string{"gcp-kms://nonsense", "gcp-kms://projects/P"}},
		{name: "GCP permission denied", uri: customerURI, kind: kms.KindPermissionDenied,
			setup: func(e *env) {
				w := e.kms.get(customerURI)
				w.setFail(w.kmsError(kms.KindPermissionDenied, "wrap", errors.New("denied")))
			},
			want: []string{"roles/cloudkms.cryptoKeyEncrypterDecrypter", "sealcache@proj.iam.gserviceaccount.com", "projects/p/locations/l/keyRings/r/cryptoKeys/acme"}},
		{name: "AWS permission denied", uri: customerURI2, kind: kms.KindPermissionDenied,
			setup: func(e *env) {
				w := e.kms.get(customerURI2)
				w.setFail(w.kmsError(kms.KindPermissionDenied, "wrap", errors.New("AccessDenied")))
			},
			want: []string{"kms:Encrypt, kms:Decrypt, kms:DescribeKey", "arn:aws:iam::1:role/sealcache"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			if tc.setup != nil {
				tc.setup(e)
			}
			_, err := e.manager.Enable(context.Background(), "acme", "admin-key", tc.uri)
			var kerr *kms.Error
			var eerr *EnableError
			if !errors.As(err, &kerr) || kerr.Kind != tc.kind || !errors.As(err, &eerr) {
				t.Fatalf("err %v, want an *EnableError around a kms.Error of kind %v", err, tc.kind)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("message %q does not mention %q", err, w)
				}
			}
			if _, err := e.records.CurrentKey(context.Background(), "acme"); !errors.Is(err, ErrNoKeyRecord) {
				t.Error("a failed enable stored a key record")
			}
			if got := e.auditor.actions("acme"); len(got) != 1 || got[0] != "cmek_enable_failed" {
				t.Errorf("audit %v, want [cmek_enable_failed]", got)
			}
		})
	}
}

// lyingWrapper unwraps to other bytes than were wrapped.
type lyingWrapper struct{ *fakeWrapper }

func (w lyingWrapper) Unwrap(ctx context.Context, c, ad []byte) ([]byte, error) {
	return make([]byte, KeySize), nil
}

func TestRoundTripMismatchIsRefused(t *testing.T) {
	e := newEnv(t)
	m, _ := NewManager(ManagerConfig{Records: e.records, Auditor: e.auditor, OperatorKeyURI: operatorURI,
		Objects: e.mem, Fence: e.fence,
		OpenKMS: func(ctx context.Context, uri string) (kms.Wrapper, error) {
			w, err := e.kms.open(ctx, uri)
			if uri == customerURI && err == nil {
				return lyingWrapper{w.(*fakeWrapper)}, nil
			}
			return w, err
		}})
	_, err := m.Enable(context.Background(), "acme", "admin-key", customerURI)
	var kerr *kms.Error
	if !errors.As(err, &kerr) || kerr.Kind != kms.KindInvalidCiphertext {
		t.Fatalf("err %v, want an invalid-ciphertext kms.Error", err)
	}
}

func TestEnableRefusesBadOrgID(t *testing.T) {
	e := newEnv(t)
	if _, err := e.manager.Enable(context.Background(), "a/b", "admin-key", customerURI); err == nil {
		t.Fatal("org id with a slash accepted")
	}
}

func TestDisableDeletesRecordsWipesCacheAndAudits(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.enable("acme", customerURI)
	if _, err := e.keys.Current(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	key := e.cachedKeyBytes("acme")
	if err := e.manager.Disable(ctx, "acme", "admin-key"); err != nil {
		t.Fatal(err)
	}
	if !allZero(key) {
		t.Fatal("Disable left the cached key bytes")
	}
	if k, err := e.keys.Current(ctx, "acme"); err != nil || k.Enabled() {
		t.Fatalf("after Disable: %+v, %v; want CMEK off at once", k, err)
	}
	if _, ok := e.auditor.find("acme", "cmek_disabled"); !ok {
		t.Fatal("not audited")
	}
}

func TestCheckRecordsKeyHealth(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.enable("acme", customerURI)
	if err := e.manager.Check(ctx, "acme", "admin-key"); err != nil {
		t.Fatal(err)
	}
	w := e.kms.get(customerURI)
	w.setFail(w.kmsError(kms.KindNotFound, "unwrap", errors.New("key deleted")))
	e.clock.Advance(time.Minute)
	err := e.manager.Check(ctx, "acme", "admin-key")
	var kerr *KeyUnavailableError
	if !errors.As(err, &kerr) {
		t.Fatalf("err %v, want *KeyUnavailableError", err)
	}
	st, _ := e.records.KMSStatus(ctx, "acme")
	if !st.LastFailure.Equal(e.clock.Now()) || !strings.Contains(st.LastFailureMessage, "key deleted") || st.LastSuccess.IsZero() {
		t.Fatalf("key health %+v", st)
	}
	if _, ok := e.auditor.find("acme", "kms_failure"); !ok {
		t.Fatal("failure not audited")
	}
	if err := e.manager.Check(ctx, "nobody", "admin-key"); !errors.Is(err, ErrNoKeyRecord) {
		t.Fatalf("Check of an org without CMEK: %v", err)
	}
}

func TestRewrapAllRewrapsBothHalvesKeepingTheKey(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	before := e.enable("acme", customerURI)
	e.enable("beta", customerURI2)
	data := blob(500)
	k := casKey("acme", data)
	e.put(k, data)

	e.clock.Advance(time.Hour)
	if err := e.manager.RewrapAll(ctx); err != nil {
		t.Fatal(err)
	}
	after, _ := e.records.CurrentKey(ctx, "acme")
	if string(after.WrappedCustomerKey) == string(before.WrappedCustomerKey) || string(after.WrappedOperatorKey) == string(before.WrappedOperatorKey) {
		t.Fatal("halves were not re-wrapped")
	}
	if !after.LastRewrapped.Equal(e.clock.Now()) || after.KeyID != before.KeyID {
		t.Fatalf("record after re-wrap %+v", after)
	}
	e.keys.Invalidate("acme") // force a fresh unwrap of the new wrapped halves
	if got, err := e.get(k, 0); err != nil || string(got) != string(data) {
		t.Fatalf("data sealed before the re-wrap does not open after it: %v", err)
	}
	for _, org := range []string{"acme", "beta"} {
		if _, ok := e.auditor.find(org, "cmek_rewrapped"); !ok {
			t.Errorf("%s: re-wrap not audited", org)
		}
	}

	w := e.kms.get(customerURI2)
	w.setFail(w.kmsError(kms.KindUnavailable, "unwrap", errors.New("timeout")))
	err := e.manager.RewrapAll(ctx)
	var kerr *KeyUnavailableError
	if !errors.As(err, &kerr) || kerr.OrgID != "beta" {
		t.Fatalf("err %v, want beta's key unavailable", err)
	}
	if _, ok := e.auditor.find("beta", "kms_failure"); !ok {
		t.Error("re-wrap failure not audited")
	}
	if st, _ := e.records.KMSStatus(ctx, "beta"); st.LastFailureMessage == "" {
		t.Error("re-wrap failure not in key health")
	}
}

func TestRewrapLoopRunsOnEachTickUntilCancelled(t *testing.T) {
	e := newEnv(t)
	e.enable("acme", customerURI)
	ticks := make(chan time.Time)
	var waited []time.Duration
	e.manager.after = func(d time.Duration) <-chan time.Time { waited = append(waited, d); return ticks }
	e.manager.random = func() float64 { return 0.5 }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { e.manager.RunRewrapLoop(ctx, 0); close(done) }()
	for range 2 {
		ticks <- time.Time{}
		for ev := range e.auditor.events {
			if strings.Contains(ev, "cmek_rewrapped") {
				break
			}
		}
	}
	cancel()
	<-done
	if len(waited) < 2 || waited[0] != DefaultRewrapInterval {
		t.Fatalf("waited %v, want the default interval", waited)
	}
}

func TestJitterStaysWithinTenPercent(t *testing.T) {
	d := 6 * time.Hour
	if lo, hi := jittered(d, 0), jittered(d, 0.999999); lo != d*9/10 || hi >= d*11/10 || hi < d*109/100 {
		t.Fatalf("jitter range [%v, %v]", lo, hi)
	}
}

func TestPermissionHint(t *testing.T) {
	for _, tc := range []struct{ provider, principal, uri, want string }{
		{"gcp-kms", "sa@p.iam.gserviceaccount.com", "gcp-kms://projects/p/locations/l/keyRings/r/cryptoKeys/k",
			"grant roles/cloudkms.cryptoKeyEncrypterDecrypter to sa@p.iam.gserviceaccount.com on projects/p/locations/l/keyRings/r/cryptoKeys/k"},
		{"aws-kms", "arn:aws:iam::1:role/sealcache", "aws-kms://arn:aws:kms:eu-west-1:1:key/abc",
			"allow kms:Encrypt, kms:Decrypt, kms:DescribeKey for arn:aws:iam::1:role/sealcache in the key policy of arn:aws:kms:eu-west-1:1:key/abc"},
	} {
		if got := PermissionHint(tc.provider, tc.principal, tc.uri); got != tc.want {
			t.Errorf("PermissionHint(%s) = %q, want %q", tc.provider, got, tc.want)
		}
	}
	if got := PermissionHint("gcp-kms", "", "gcp-kms://x"); !strings.Contains(got, "ask the operator") {
		t.Errorf("without a principal: %q", got)
	}
}
