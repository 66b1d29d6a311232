package orgs

import (
	"context"
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sealcache/sealcache/encryption"
)

func TestCreateGetListOrgs(t *testing.T) {
	eachStore(t, func(t *testing.T, st testStore) {
		ctx := context.Background()
		s := st.DB

		b := mustCreateOrg(t, s, "beta")
		a := mustCreateOrg(t, s, "alpha-2")
		if !regexp.MustCompile(`^o[a-z2-7]{12}$`).MatchString(a.ID) {
			t.Errorf("org id %q is not o + 12 chars of [a-z2-7]", a.ID)
		}
		if a.ID == b.ID {
			t.Fatal("two orgs got the same id")
		}
		if a.EncryptionEnabled || a.Created.IsZero() {
			t.Errorf("new org = %+v, want encryption off and a creation time", a)
		}

		got, err := s.GetOrg(ctx, a.ID)
		if err != nil || got.Name != "alpha-2" || !got.Created.Equal(a.Created) {
			t.Fatalf("GetOrg = %+v, %v; want %+v", got, err, a)
		}
		got, err = s.GetOrgByName(ctx, "beta")
		if err != nil || got.ID != b.ID {
			t.Fatalf("GetOrgByName(beta) = %+v, %v", got, err)
		}
		if _, err := s.GetOrg(ctx, "onope"); !errors.Is(err, ErrNotFound) {
			t.Errorf("GetOrg(unknown) error = %v, want ErrNotFound", err)
		}
		if _, err := s.GetOrgByName(ctx, "nope"); !errors.Is(err, ErrNotFound) {
			t.Errorf("GetOrgByName(unknown) error = %v, want ErrNotFound", err)
		}

		list, err := s.ListOrgs(ctx)
		if err != nil || len(list) != 2 || list[0].Name != "alpha-2" || list[1].Name != "beta" {
			t.Fatalf("ListOrgs = %+v, %v; want alpha-2 then beta", list, err)
		}
	})
}

func TestCreateOrgRejectsDuplicateNames(t *testing.T) {
	eachStore(t, func(t *testing.T, st testStore) {
		s := st.DB
		mustCreateOrg(t, s, "acme")
		_, err := s.CreateOrg(context.Background(), "acme")
		if !errors.Is(err, ErrAlreadyExists) {
			t.Fatalf("second CreateOrg(acme) error = %v, want ErrAlreadyExists", err)
		}
	})
}

func TestOrgNameValidation(t *testing.T) {
	eachStore(t, func(t *testing.T, st testStore) {
		s := st.DB
		valid := []string{"a", "acme", "team-42", "0", strings.Repeat("a", 63)}
		invalid := []string{"", "Acme", "a_b", "a.b", "a b", "-a", "a-", "ü", "a/b", strings.Repeat("a", 64)}
		for _, name := range valid {
			if _, err := s.CreateOrg(context.Background(), name); err != nil {
				t.Errorf("CreateOrg(%q) = %v, want success", name, err)
			}
		}
		for _, name := range invalid {
			_, err := s.CreateOrg(context.Background(), name)
			if !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), "a-z, 0-9") {
				t.Errorf("CreateOrg(%q) error = %v, want ErrInvalidArgument saying what is allowed", name, err)
			}
		}
	})
}

func TestDeleteOrgRemovesKeysKeyRecordsAndAuditButKeepsOperatorEvents(t *testing.T) {
	eachStore(t, func(t *testing.T, st testStore) {
		ctx := context.Background()
		s := st.DB
		doomed := mustCreateOrg(t, s, "doomed")
		other := mustCreateOrg(t, s, "other")
		mustCreateKey(t, s, doomed.ID, RoleAdmin)
		otherKey, _ := mustCreateKey(t, s, other.ID, RoleWriter)
		if err := s.EnableKey(ctx, testKeyRecord(doomed.ID, "kdoomed")); err != nil {
			t.Fatal(err)
		}
		if err := s.EnableKey(ctx, testKeyRecord(other.ID, "kother")); err != nil {
			t.Fatal(err)
		}
		if err := s.Audit(ctx, doomed.ID, "k1", "cmek.enable", ""); err != nil {
			t.Fatal(err)
		}
		if err := s.Audit(ctx, "", "kop", "org.delete", "doomed"); err != nil {
			t.Fatal(err)
		}

		if err := s.DeleteOrg(ctx, doomed.ID); err != nil {
			t.Fatalf("DeleteOrg: %v", err)
		}

		if _, err := s.GetOrg(ctx, doomed.ID); !errors.Is(err, ErrNotFound) {
			t.Errorf("GetOrg after delete: %v, want ErrNotFound", err)
		}
		if keys, _ := s.ListAPIKeys(ctx, doomed.ID); len(keys) != 0 {
			t.Errorf("deleted org still has API keys %+v", keys)
		}
		if _, err := s.CurrentKey(ctx, doomed.ID); !errors.Is(err, encryption.ErrNoKeyRecord) {
			t.Errorf("CurrentKey of deleted org: %v, want ErrNoKeyRecord", err)
		}
		if ev, _, _ := s.ListAuditEvents(ctx, doomed.ID, 0, ""); len(ev) != 0 {
			t.Errorf("deleted org still has audit events %+v", ev)
		}
		if ev, _, _ := s.ListAuditEvents(ctx, "", 0, ""); len(ev) != 1 {
			t.Errorf("operator audit events = %+v, want the org.delete event kept", ev)
		}
		// The other org is untouched.
		if _, err := s.GetAPIKey(ctx, otherKey.ID); err != nil {
			t.Errorf("other org's key: %v", err)
		}
		if recs, _ := s.ListKeyRecords(ctx); len(recs) != 1 || recs[0].OrgID != other.ID {
			t.Errorf("key records after delete = %+v, want only the other org's", recs)
		}

		if err := s.DeleteOrg(ctx, doomed.ID); !errors.Is(err, ErrNotFound) {
			t.Errorf("second DeleteOrg: %v, want ErrNotFound", err)
		}
		if err := s.DeleteOrg(ctx, ""); !errors.Is(err, ErrNotFound) {
			t.Errorf("DeleteOrg(\"\"): %v, want ErrNotFound", err)
		}
		if ev, _, _ := s.ListAuditEvents(ctx, "", 0, ""); len(ev) != 1 {
			t.Errorf("DeleteOrg(\"\") touched operator audit events: %+v", ev)
		}
	})
}

func testKeyRecord(orgID, keyID string) encryption.KeyRecord {
	return encryption.KeyRecord{
		KeyID:              keyID,
		OrgID:              orgID,
		CustomerKeyURI:     "local-kms://customer",
		WrappedCustomerKey: []byte("wrapped-customer-" + keyID),
		OperatorKeyURI:     "local-kms://operator",
		WrappedOperatorKey: []byte("wrapped-operator-" + keyID),
		Created:            time.Date(2026, 3, 4, 5, 6, 7, 8, time.UTC),
	}
}
