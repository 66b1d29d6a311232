package orgs

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

// watch starts s.Watch for the rest of the test and returns its events,
// after the first one (always a Resync) has arrived.
func watch(t *testing.T, s *DB) <-chan Change {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	events := make(chan Change, 1000)
	done := make(chan error, 1)
	go func() {
		done <- s.Watch(ctx, func(c Change) {
			select {
			case events <- c:
			default:
				t.Errorf("test watcher is %d events behind", cap(events))
			}
		})
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	if first := nextChange(t, events, eventTimeout); first.Kind != Resync {
		t.Fatalf("first change = %+v, want a Resync", first)
	}
	return events
}

// nextChange returns the next change, failing the test after timeout.
func nextChange(t *testing.T, events <-chan Change, timeout time.Duration) Change {
	t.Helper()
	select {
	case c := <-events:
		return c
	case <-time.After(timeout):
		t.Fatalf("no change arrived within %v", timeout)
		return Change{}
	}
}

// nextChangeExceptResync skips Resyncs (a node may resync at any time).
func nextChangeExceptResync(t *testing.T, events <-chan Change) Change {
	t.Helper()
	for {
		if c := nextChange(t, events, eventTimeout); c.Kind != Resync {
			return c
		}
	}
}

// TestWatchDeliversEachCommittedChangeInOrder, on both databases: the
// changes made through this DB arrive in commit order with what changed;
// a change that rolled back sends nothing.
func TestWatchDeliversEachCommittedChangeInOrder(t *testing.T) {
	eachStore(t, func(t *testing.T, st testStore) {
		ctx := context.Background()
		s := st.DB
		org := mustCreateOrg(t, s, "acme")
		other := mustCreateOrg(t, s, "other")
		mustCreateKey(t, s, org.ID, RoleAdmin)
		writer, _ := mustCreateKey(t, s, org.ID, RoleWriter)
		operator, _ := mustCreateKey(t, s, "", RoleOperator)
		mustSucceed(t, s.EnableKey(ctx, testKeyRecord(other.ID, "ktaken")))
		events := watch(t, s)
		settleChangeFeed(t, s)

		mustSucceed(t, s.RevokeAPIKey(ctx, org.ID, writer.ID))
		mustSucceed(t, s.RevokeAPIKey(ctx, "", operator.ID))
		mustSucceed(t, s.EnableKey(ctx, testKeyRecord(org.ID, "k1")))
		if err := s.EnableKey(ctx, testKeyRecord(org.ID, "ktaken")); !errors.Is(err, ErrAlreadyExists) {
			t.Fatalf("EnableKey with a taken key id: %v", err) // rolled back: no change
		}
		mustSucceed(t, s.UpdateWrappedKeys(ctx, "k1", []byte("c2"), []byte("o2"), time.Now()))
		mustSucceed(t, s.DisableKeys(ctx, org.ID))
		mustSucceed(t, s.DeleteOrg(ctx, org.ID))

		for i, want := range []Change{
			{Kind: APIKeyRevoked, OrgID: org.ID, KeyID: writer.ID},
			{Kind: APIKeyRevoked, KeyID: operator.ID},
			{Kind: KeyRecordsChanged, OrgID: org.ID, KeyID: "k1"},
			{Kind: KeyRecordsChanged, OrgID: org.ID, KeyID: "k1"},
			{Kind: KeyRecordsChanged, OrgID: org.ID},
			{Kind: OrgDeleted, OrgID: org.ID},
		} {
			if got := nextChangeExceptResync(t, events); got != want {
				t.Fatalf("change %d = %+v, want %+v", i, got, want)
			}
		}
	})
}

// TestWatchSeesChangesOfAnotherPostgresNode is issue 11, item 6: two
// nodes share one PostgreSQL; a revocation, a CMEK disable and an org
// deletion on one reach the other's watchers, and its Authenticator
// refuses the keys as soon as the change arrived (Authenticators get each
// change before watchers that started after them).
func TestWatchSeesChangesOfAnotherPostgresNode(t *testing.T) {
	ctx := context.Background()
	st := storeKinds[1].open(t)
	nodeA, nodeB := st.DB, st.another(t)
	org := mustCreateOrg(t, nodeA, "acme")
	mustCreateKey(t, nodeA, org.ID, RoleAdmin)
	revoked, revokedSecret := mustCreateKey(t, nodeA, org.ID, RoleWriter)
	_, survivorSecret := mustCreateKey(t, nodeA, org.ID, RoleReader)
	authB := newTestAuthenticator(t, nodeB, AuthConfig{CacheTTL: time.Hour})
	for _, secret := range []string{revokedSecret, survivorSecret} {
		if _, err := authB.Authenticate(ctx, secret); err != nil {
			t.Fatal(err)
		}
	}
	events := watch(t, nodeB)

	mustSucceed(t, nodeA.RevokeAPIKey(ctx, org.ID, revoked.ID))
	if got, want := nextChangeExceptResync(t, events), (Change{Kind: APIKeyRevoked, OrgID: org.ID, KeyID: revoked.ID}); got != want {
		t.Fatalf("node B saw %+v, want %+v", got, want)
	}
	if _, err := authB.Authenticate(ctx, revokedSecret); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("node B after the revocation arrived: %v, want ErrUnauthenticated", err)
	}

	mustSucceed(t, nodeA.EnableKey(ctx, testKeyRecord(org.ID, "k1")))
	if got, want := nextChangeExceptResync(t, events), (Change{Kind: KeyRecordsChanged, OrgID: org.ID, KeyID: "k1"}); got != want {
		t.Fatalf("node B saw %+v, want %+v", got, want)
	}
	mustSucceed(t, nodeA.DisableKeys(ctx, org.ID))
	if got, want := nextChangeExceptResync(t, events), (Change{Kind: KeyRecordsChanged, OrgID: org.ID}); got != want {
		t.Fatalf("node B saw %+v, want %+v (CMEK disabled)", got, want)
	}

	if _, err := authB.Authenticate(ctx, survivorSecret); err != nil {
		t.Fatal(err)
	}
	mustSucceed(t, nodeA.DeleteOrg(ctx, org.ID))
	if got, want := nextChangeExceptResync(t, events), (Change{Kind: OrgDeleted, OrgID: org.ID}); got != want {
		t.Fatalf("node B saw %+v, want %+v", got, want)
	}
	if _, err := authB.Authenticate(ctx, survivorSecret); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("node B after the org deletion arrived: %v, want ErrUnauthenticated", err)
	}
}

