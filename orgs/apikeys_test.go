package orgs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

var secretShape = regexp.MustCompile(`^sck_k[a-z2-7]{12}_[A-Za-z0-9_-]{43}$`)

func TestCreateListRevokeAPIKeys(t *testing.T) {
	eachStore(t, func(t *testing.T, st testStore) {
		ctx := context.Background()
		s := st.DB
		org := mustCreateOrg(t, s, "acme")

		key, secret, err := s.CreateAPIKey(ctx, org.ID, RoleWriter, "ci runners")
		if err != nil {
			t.Fatalf("CreateAPIKey: %v", err)
		}
		if !secretShape.MatchString(secret) || !strings.Contains(secret, "_"+key.ID+"_") {
			t.Errorf("secret %q does not have the shape sck_<keyid>_<43 base64url chars> with key id %s", secret, key.ID)
		}
		if key.OrgID != org.ID || key.Role != RoleWriter || key.Label != "ci runners" || key.Created.IsZero() || !key.LastUsed.IsZero() {
			t.Errorf("created key = %+v", key)
		}
		reader, _ := mustCreateKey(t, s, org.ID, RoleReader)

		got, err := s.GetAPIKey(ctx, key.ID)
		if err != nil || got != key {
			t.Fatalf("GetAPIKey = %+v, %v; want %+v", got, err, key)
		}
		list, err := s.ListAPIKeys(ctx, org.ID)
		if err != nil || len(list) != 2 || list[0].ID != key.ID || list[1].ID != reader.ID {
			t.Fatalf("ListAPIKeys = %+v, %v; want the writer then the reader", list, err)
		}

		other := mustCreateOrg(t, s, "other")
		if err := s.RevokeAPIKey(ctx, other.ID, key.ID); !errors.Is(err, ErrNotFound) {
			t.Errorf("revoking through another org: %v, want ErrNotFound", err)
		}
		if err := s.RevokeAPIKey(ctx, "", key.ID); !errors.Is(err, ErrNotFound) {
			t.Errorf("revoking an org key as an operator key: %v, want ErrNotFound", err)
		}
		if err := s.RevokeAPIKey(ctx, org.ID, key.ID); err != nil {
			t.Fatalf("RevokeAPIKey: %v", err)
		}
		if _, err := s.GetAPIKey(ctx, key.ID); !errors.Is(err, ErrNotFound) {
			t.Errorf("GetAPIKey after revoke: %v, want ErrNotFound", err)
		}
		if err := s.RevokeAPIKey(ctx, org.ID, key.ID); !errors.Is(err, ErrNotFound) {
			t.Errorf("second revoke: %v, want ErrNotFound", err)
		}
		if list, _ := s.ListAPIKeys(ctx, org.ID); len(list) != 1 || list[0].ID != reader.ID {
			t.Errorf("ListAPIKeys after revoke = %+v, want only the reader", list)
		}
	})
}

func TestOperatorKeysBelongToNoOrg(t *testing.T) {
	eachStore(t, func(t *testing.T, st testStore) {
		ctx := context.Background()
		s := st.DB
		org := mustCreateOrg(t, s, "acme")

		if _, _, err := s.CreateAPIKey(ctx, org.ID, RoleOperator, "x"); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("operator key in an org: %v, want ErrInvalidArgument", err)
		}
		if _, _, err := s.CreateAPIKey(ctx, "", RoleAdmin, "x"); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("admin key without an org: %v, want ErrInvalidArgument", err)
		}
		op, _ := mustCreateKey(t, s, "", RoleOperator)
		mustCreateKey(t, s, org.ID, RoleAdmin)
		list, err := s.ListAPIKeys(ctx, "")
		if err != nil || len(list) != 1 || list[0].ID != op.ID || list[0].OrgID != "" {
			t.Fatalf("ListAPIKeys(\"\") = %+v, %v; want only the operator key", list, err)
		}
		if err := s.RevokeAPIKey(ctx, "", op.ID); err != nil {
			t.Errorf("revoking the operator key: %v", err)
		}
	})
}

func TestCreateAPIKeyValidates(t *testing.T) {
	eachStore(t, func(t *testing.T, st testStore) {
		ctx := context.Background()
		s := st.DB
		org := mustCreateOrg(t, s, "acme")
		if _, _, err := s.CreateAPIKey(ctx, org.ID, Role("root"), "x"); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("unknown role: %v, want ErrInvalidArgument", err)
		}
		if _, _, err := s.CreateAPIKey(ctx, org.ID, RoleReader, "two\nlines"); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("multi-line label: %v, want ErrInvalidArgument", err)
		}
		if _, _, err := s.CreateAPIKey(ctx, org.ID, RoleReader, strings.Repeat("x", MaxAPIKeyLabelLength+1)); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("long label: %v, want ErrInvalidArgument", err)
		}
		if _, _, err := s.CreateAPIKey(ctx, "onosuchorg", RoleReader, "x"); !errors.Is(err, ErrNotFound) {
			t.Errorf("unknown org: %v, want ErrNotFound", err)
		}
	})
}

