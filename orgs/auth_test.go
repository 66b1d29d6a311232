package orgs

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sealcache/sealcache/internal/fakeclock"
)

func TestAuthenticateAcceptsValidAndRejectsBadSecrets(t *testing.T) {
	eachStore(t, func(t *testing.T, st testStore) {
		ctx := context.Background()
		s := st.DB
		org := mustCreateOrg(t, s, "acme")
		key, secret := mustCreateKey(t, s, org.ID, RoleWriter)
		a := newTestAuthenticator(t, s, AuthConfig{})

		got, err := a.Authenticate(ctx, secret)
		if err != nil || got.ID != key.ID || got.OrgID != org.ID || got.Role != RoleWriter {
			t.Fatalf("Authenticate(valid) = %+v, %v; want key %s", got, err, key.ID)
		}

		// Same key id, different random part: the id alone proves nothing.
		wrong := secret[:len(secret)-43] + strings.Repeat("A", 43)
		_, other := mustCreateKey(t, s, org.ID, RoleReader)
		swapped := "sck_" + key.ID + other[strings.LastIndex(other, "_"):]
		for name, bad := range map[string]string{
			"wrong secret for a valid key id": wrong,
			"another key's random part":       swapped,
			"unknown key id":                  "sck_knosuchkey0000_" + strings.Repeat("A", 43),
			"empty":                           "",
			"no prefix":                       strings.TrimPrefix(secret, "sck_"),
			"truncated":                       secret[:len(secret)-1],
			"extra byte":                      secret + "A",
			"bad key id characters":           "sck_K/../x_" + strings.Repeat("A", 43),
		} {
			if _, err := a.Authenticate(ctx, bad); !errors.Is(err, ErrUnauthenticated) {
				t.Errorf("%s: error = %v, want ErrUnauthenticated", name, err)
			}
		}
		// The valid secret still works after those (no poisoning by key id).
		if _, err := a.Authenticate(ctx, secret); err != nil {
			t.Fatalf("valid secret after bad ones: %v", err)
		}
	})
}

func TestAuthCacheMakesOneQueryForManyRequests(t *testing.T) {
	eachStore(t, func(t *testing.T, st testStore) {
		ctx := context.Background()
		s := st.DB
		org := mustCreateOrg(t, s, "acme")
		_, secret := mustCreateKey(t, s, org.ID, RoleReader)
		a := newTestAuthenticator(t, s, AuthConfig{})
		lookups := countQueries(s, "FROM api_keys")

		for range 100 {
			if _, err := a.Authenticate(ctx, secret); err != nil {
				t.Fatal(err)
			}
		}
		if n := lookups.n.Load(); n != 1 {
			t.Fatalf("100 authentications made %d key lookups, want 1", n)
		}
	})
}

func TestAuthCachesRejectionsBriefly(t *testing.T) {
	eachStore(t, func(t *testing.T, st testStore) {
		ctx := context.Background()
		s := st.DB
		clock := fakeclock.New()
		a := newTestAuthenticator(t, s, AuthConfig{Now: clock.Now})
		lookups := countQueries(s, "FROM api_keys")
		bad := "sck_knosuchkey0000_" + strings.Repeat("A", 43)

		for range 50 {
			if _, err := a.Authenticate(ctx, bad); !errors.Is(err, ErrUnauthenticated) {
				t.Fatal(err)
			}
		}
		if n := lookups.n.Load(); n != 1 {
			t.Fatalf("50 attempts with the same bad key made %d lookups, want 1", n)
		}
		clock.Advance(AuthNegativeCacheTTL)
		a.Authenticate(ctx, bad)
		if n := lookups.n.Load(); n != 2 {
			t.Fatalf("after the negative TTL: %d lookups, want 2", n)
		}
		// Malformed secrets never reach the database.
		a.Authenticate(ctx, "not-a-key")
		if n := lookups.n.Load(); n != 2 {
			t.Fatalf("a malformed secret made a lookup")
		}
	})
}

func TestRevokedKeyStopsAtOnceHereAndWithinTTLElsewhere(t *testing.T) {
	ctx := context.Background()
	s, path := openTestStore(t)
	org := mustCreateOrg(t, s, "acme")
	key, secret := mustCreateKey(t, s, org.ID, RoleWriter)
	clock := fakeclock.New()
	here := newTestAuthenticator(t, s, AuthConfig{Now: clock.Now})

	// "Another node": its own DB and Authenticator on the same database.
	s2, err := OpenSQLite(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s2.Close() })
	elsewhere := newTestAuthenticator(t, s2, AuthConfig{Now: clock.Now})

	for _, a := range []*Authenticator{here, elsewhere} {
		if _, err := a.Authenticate(ctx, secret); err != nil {
			t.Fatalf("before revoke: %v", err)
		}
	}
	if err := s.RevokeAPIKey(ctx, org.ID, key.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := here.Authenticate(ctx, secret); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("same process right after revoke: %v, want ErrUnauthenticated", err)
	}
	// The other node serves its cached answer until the TTL ends...
	clock.Advance(AuthCacheTTL - time.Second)
	if _, err := elsewhere.Authenticate(ctx, secret); err != nil {
		t.Fatalf("other node within TTL: %v (expected the cached answer)", err)
	}
	// ...and not a moment longer.
	clock.Advance(time.Second)
	if _, err := elsewhere.Authenticate(ctx, secret); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("other node after TTL: %v, want ErrUnauthenticated", err)
	}
}