// TestWatchResyncsWhenTheListenerConnectionIsLost: node B's LISTEN
// connection is killed, and node A revokes a key while B is not
// listening, so that notification is lost for good. B delivers a Resync
// when it notices the loss, and another once it listens again; after that
// one its Authenticator refuses the key it had cached meanwhile.
func TestWatchResyncsWhenTheListenerConnectionIsLost(t *testing.T) {
	ctx := context.Background()
	st := storeKinds[1].open(t)
	nodeA, nodeB := st.DB, st.another(t)
	org := mustCreateOrg(t, nodeA, "acme")
	mustCreateKey(t, nodeA, org.ID, RoleAdmin)
	key, secret := mustCreateKey(t, nodeA, org.ID, RoleWriter)

	// Hold node B's reconnect until node A's change is made.
	var connects atomic.Int32
	reconnecting, release := make(chan struct{}), make(chan struct{})
	nodeB.beforeListenerConnect = func(ctx context.Context) {
		if connects.Add(1) == 2 {
			close(reconnecting)
			select {
			case <-release:
			case <-ctx.Done():
			}
		}
	}
	authB := newTestAuthenticator(t, nodeB, AuthConfig{CacheTTL: time.Hour})
	events := watch(t, nodeB)

	var killed int
	err := nodeA.db.QueryRow(`SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE datname = current_database() AND application_name = $1`, listenApplicationName).Scan(&killed)
	if err != nil || killed != 1 {
		t.Fatalf("terminating node B's listener: %d terminated, %v; want 1", killed, err)
	}
	if c := nextChange(t, events, eventTimeout); c.Kind != Resync {
		t.Fatalf("after the listener was killed node B saw %+v, want a Resync", c)
	}
	select {
	case <-reconnecting:
	case <-time.After(eventTimeout):
		t.Fatal("node B does not try to reconnect")
	}

	// Meanwhile: node B caches the key again, node A revokes it, and the
	// notification goes nowhere.
	if _, err := authB.Authenticate(ctx, secret); err != nil {
		t.Fatal(err)
	}
	mustSucceed(t, nodeA.RevokeAPIKey(ctx, org.ID, key.ID))
	if _, err := authB.Authenticate(ctx, secret); err != nil {
		t.Fatalf("node B before it resynced: %v; want its cached answer (this test would prove nothing)", err)
	}

	close(release)
	// Within the bound promised for a lost notification.
	if c := nextChange(t, events, 5*time.Second); c.Kind != Resync {
		t.Fatalf("after reconnecting node B saw %+v, want a Resync", c)
	}
	if _, err := authB.Authenticate(ctx, secret); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("node B after the Resync: %v, want ErrUnauthenticated", err)
	}
	// And it listens again: the next change arrives as itself.
	mustSucceed(t, nodeA.DisableKeys(ctx, org.ID))
	if got, want := nextChangeExceptResync(t, events), (Change{Kind: KeyRecordsChanged, OrgID: org.ID}); got != want {
		t.Fatalf("node B saw %+v, want %+v", got, want)
	}
}

