package orgs

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/ristretto/v2"
)

const (
	// AuthCacheTTL is how long an authenticated key is served from memory.
	// A key revoked through this process stops at once; one revoked on
	// another node sharing a PostgreSQL store stops when Watch delivers the
	// change (within seconds, see Watch); otherwise (another process on the
	// same SQLite file) after at most this long.
	AuthCacheTTL = 30 * time.Second
	// AuthNegativeCacheTTL is how long a rejected secret is remembered, so a
	// client retrying a bad or revoked key in a loop costs no queries.
	AuthNegativeCacheTTL = 5 * time.Second
	// LastUsedInterval: a key's LastUsed is written at most this often.
	LastUsedInterval = time.Minute

	defaultMaxCachedKeys = 100_000
	lastUsedQueueLen     = 1024
)

// AuthConfig tunes an Authenticator. The zero value gives the defaults.
type AuthConfig struct {
	CacheTTL         time.Duration    // default AuthCacheTTL
	NegativeCacheTTL time.Duration    // default AuthNegativeCacheTTL
	MaxCachedKeys    int64            // default 100,000 entries
	Now              func() time.Time // default time.Now; tests pass a fake clock
}

// Authenticator turns API key secrets into key records. Answers are cached
// in memory (keyed by the secret's SHA-256, never the secret), so a steady
// stream of requests with the same key makes no database query, and
// LastUsed is written in the background at most once per LastUsedInterval.
type Authenticator struct {
	store *DB
	cfg   AuthConfig
	cache *ristretto.Cache[string, *authEntry]

	// generation is bumped by InvalidateAll; cached answers made under an
	// older generation are ignored. Revocations are rare, so dropping every
	// answer is cheaper than tracking which hash belongs to which key, and
	// it cannot race with a lookup that was in flight during the revocation.
	generation atomic.Uint64

	unwatch   func() // stops the store's change feed to this Authenticator
	touches   chan touch
	stop      chan struct{}
	flusher   sync.WaitGroup
	closeOnce sync.Once
}

// authEntry is one cached answer: a key record, or a rejection (ok false).
type authEntry struct {
	ok         bool
	key        APIKey
	expires    time.Time // by cfg.Now, so tests can move time
	generation uint64
	// lastUsed is the newest LastUsed written or queued, in Unix
	// nanoseconds; shared by every request that hits this entry.
	lastUsed atomic.Int64
}

type touch struct {
	keyID string
	at    time.Time
}

// NewAuthenticator builds an Authenticator on store and starts its
// LastUsed writer. Close it before closing the store.
func NewAuthenticator(store *DB, cfg AuthConfig) (*Authenticator, error) {
	if cfg.CacheTTL <= 0 {
		cfg.CacheTTL = AuthCacheTTL
	}
	if cfg.NegativeCacheTTL <= 0 {
		cfg.NegativeCacheTTL = AuthNegativeCacheTTL
	}
	if cfg.MaxCachedKeys <= 0 {
		cfg.MaxCachedKeys = defaultMaxCachedKeys
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	cache, err := ristretto.NewCache(&ristretto.Config[string, *authEntry]{
		NumCounters:        cfg.MaxCachedKeys * 10,
		MaxCost:            cfg.MaxCachedKeys,
		BufferItems:        64,
		IgnoreInternalCost: true, // cost is 1 per entry
	})
	if err != nil {
		return nil, fmt.Errorf("creating API key cache: %w", err)
	}
	a := &Authenticator{
		store:   store,
		cfg:     cfg,
		cache:   cache,
		touches: make(chan touch, lastUsedQueueLen),
		stop:    make(chan struct{}),
	}
	a.flusher.Add(1)
	go a.writeLastUsed()
	store.authMu.Lock()
	store.authenticators[a] = struct{}{}
	store.authMu.Unlock()
	// Its cache is empty yet: no initial Resync needed.
	a.unwatch = store.changes.subscribe(a.applyChange, false)
	return a, nil
}

// applyChange drops cached answers that a change made by any node may
// have made wrong. It runs on the store's change feed, before watchers
// that started later (such as a test waiting for the same change).
func (a *Authenticator) applyChange(c Change) {
	switch c.Kind {
	case APIKeyRevoked, OrgDeleted, Resync:
		a.InvalidateAll()
	}
}

// Authenticate returns the key record for secret, or ErrUnauthenticated if
// the secret is malformed, unknown or revoked. Other errors mean the
// database could not be asked (report them as unavailable, not as a bad key).
func (a *Authenticator) Authenticate(ctx context.Context, secret string) (APIKey, error) {
	keyID, ok := parseSecret(secret)
	if !ok {
		return APIKey{}, ErrUnauthenticated
	}
	hash := hashSecret(secret)
	// The cache is keyed by the hash: looking it up reveals nothing about
	// the secret's bytes, so a map lookup (not constant-time) is fine.
	cacheKey := string(hash[:])
	now := a.cfg.Now()
	prev, found := a.cache.Get(cacheKey)
	if found && prev.generation == a.generation.Load() && now.Before(prev.expires) {
		if !prev.ok {
			return APIKey{}, ErrUnauthenticated
		}
		a.noteUse(prev, now)
		return prev.key, nil
	}

	generation := a.generation.Load() // before the query: see InvalidateAll
	key, stored, err := a.store.apiKeyWithHash(ctx, keyID)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return APIKey{}, fmt.Errorf("checking API key: %w", err)
	}
	if err != nil || subtle.ConstantTimeCompare(stored, hash[:]) != 1 {
		a.remember(cacheKey, &authEntry{expires: now.Add(a.cfg.NegativeCacheTTL), generation: generation}, a.cfg.NegativeCacheTTL)
		return APIKey{}, ErrUnauthenticated
	}
	e := &authEntry{ok: true, key: key, expires: now.Add(a.cfg.CacheTTL), generation: generation}
	e.lastUsed.Store(toNanos(key.LastUsed))
	if found && prev.ok && prev.key.ID == key.ID {
		// An entry dropped by an invalidation may have queued a write the
		// database does not show yet; keep its time, or the key would be
		// written again at once.
		e.lastUsed.Store(max(e.lastUsed.Load(), prev.lastUsed.Load()))
	}
	a.remember(cacheKey, e, a.cfg.CacheTTL)
	a.noteUse(e, now)
	return key, nil
}

