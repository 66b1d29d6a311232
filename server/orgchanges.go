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
	"github.com/sealcache/sealcache/orgs"
)

// With a metadata store shared by many nodes, a change made through one
// node must reach the others. The store's change feed (orgs.DB.Watch,
// LISTEN/NOTIFY) delivers every change to every node within milliseconds,
// and a Resync within 5 s of a lost connection. orgChanges applies them to
// this node's storage:
//
//   - key records changed (CMEK enabled, disabled, re-wrapped) or org
//     deleted: this node's cached key and key record of the org go at once,
//     in the feed's callback (KeyProvider.Invalidate), so the node stops
//     serving the org's data under the old state as soon as it hears;
//   - then, when the org's key id changed, a worker deletes the org's
//     objects that the new state cannot use, while no upload of the org
//     can publish on this node (the fence): after an enable, the plain
//     objects and those sealed under older keys; after a disable, the
//     sealed ones. It deletes them from this node's disk tier and from the
//     shared store. The node that made the change deleted the shared
//     objects already, but an upload that another node routed plain before
//     it heard of an enable may have landed after that; each node deleting
//     after its own fence catches those. Objects under the new state are
//     left alone, so uploads that other nodes sealed meanwhile survive.
//     Both walks are short: the node that made the change deleted the
//     org's objects a moment before.
//   - org deleted: the worker deletes every object of the org, likewise.
//   - Resync: the key records are compared with what this node last saw,
//     and the differences applied as above.
//
// Only a change of the key id deletes objects: re-wrapping every few hours
// changes the records but must leave the org's sealed data alone.
// Revoked API keys and deleted orgs also reach the Authenticator, which
// watches the same feed itself.

// changeTimeout bounds the deletes one change causes.
const changeTimeout = 10 * time.Minute

// keyRecordLister is the part of the metadata store orgChanges reads.
type keyRecordLister interface {
	ListKeyRecords(ctx context.Context) ([]encryption.KeyRecord, error)
}

// objectStore is a store that holds this node's copies of objects.
type objectStore interface {
	cas.BlobStore
	cas.PartitionStore
}

type orgChanges struct {
	log     *slog.Logger
	records keyRecordLister
	keys    interface{ Invalidate(orgID string) }
	fence   encryption.Fencer
	// stores hold the objects: this node's disk tier and the shared store,
	// or the disk store alone.
	stores []objectStore

	known map[string]string // org id -> key id this node last saw; absent: CMEK off (worker only)

	mu      sync.Mutex
	queue   []orgs.Change
	pending chan struct{} // capacity 1: the queue has something
}

func newOrgChanges(log *slog.Logger, records keyRecordLister, keys interface{ Invalidate(string) }, fence encryption.Fencer, stores ...objectStore) *orgChanges {
	return &orgChanges{log: log, records: records, keys: keys, fence: fence, stores: stores, pending: make(chan struct{}, 1)}
}

// load reads every org's current key id as the starting point.
func (c *orgChanges) load(ctx context.Context) error {
	recs, err := c.records.ListKeyRecords(ctx)
	if err != nil {
		return fmt.Errorf("reading the key records: %w", err)
	}
	c.known = map[string]string{}
	for _, r := range recs {
		c.known[r.OrgID] = r.KeyID
	}
	return nil
}

// notify is the change feed's callback: it must return quickly. It drops
// the org's cached key at once and queues the rest for the worker.
func (c *orgChanges) notify(ch orgs.Change) {
	switch ch.Kind {
	case orgs.KeyRecordsChanged, orgs.OrgDeleted:
		c.keys.Invalidate(ch.OrgID)
	case orgs.Resync:
	default:
		return
	}
	c.mu.Lock()
	c.queue = append(c.queue, ch)
	c.mu.Unlock()
	select {
	case c.pending <- struct{}{}:
	default:
	}
}

// run applies queued changes, in order, until ctx ends.
func (c *orgChanges) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.pending:
		}
		c.mu.Lock()
		queue := c.queue
		c.queue = nil
		c.mu.Unlock()
		for _, ch := range queue {
			if err := c.apply(ctx, ch); err != nil && ctx.Err() == nil {
				c.log.Warn("applying a change made through another node failed", "change", ch.Kind.String(), "org", ch.OrgID, "err", err)
			}
		}
	}
}

// apply applies one change.
func (c *orgChanges) apply(ctx context.Context, ch orgs.Change) error {
	switch ch.Kind {
	case orgs.KeyRecordsChanged:
		return c.keyIDIs(ctx, ch.OrgID, ch.KeyID)
	case orgs.OrgDeleted:
		delete(c.known, ch.OrgID)
		c.log.Info("an org was deleted; deleting its objects", "org", ch.OrgID)
		return c.fenced(ctx, ch.OrgID, "org deleted", func(ctx context.Context, org cas.Partition, s objectStore) error {
			_, err := s.DeletePartition(ctx, org)
			return err
		})
	case orgs.Resync:
		return c.reconcile(ctx)
	}
	return nil
}

// keyIDIs records the org's current key id ("" for CMEK off) and deletes
// the org's objects when it differs from the one this node saw last.
func (c *orgChanges) keyIDIs(ctx context.Context, orgID, keyID string) error {
	prev := c.known[orgID]
	if keyID == "" {
		delete(c.known, orgID)
	} else {
		c.known[orgID] = keyID
	}
	if prev == keyID {
		return nil
	}
	c.keys.Invalidate(orgID)
	c.log.Info("an org's encryption changed; deleting its objects the new state cannot use", "org", orgID, "key_id", keyID, "previous_key_id", prev)
	return c.fenced(ctx, orgID, "encryption changed", func(ctx context.Context, org cas.Partition, s objectStore) error {
		keep := org
		if keyID != "" {
			keep = org.Child("k" + keyID)
		}
		var stale []cas.Key
		err := s.WalkPartition(ctx, org, func(o cas.StoredObject) error {
			if o.Key.Partition != keep {
				stale = append(stale, o.Key)
			}
			return nil
		})
		for _, k := range stale {
			err = errors.Join(err, s.Delete(ctx, k))
		}
		return err
	})
}

// fenced runs fn on every store while no upload of the org can publish on
// this node, and logs when it is done (why says what changed).
func (c *orgChanges) fenced(ctx context.Context, orgID, why string, fn func(context.Context, cas.Partition, objectStore) error) error {
	org, err := cas.OrgPartition(orgID)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), changeTimeout)
	defer cancel()
	err = c.fence.Fence(ctx, orgID, func(ctx context.Context) error {
		var errs []error
		for _, s := range c.stores {
			errs = append(errs, fn(ctx, org, s))
		}
		return errors.Join(errs...)
	})
	if err == nil {
		c.log.Info("deleted an org's objects on this node", "org", orgID, "why", why)
	}
	return err
}

// reconcile compares every org's key id with what this node saw last and
// applies the differences: changes whose notification was lost.
func (c *orgChanges) reconcile(ctx context.Context) error {
	recs, err := c.records.ListKeyRecords(ctx)
	if err != nil {
		return fmt.Errorf("reading the key records: %w", err)
	}
	current := map[string]string{}
	for _, r := range recs {
		current[r.OrgID] = r.KeyID
	}
	orgIDs := map[string]bool{}
	for org := range c.known {
		orgIDs[org] = true
	}
	for org := range current {
		orgIDs[org] = true
	}
	var errs []error
	for org := range orgIDs {
		if err := c.keyIDIs(ctx, org, current[org]); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
