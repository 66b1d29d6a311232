package orgs

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/sealcache/sealcache/encryption"
)

func TestEnableAndDisableKeysTogetherWithTheFlag(t *testing.T) {
	eachStore(t, func(t *testing.T, st testStore) {
		ctx := context.Background()
		s := st.DB
		org := mustCreateOrg(t, s, "acme")

		if _, err := s.CurrentKey(ctx, org.ID); !errors.Is(err, encryption.ErrNoKeyRecord) {
			t.Fatalf("CurrentKey before enable: %v, want ErrNoKeyRecord", err)
		}
		rec := testKeyRecord(org.ID, "kfirst")
		if err := s.EnableKey(ctx, rec); err != nil {
			t.Fatalf("EnableKey: %v", err)
		}
		got, err := s.CurrentKey(ctx, org.ID)
		rec.LastRewrapped = rec.Created // defaulted by EnableKey
		if err != nil || !reflect.DeepEqual(got, rec) {
			t.Fatalf("CurrentKey = %+v, %v\nwant %+v", got, err, rec)
		}
		if o, _ := s.GetOrg(ctx, org.ID); !o.EncryptionEnabled {
			t.Error("EncryptionEnabled is false after EnableKey")
		}

		// Enabling again replaces the record: one active key per org.
		second := testKeyRecord(org.ID, "ksecond")
		if err := s.EnableKey(ctx, second); err != nil {
			t.Fatal(err)
		}
		if recs, _ := s.ListKeyRecords(ctx); len(recs) != 1 || recs[0].KeyID != "ksecond" {
			t.Fatalf("after re-enable records = %+v, want only ksecond", recs)
		}

		if err := s.DisableKeys(ctx, org.ID); err != nil {
			t.Fatalf("DisableKeys: %v", err)
		}
		if _, err := s.CurrentKey(ctx, org.ID); !errors.Is(err, encryption.ErrNoKeyRecord) {
			t.Errorf("CurrentKey after disable: %v, want ErrNoKeyRecord", err)
		}
		if o, _ := s.GetOrg(ctx, org.ID); o.EncryptionEnabled {
			t.Error("EncryptionEnabled is true after DisableKeys")
		}
	})
}

func TestEnableKeyIsAllOrNothing(t *testing.T) {
	eachStore(t, func(t *testing.T, st testStore) {
		ctx := context.Background()
		s := st.DB
		a := mustCreateOrg(t, s, "a")
		b := mustCreateOrg(t, s, "b")
		if err := s.EnableKey(ctx, testKeyRecord(a.ID, "kshared")); err != nil {
			t.Fatal(err)
		}

		// b's insert fails on the duplicate key id, after the flag update ran
		// in the same transaction: the flag must stay off.
		err := s.EnableKey(ctx, testKeyRecord(b.ID, "kshared"))
		if !errors.Is(err, ErrAlreadyExists) {
			t.Fatalf("EnableKey with a used key id: %v, want ErrAlreadyExists", err)
		}
		if o, _ := s.GetOrg(ctx, b.ID); o.EncryptionEnabled {
			t.Error("failed EnableKey left the encryption flag on")
		}

		if err := s.EnableKey(ctx, testKeyRecord("onosuchorg", "knew")); !errors.Is(err, ErrNotFound) {
			t.Errorf("EnableKey for an unknown org: %v, want ErrNotFound", err)
		}
		if err := s.DisableKeys(ctx, "onosuchorg"); !errors.Is(err, ErrNotFound) {
			t.Errorf("DisableKeys for an unknown org: %v, want ErrNotFound", err)
		}
		incomplete := testKeyRecord(b.ID, "kx")
		incomplete.WrappedOperatorKey = nil
		if err := s.EnableKey(ctx, incomplete); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("EnableKey without a wrapped operator key: %v, want ErrInvalidArgument", err)
		}
	})
}

func TestUpdateWrappedKeys(t *testing.T) {
	eachStore(t, func(t *testing.T, st testStore) {
		ctx := context.Background()
		s := st.DB
		org := mustCreateOrg(t, s, "acme")
		if err := s.EnableKey(ctx, testKeyRecord(org.ID, "k1")); err != nil {
			t.Fatal(err)
		}
		at := time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC)
		if err := s.UpdateWrappedKeys(ctx, "k1", []byte("c2"), []byte("o2"), at); err != nil {
			t.Fatalf("UpdateWrappedKeys: %v", err)
		}
		got, _ := s.CurrentKey(ctx, org.ID)
		if string(got.WrappedCustomerKey) != "c2" || string(got.WrappedOperatorKey) != "o2" || !got.LastRewrapped.Equal(at) {
			t.Errorf("after re-wrap: %+v", got)
		}
		if err := s.DisableKeys(ctx, org.ID); err != nil {
			t.Fatal(err)
		}
		// A re-wrap finishing after disable must not bring the key back.
		if err := s.UpdateWrappedKeys(ctx, "k1", []byte("c3"), []byte("o3"), at); !errors.Is(err, ErrNotFound) {
			t.Errorf("UpdateWrappedKeys after disable: %v, want ErrNotFound", err)
		}
	})
}

func TestKMSStatus(t *testing.T) {
	eachStore(t, func(t *testing.T, st testStore) {
		ctx := context.Background()
		s := st.DB
		org := mustCreateOrg(t, s, "acme")
		status, err := s.KMSStatus(ctx, org.ID)
		if err != nil || status != (encryption.KMSStatus{}) {
			t.Fatalf("fresh KMSStatus = %+v, %v", status, err)
		}
		t1 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		t2 := t1.Add(time.Minute)
		if err := s.RecordKMSStatus(ctx, org.ID, true, "", t1); err != nil {
			t.Fatal(err)
		}
		if err := s.RecordKMSStatus(ctx, org.ID, false, "permission denied on cryptoKeys/K", t2); err != nil {
			t.Fatal(err)
		}
		status, _ = s.KMSStatus(ctx, org.ID)
		want := encryption.KMSStatus{LastSuccess: t1, LastFailure: t2, LastFailureMessage: "permission denied on cryptoKeys/K"}
		if !status.LastSuccess.Equal(want.LastSuccess) || !status.LastFailure.Equal(want.LastFailure) || status.LastFailureMessage != want.LastFailureMessage {
			t.Errorf("KMSStatus = %+v, want %+v", status, want)
		}
		if err := s.RecordKMSStatus(ctx, "onosuchorg", true, "", t1); !errors.Is(err, ErrNotFound) {
			t.Errorf("RecordKMSStatus for an unknown org: %v, want ErrNotFound", err)
		}
		if _, err := s.KMSStatus(ctx, "onosuchorg"); !errors.Is(err, ErrNotFound) {
			t.Errorf("KMSStatus for an unknown org: %v, want ErrNotFound", err)
		}
	})
}
