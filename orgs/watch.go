package orgs

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
)

// ChangeKind says what changed in the metadata store.
type ChangeKind int

const (
	// KeyRecordsChanged: the org's CMEK key records were enabled,
	// replaced, re-wrapped or deleted (CMEK disabled). Re-read the org's
	// current key record; drop derived keys whose key id is no longer it.
	KeyRecordsChanged ChangeKind = iota + 1
	// OrgDeleted: the org and everything it had are gone.
	OrgDeleted
	// APIKeyRevoked: the API key was revoked; stop accepting it.
	APIKeyRevoked
	// Resync: changes may have been missed (watching just started, or the
	// connection that carries other nodes' changes was lost or restored).
	// Re-read, or drop, everything cached from the store. OrgID and KeyID
	// are empty.
	Resync
)

func (k ChangeKind) String() string {
	switch k {
	case KeyRecordsChanged:
		return "key_records_changed"
	case OrgDeleted:
		return "org_deleted"
	case APIKeyRevoked:
		return "api_key_revoked"
	case Resync:
		return "resync"
	}
	return fmt.Sprintf("ChangeKind(%d)", int(k))
}

// Change is one change to the metadata store, made by this node or another.
type Change struct {
	Kind  ChangeKind
	OrgID string // "" for Resync, and for APIKeyRevoked of an operator key
	// KeyID is the API key revoked (APIKeyRevoked) or the org's new CMEK
	// key record (KeyRecordsChanged; "" when CMEK was disabled).
	KeyID string
}

// Watch calls fn with every change to the store until ctx is done or the
// store is closed, then returns (ctx.Err(), or nil when the store closed).
//
// Which changes arrive:
//   - PostgreSQL: every committed change made by any node (this one
//     included), through LISTEN/NOTIFY on a connection of its own, shared
//     by every watcher of this DB. The notification is sent in the
//     transaction of the change, so nothing arrives for a change that
//     rolled back, and it arrives within milliseconds of the commit. If
//     that connection drops, or stops answering for 3 s, a Resync is
//     delivered, then again at each reconnect attempt (at most 5 s apart)
//     until the connection is back, and once more then: a change whose
//     notification was lost is covered by a Resync within 5 s.
//   - SQLite (one node): the changes made through this DB, after commit.
//     Changes by another process on the same file (`sealcache admin`) are
//     not seen: they reach this process within its cache TTLs.
//
// The first call is always a Resync (anything cached before Watch began
// may be stale). Calls come from one goroutine shared by every watcher of
// this DB, in commit order, and to watchers in the order they started
// (an Authenticator, which watches from NewAuthenticator on, sees each
// change before a Watch started later): fn must return quickly and must
// not call Watch.
func (s *DB) Watch(ctx context.Context, fn func(Change)) error {
	stop := s.changes.subscribe(fn, true)
	defer stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-s.closing:
		return nil
	}
}

// notify records a change made by the current transaction: on PostgreSQL
// it is sent to every node's listener as part of the transaction; on
// SQLite it is published to this process's watchers after commit.
func (r runner) notify(ctx context.Context, c Change) error {
	if r.tx == nil {
		panic("orgs: notify outside a transaction")
	}
	if r.s.dialect.notifyStmt == "" {
		r.tx.changes = append(r.tx.changes, c)
		return nil
	}
	_, err := r.exec(ctx, r.s.dialect.notifyStmt, notifyChannel, encodeChange(c))
	return err
}

// notifyChannel is the LISTEN/NOTIFY channel of metadata changes.
const notifyChannel = "sealcache_metadata_changes"

// The notification payload: small JSON, so other versions can add fields.
type changePayload struct {
	Kind  string `json:"kind"`
	OrgID string `json:"org,omitempty"`
	KeyID string `json:"key,omitempty"`
}

func encodeChange(c Change) string {
	b, _ := json.Marshal(changePayload{Kind: c.Kind.String(), OrgID: c.OrgID, KeyID: c.KeyID})
	return string(b)
}

// decodeChange reads a notification payload. Anything it does not
// understand (a newer node's kind, garbage) becomes a Resync: when in
// doubt, callers flush.
func decodeChange(payload string) Change {
	var p changePayload
	if err := json.Unmarshal([]byte(payload), &p); err == nil {
		for _, k := range []ChangeKind{KeyRecordsChanged, OrgDeleted, APIKeyRevoked} {
			if p.Kind == k.String() {
				return Change{Kind: k, OrgID: p.OrgID, KeyID: p.KeyID}
			}
		}
	}
	return Change{Kind: Resync}
}