// TestWatchOnSQLiteSeesOnlyThisHandle: SQLite has one node; another
// handle (or process) on the same file is not watched. Its revocations
// reach this process's Authenticator within the cache TTL (see
// TestRevokedKeyStopsAtOnceHereAndWithinTTLElsewhere).
func TestWatchOnSQLiteSeesOnlyThisHandle(t *testing.T) {
	ctx := context.Background()
	st := storeKinds[0].open(t)
	s, other := st.DB, st.another(t)
	org := mustCreateOrg(t, s, "acme")
	events := watch(t, s)
	mustSucceed(t, other.DisableKeys(ctx, org.ID))
	mustSucceed(t, s.EnableKey(ctx, testKeyRecord(org.ID, "k1")))
	if got, want := nextChange(t, events, eventTimeout), (Change{Kind: KeyRecordsChanged, OrgID: org.ID, KeyID: "k1"}); got != want {
		t.Fatalf("first change = %+v, want %+v (and nothing for the other handle's disable)", got, want)
	}
}

func TestWatchReturnsWhenCancelledOrClosed(t *testing.T) {
	eachStore(t, func(t *testing.T, st testStore) {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- st.Watch(ctx, func(Change) {}) }()
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Watch after cancel returned %v, want context.Canceled", err)
		}

		s := st.another(t)
		go func() { done <- s.Watch(context.Background(), func(Change) {}) }()
		s.Close()
		if err := <-done; err != nil {
			t.Errorf("Watch after Close returned %v, want nil", err)
		}
	})
}

func TestChangePayloadsRoundTripAndUnknownOnesResync(t *testing.T) {
	for _, c := range []Change{
		{Kind: KeyRecordsChanged, OrgID: "o1", KeyID: "k1"},
		{Kind: OrgDeleted, OrgID: "o1"},
		{Kind: APIKeyRevoked, KeyID: "k1"},
	} {
		if got := decodeChange(encodeChange(c)); got != c {
			t.Errorf("decode(encode(%+v)) = %+v", c, got)
		}
	}
	for _, payload := range []string{"", "garbage", `{"kind":"something_new","org":"o1"}`} {
		if got := decodeChange(payload); got != (Change{Kind: Resync}) {
			t.Errorf("decode(%q) = %+v, want a Resync", payload, got)
		}
	}
}
