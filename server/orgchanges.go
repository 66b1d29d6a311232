package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/sealcache/sealcache/cas"
	"github.com/sealcache/sealcache/encryption"
)

// With a metadata store shared by many nodes, a change made through one
// node must reach the others: CMEK turned on or off, an org deleted, an
// API key revoked. orgChanges applies such a change on this node:
//
//   - key records changed or org deleted: this node's cached key and key
//     record of the org go at once (KeyProvider.Invalidate), so it stops
//     serving the org's data under the old state; then, while no upload of
//     the org can publish on this node (the fence), the org's objects are
//     deleted from this node's disk tier and from the shared store. The
//     node that made the change deleted the shared objects already, but an
//     upload that another node routed plain before it heard of an enable
//     may have landed after that; each node deleting after its own fence
//     catches those. Deleting again is idempotent and cheap.
//   - an API key revoked, an org deleted: this node's cache of checked keys
//     is dropped.
//
// Changes arrive as notifications from the metadata store (within about a
// second). A notification can be lost (a dropped connection), so a
// reconciliation compares the key records with what this node last saw
// every reconcileInterval as well: the 5 s bound of the key record cache.
//
// Only a change of an org's key id deletes objects. Key records change for
// other reasons too (re-wrapping every few hours, KMS health), which must
// leave the org's sealed data alone.

// reconcileInterval is how often key records are compared when no
// notification came.
const reconcileInterval = 5 * time.Second

// changeTimeout bounds the deletes one change causes.
const changeTimeout = 10 * time.Minute

// keyRecordLister is the part of the metadata store orgChanges reads.
type keyRecordLister interface {
	CurrentKey(ctx context.Context, orgID string) (encryption.KeyRecord, error)
	ListKeyRecords(ctx context.Context) ([]encryption.KeyRecord, error)
}

type orgChanges struct {
	log     *slog.Logger
	records keyRecordLister
	keys    interface{ Invalidate(orgID string) }
	auth    interface{ InvalidateAll() }
	fence   encryption.Fencer
	objects cas.PartitionStore // the whole backend: disk tier and shared store

	mu    sync.Mutex
	known map[string]string // org id -> key id this node last saw; absent: CMEK off
	// notified counts changes applied from notifications: a reconciliation
	// that read the key records before one of them applies nothing, since
	// what it read may be older than what the notification brought.
	notified uint64
}

// load reads every org's current key id as the starting point.
func (c *orgChanges) load(ctx context.Context) error {
	recs, err := c.records.ListKeyRecords(ctx)
	if err != nil {
		return fmt.Errorf("reading the key records: %w", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.known = map[string]string{}
	for _, r := range recs {
		c.known[r.OrgID] = r.KeyID
	}
	return nil
}

// keysChanged handles a change of the org's key records.
func (c *orgChanges) keysChanged(ctx context.Context, orgID string) error {
	c.keys.Invalidate(orgID)
	rec, err := c.records.CurrentKey(ctx, orgID)
	keyID := rec.KeyID
	switch {
	case errors.Is(err, encryption.ErrNoKeyRecord):
		keyID = ""
	case err != nil:
		return fmt.Errorf("reading the key record of org %s: %w", orgID, err)
	}
	return c.apply(ctx, orgID, keyID, nil)
}

// apply records the org's key id and deletes the org's objects when it
// differs from the one this node saw last. A reconciliation passes the
// notification count it read the key records at (since); a notification
// passes nil.
func (c *orgChanges) apply(ctx context.Context, orgID, keyID string, since *uint64) error {
	c.mu.Lock()
	if since == nil {
		c.notified++
	} else if *since != c.notified {
		c.mu.Unlock()
		return nil // the next reconciliation reads newer records
	}
	prev := c.known[orgID]
	if keyID == "" {
		delete(c.known, orgID)
	} else {
		c.known[orgID] = keyID
	}
	c.mu.Unlock()
	if prev == keyID {
		return nil
	}
	c.keys.Invalidate(orgID)
	c.log.Info("an org's encryption changed on another node; deleting its objects here", "org", orgID, "key_id", keyID, "previous_key_id", prev)
	return c.deleteObjects(ctx, orgID)
}

// orgDeleted handles the deletion of an org.
func (c *orgChanges) orgDeleted(ctx context.Context, orgID string) error {
	c.keys.Invalidate(orgID)
	c.auth.InvalidateAll()
	c.mu.Lock()
	delete(c.known, orgID)
	c.notified++
	c.mu.Unlock()
	c.log.Info("an org was deleted; deleting its objects here", "org", orgID)
	return c.deleteObjects(ctx, orgID)
}

// apiKeyRevoked handles a revoked API key.
func (c *orgChanges) apiKeyRevoked() { c.auth.InvalidateAll() }

func (c *orgChanges) deleteObjects(ctx context.Context, orgID string) error {
	p, err := cas.OrgPartition(orgID)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), changeTimeout)
	defer cancel()
	return c.fence.Fence(ctx, orgID, func(ctx context.Context) error {
		_, err := c.objects.DeletePartition(ctx, p)
		return err
	})
}

// reconcile compares every org's key id with what this node saw last and
// applies the differences: changes whose notification was lost.
func (c *orgChanges) reconcile(ctx context.Context) error {
	c.mu.Lock()
	since := c.notified
	c.mu.Unlock()
	recs, err := c.records.ListKeyRecords(ctx)
	if err != nil {
		return fmt.Errorf("reading the key records: %w", err)
	}
	current := map[string]string{}
	for _, r := range recs {
		current[r.OrgID] = r.KeyID
	}
	c.mu.Lock()
	orgs := map[string]bool{}
	for org := range c.known {
		orgs[org] = true
	}
	c.mu.Unlock()
	for org := range current {
		orgs[org] = true
	}
	var errs []error
	for org := range orgs {
		if err := c.apply(ctx, org, current[org], &since); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// runReconcile reconciles every reconcileInterval until ctx ends.
func (c *orgChanges) runReconcile(ctx context.Context) {
	tick := time.NewTicker(reconcileInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if err := c.reconcile(ctx); err != nil && ctx.Err() == nil {
			c.log.Warn("comparing key records with this node's view failed; trying again", "err", err)
		}
	}
}