// changeHub fans changes out to the watchers of one DB. One dispatcher
// goroutine calls every watcher, so delivery is in order and a watcher
// that started after another sees each change after it. Publishing never
// blocks: the queue grows instead (changes are rare and small).
type changeHub struct {
	s *DB

	mu        sync.Mutex
	watchers  []*watcher
	queue     []delivery
	wake      chan struct{} // capacity 1: "the queue has something"
	started   bool          // dispatcher (and, on PostgreSQL, listener) running
	closed    bool          // the DB is closing: start nothing more
	listening bool          // the PostgreSQL listener's connection is up
	// onListening is closed when listening becomes true (tests wait on it).
	onListening chan struct{}
}

type watcher struct {
	fn      func(Change)
	mu      sync.Mutex // held while fn runs, so stop waits for a call in progress
	stopped bool
}

// delivery is a queued change and the watchers it is for: those present
// when it was published (so a new watcher's first call is its Resync).
type delivery struct {
	c  Change
	to []*watcher
	// reached, when set, is closed when the dispatcher gets here (see
	// settle); such a delivery has no change.
	reached chan struct{}
}

func newChangeHub(s *DB) *changeHub {
	return &changeHub{s: s, wake: make(chan struct{}, 1), onListening: make(chan struct{})}
}

// subscribe adds fn as a watcher and returns the function that removes it.
// After stop returns, fn is not called again. initialResync sends fn a
// Resync first; a watcher that has cached nothing yet does without.
func (h *changeHub) subscribe(fn func(Change), initialResync bool) (stop func()) {
	w := &watcher{fn: fn}
	h.mu.Lock()
	h.watchers = append(h.watchers, w)
	if initialResync {
		h.enqueueLocked(delivery{c: Change{Kind: Resync}, to: []*watcher{w}})
	}
	if !h.started && !h.closed {
		h.started = true
		h.s.goBackground(h.dispatch)
		if h.s.listen != nil {
			h.s.listen()
		}
	}
	h.mu.Unlock()
	return func() {
		w.mu.Lock()
		w.stopped = true
		w.mu.Unlock()
		h.mu.Lock()
		for i, x := range h.watchers {
			if x == w {
				h.watchers = append(h.watchers[:i:i], h.watchers[i+1:]...)
				break
			}
		}
		h.mu.Unlock()
	}
}

// close stops new background work; the DB's Close waits for the rest.
func (h *changeHub) close() {
	h.mu.Lock()
	h.closed = true
	h.mu.Unlock()
}

// publish queues c for every watcher.
func (h *changeHub) publish(c Change) {
	h.mu.Lock()
	if len(h.watchers) > 0 {
		h.enqueueLocked(delivery{c: c, to: append([]*watcher(nil), h.watchers...)})
	}
	h.mu.Unlock()
}

func (h *changeHub) enqueueLocked(d delivery) {
	h.queue = append(h.queue, d)
	select {
	case h.wake <- struct{}{}:
	default:
	}
}

// setListening records whether the PostgreSQL listener is receiving
// notifications.
func (h *changeHub) setListening(on bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if on == h.listening {
		return
	}
	h.listening = on
	if on {
		close(h.onListening)
	} else {
		h.onListening = make(chan struct{})
	}
}

// whenListening returns a channel closed once the listener receives
// notifications (PostgreSQL).
func (h *changeHub) whenListening() <-chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.onListening
}

// settle waits until every change published so far has been delivered.
func (h *changeHub) settle(ctx context.Context) error {
	reached := make(chan struct{})
	h.mu.Lock()
	if !h.started {
		h.mu.Unlock()
		return nil
	}
	h.enqueueLocked(delivery{reached: reached})
	h.mu.Unlock()
	select {
	case <-reached:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (h *changeHub) dispatch() {
	for {
		select {
		case <-h.wake:
		case <-h.s.closing:
			return
		}
		h.mu.Lock()
		queue := h.queue
		h.queue = nil
		h.mu.Unlock()
		for _, d := range queue {
			if d.reached != nil {
				close(d.reached)
				continue
			}
			for _, w := range d.to {
				w.mu.Lock()
				if !w.stopped {
					w.fn(d.c)
				}
				w.mu.Unlock()
			}
		}
	}
}