func TestSecretsAreNeverStored(t *testing.T) {
	s, path := openTestStore(t)
	org := mustCreateOrg(t, s, "acme")
	_, secret := mustCreateKey(t, s, org.ID, RoleAdmin)
	randomPart := secret[strings.LastIndex(secret, "_")+1:]
	hash := sha256.Sum256([]byte(secret))

	// The database, its WAL and shared-memory files: wherever the row went.
	var all []byte
	files, _ := filepath.Glob(path + "*")
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, b...)
	}
	if bytes.Contains(all, []byte(randomPart)) {
		t.Fatal("the secret is stored in the database files")
	}
	if !bytes.Contains(all, hash[:]) {
		t.Fatal("the secret's SHA-256 is not in the database files: this test is not looking at the right bytes")
	}
}

func TestRoles(t *testing.T) {
	cases := []struct {
		role                   Role
		read, write, admin, op bool
	}{
		{RoleAdmin, true, true, true, false},
		{RoleWriter, true, true, false, false},
		{RoleReader, true, false, false, false},
		{RoleOperator, false, false, false, true},
		{Role("bogus"), false, false, false, false},
	}
	for _, c := range cases {
		if c.role.CanRead() != c.read || c.role.CanWrite() != c.write || c.role.CanAdmin() != c.admin || c.role.IsOperator() != c.op {
			t.Errorf("%s: read=%v write=%v admin=%v operator=%v", c.role, c.role.CanRead(), c.role.CanWrite(), c.role.CanAdmin(), c.role.IsOperator())
		}
	}
	for _, name := range []string{"admin", "writer", "reader", "operator"} {
		if r, err := ParseRole(name); err != nil || string(r) != name {
			t.Errorf("ParseRole(%q) = %q, %v", name, r, err)
		}
	}
	if _, err := ParseRole("Admin"); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("ParseRole(Admin): %v, want ErrInvalidArgument", err)
	}
}

func TestRevokingTheLastAdminKeyIsRefused(t *testing.T) {
	eachStore(t, func(t *testing.T, st testStore) {
		ctx := context.Background()
		s := st.DB
		org := mustCreateOrg(t, s, "acme")
		first, _ := mustCreateKey(t, s, org.ID, RoleAdmin)
		second, _ := mustCreateKey(t, s, org.ID, RoleAdmin)
		writer, _ := mustCreateKey(t, s, org.ID, RoleWriter)

		mustSucceed(t, s.RevokeAPIKey(ctx, org.ID, first.ID))
		err := s.RevokeAPIKey(ctx, org.ID, second.ID)
		if !errors.Is(err, ErrLastAdminKey) || !strings.Contains(err.Error(), "create another admin key first") {
			t.Fatalf("revoking the last admin key: %v, want ErrLastAdminKey saying what to do", err)
		}
		mustSucceed(t, s.RevokeAPIKey(ctx, org.ID, writer.ID)) // other roles: no such rule
		if _, err := s.GetAPIKey(ctx, second.ID); err != nil {
			t.Fatalf("the last admin key is gone: %v", err)
		}
		if err := s.RevokeAPIKey(ctx, "onosuchorg", second.ID); !errors.Is(err, ErrNotFound) {
			t.Errorf("revoking through an unknown org: %v, want ErrNotFound", err)
		}
	})
}

// TestTwoAdminsRevokingEachOtherLeaveOne is issue 9, item 12: two admins
// of one org revoke each other's key at the same moment, on two nodes
// (or two connections). The check and the delete are one transaction, so
// exactly one revocation wins and the org keeps an admin, every time.
func TestTwoAdminsRevokingEachOtherLeaveOne(t *testing.T) {
	eachStore(t, func(t *testing.T, st testStore) {
		ctx := context.Background()
		nodes := [2]*DB{st.DB, st.another(t)}
		const rounds = 40
		for round := range rounds {
			org := mustCreateOrg(t, nodes[0], fmt.Sprintf("org-%d", round))
			var admins [2]APIKey
			for i := range admins {
				admins[i], _ = mustCreateKey(t, nodes[0], org.ID, RoleAdmin)
			}
			start := make(chan struct{})
			results := make(chan error, 2)
			for i := range 2 {
				go func() {
					<-start
					// Admin i revokes the other admin's key, through node i.
					results <- nodes[i].RevokeAPIKey(ctx, org.ID, admins[1-i].ID)
				}()
			}
			close(start)
			var revoked, refused int
			for range 2 {
				switch err := <-results; {
				case err == nil:
					revoked++
				case errors.Is(err, ErrLastAdminKey):
					refused++
				default:
					t.Fatalf("round %d: %v", round, err)
				}
			}
			keys, err := nodes[0].ListAPIKeys(ctx, org.ID)
			if err != nil {
				t.Fatal(err)
			}
			if revoked != 1 || refused != 1 || len(keys) != 1 || keys[0].Role != RoleAdmin {
				t.Fatalf("round %d: %d revoked, %d refused, keys left %+v; want 1, 1 and one admin", round, revoked, refused, keys)
			}
		}
	})
}