func TestDeleteOrgStopsItsKeysAtOnce(t *testing.T) {
	eachStore(t, func(t *testing.T, st testStore) {
		ctx := context.Background()
		s := st.DB
		org := mustCreateOrg(t, s, "acme")
		_, secret := mustCreateKey(t, s, org.ID, RoleAdmin)
		a := newTestAuthenticator(t, s, AuthConfig{})
		if _, err := a.Authenticate(ctx, secret); err != nil {
			t.Fatal(err)
		}
		if err := s.DeleteOrg(ctx, org.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := a.Authenticate(ctx, secret); !errors.Is(err, ErrUnauthenticated) {
			t.Fatalf("key of a deleted org: %v, want ErrUnauthenticated", err)
		}
	})
}

func TestLastUsedIsWrittenAtMostOncePerMinuteOffTheRequestPath(t *testing.T) {
	eachStore(t, func(t *testing.T, st testStore) {
		ctx := context.Background()
		s := st.DB
		org := mustCreateOrg(t, s, "acme")
		key, secret := mustCreateKey(t, s, org.ID, RoleReader)
		clock := fakeclock.New()
		start := clock.Now()
		// A long cache TTL keeps one cache entry for the whole test.
		a, err := NewAuthenticator(s, AuthConfig{Now: clock.Now, CacheTTL: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		writes := countQueries(s, "UPDATE api_keys SET last_used")

		// 150 requests, one per second: uses at 0 s, 60 s and 120 s get written.
		for range 150 {
			if _, err := a.Authenticate(ctx, secret); err != nil {
				t.Fatal(err)
			}
			clock.Advance(time.Second)
		}
		a.Close() // waits for queued writes
		if n := writes.n.Load(); n != 3 {
			t.Errorf("150 requests over 150 s made %d LastUsed writes, want 3", n)
		}
		got, err := s.GetAPIKey(ctx, key.ID)
		if err != nil {
			t.Fatal(err)
		}
		if want := start.Add(120 * time.Second); !got.LastUsed.Equal(want) {
			t.Errorf("LastUsed = %v, want %v", got.LastUsed, want)
		}
	})
}

func TestConcurrentAuthentication(t *testing.T) {
	eachStore(t, func(t *testing.T, st testStore) {
		ctx := context.Background()
		s := st.DB
		org := mustCreateOrg(t, s, "acme")
		var secrets []string
		for range 4 {
			_, secret := mustCreateKey(t, s, org.ID, RoleWriter)
			secrets = append(secrets, secret)
		}
		revoked, revokedSecret := mustCreateKey(t, s, org.ID, RoleReader)
		if err := s.RevokeAPIKey(ctx, org.ID, revoked.ID); err != nil {
			t.Fatal(err)
		}
		a := newTestAuthenticator(t, s, AuthConfig{})

		var wg sync.WaitGroup
		errs := make(chan error, 64)
		for g := range 32 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 200 {
					secret := secrets[(g+i)%len(secrets)]
					if _, err := a.Authenticate(ctx, secret); err != nil {
						errs <- fmt.Errorf("valid key rejected: %w", err)
						return
					}
					if _, err := a.Authenticate(ctx, revokedSecret); !errors.Is(err, ErrUnauthenticated) {
						errs <- fmt.Errorf("revoked key: %v", err)
						return
					}
					if i%50 == 0 { // revocations elsewhere invalidate the cache meanwhile
						a.InvalidateAll()
						if err := s.Audit(ctx, org.ID, "system", "test.concurrent", ""); err != nil {
							errs <- err
							return
						}
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	})
}

func BenchmarkAuthenticateCached(b *testing.B) {
	ctx := context.Background()
	s, err := OpenSQLite(filepath.Join(b.TempDir(), "meta.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	org := mustCreateOrg(b, s, "acme")
	_, secret := mustCreateKey(b, s, org.ID, RoleWriter)
	a, err := NewAuthenticator(s, AuthConfig{})
	if err != nil {
		b.Fatal(err)
	}
	defer a.Close()
	if _, err := a.Authenticate(ctx, secret); err != nil {
		b.Fatal(err)
	}

	b.Run("serial", func(b *testing.B) {
		for b.Loop() {
			if _, err := a.Authenticate(ctx, secret); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := a.Authenticate(ctx, secret); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}