func (a *Authenticator) remember(cacheKey string, e *authEntry, ttl time.Duration) {
	a.cache.SetWithTTL(cacheKey, e, 1, ttl)
	// Sets are applied asynchronously; wait so the next request hits. This
	// is on the miss path only, which already paid a database query.
	a.cache.Wait()
}

// noteUse queues a LastUsed write if the key's last one is older than
// LastUsedInterval. It never blocks: if the queue is full the write is
// skipped and retried on a later request.
func (a *Authenticator) noteUse(e *authEntry, now time.Time) {
	last := e.lastUsed.Load()
	if now.UnixNano()-last < int64(LastUsedInterval) || !e.lastUsed.CompareAndSwap(last, now.UnixNano()) {
		return
	}
	select {
	case a.touches <- touch{keyID: e.key.ID, at: now}:
	default:
		e.lastUsed.CompareAndSwap(now.UnixNano(), last)
	}
}

func (a *Authenticator) writeLastUsed() {
	defer a.flusher.Done()
	write := func(t touch) {
		if err := a.store.touchAPIKey(context.Background(), t.keyID, t.at); err != nil {
			slog.Warn("recording API key use failed", "key_id", t.keyID, "error", err)
		}
	}
	for {
		select {
		case t := <-a.touches:
			write(t)
		case <-a.stop:
			for { // drain what was queued before Close
				select {
				case t := <-a.touches:
					write(t)
				default:
					return
				}
			}
		}
	}
}

// Invalidate makes the next Authenticate of keyID consult the database.
// It currently drops every cached answer (see InvalidateAll); RevokeAPIKey
// and DeleteOrg on the store call it for you.
func (a *Authenticator) Invalidate(keyID string) { a.InvalidateAll() }

// InvalidateAll makes every later Authenticate consult the database once.
func (a *Authenticator) InvalidateAll() { a.generation.Add(1) }

// Close writes pending LastUsed updates, stops the writer and frees the
// cache. Call it once requests have stopped: Authenticate must not run
// during or after Close.
func (a *Authenticator) Close() {
	a.closeOnce.Do(func() {
		a.unwatch()
		a.store.authMu.Lock()
		delete(a.store.authenticators, a)
		a.store.authMu.Unlock()
		close(a.stop)
		a.flusher.Wait()
		a.cache.Close()
	})
}

// invalidateAuthCaches tells this process's Authenticators that a key or
// org went away.
func (s *DB) invalidateAuthCaches() {
	s.authMu.Lock()
	defer s.authMu.Unlock()
	for a := range s.authenticators {
		a.InvalidateAll()
	}
}
