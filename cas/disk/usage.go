package disk

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"

	"github.com/cockroachdb/pebble/v2"

	"github.com/sealcache/sealcache/cas"
)

// counts is what the store holds in one partition (or in all of them).
type counts struct {
	bytes   int64
	objects int64
}

func (c counts) add(d counts) counts { return counts{c.bytes + d.bytes, c.objects + d.objects} }

// Usage counters are persisted per partition under 'u' keys as Pebble merge
// operands: every batch that adds or removes an object also merges the
// change into its partition's counter. The counters are therefore exactly as
// durable as the objects, no write has to read them first, and concurrent
// batches add up in any order. Open reads them back (one record per
// partition, not per object) to know the store's size without a scan.
const usageCountsLen = 16

func encodeCounts(c counts) []byte {
	b := make([]byte, usageCountsLen)
	binary.BigEndian.PutUint64(b[:8], uint64(c.bytes))
	binary.BigEndian.PutUint64(b[8:], uint64(c.objects))
	return b
}

func decodeCounts(b []byte) (counts, error) {
	if len(b) != usageCountsLen {
		return counts{}, fmt.Errorf("usage record of %d bytes; want %d", len(b), usageCountsLen)
	}
	return counts{int64(binary.BigEndian.Uint64(b[:8])), int64(binary.BigEndian.Uint64(b[8:]))}, nil
}

// usageMergerName is stored by Pebble; a database written with another merge
// operator refuses to open, which keeps counters from being misread.
const usageMergerName = "sealcache.disk.usage.v1"

var usageMerger = &pebble.Merger{
	Name: usageMergerName,
	Merge: func(key, value []byte) (pebble.ValueMerger, error) {
		c, err := decodeCounts(value)
		if err != nil {
			return nil, err
		}
		return &countsMerger{sum: c}, nil
	},
}

// countsMerger adds up usage operands; addition needs no order.
type countsMerger struct{ sum counts }

func (m *countsMerger) MergeNewer(value []byte) error { return m.mergeOne(value) }
func (m *countsMerger) MergeOlder(value []byte) error { return m.mergeOne(value) }

func (m *countsMerger) mergeOne(value []byte) error {
	c, err := decodeCounts(value)
	if err != nil {
		return err
	}
	m.sum = m.sum.add(c)
	return nil
}

func (m *countsMerger) Finish(includesBase bool) ([]byte, io.Closer, error) {
	return encodeCounts(m.sum), nil, nil
}

// usage is the in-memory copy of the persisted counters plus the bytes
// reserved by uploads in flight. It is updated after each batch is applied.
type usage struct {
	byPartition map[cas.Partition]counts
	byOrg       map[string]int64
	total       counts
	reserved    int64 // bytes promised to Puts that have not finished
	// peak is the highest total.bytes + reserved seen since Open; tests
	// check it never passes the budget.
	peak int64
}

func newUsage() *usage {
	return &usage{byPartition: map[cas.Partition]counts{}, byOrg: map[string]int64{}}
}

func (u *usage) apply(p cas.Partition, d counts) {
	c := u.byPartition[p].add(d)
	if c == (counts{}) {
		delete(u.byPartition, p)
	} else {
		u.byPartition[p] = c
	}
	org := p.Org()
	if n := u.byOrg[org] + d.bytes; n == 0 {
		delete(u.byOrg, org)
	} else {
		u.byOrg[org] = n
	}
	u.total = u.total.add(d)
	u.notePeak()
}

func (u *usage) notePeak() { u.peak = max(u.peak, u.total.bytes+u.reserved) }

// loadUsage reads every partition's counters.
func loadUsage(db *pebble.DB) (*usage, error) {
	u := newUsage()
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: []byte{recordUsage}, UpperBound: []byte{recordUsage + 1}})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	for it.First(); it.Valid(); it.Next() {
		p, _, err := splitKey(it.Key())
		if err != nil {
			return nil, fmt.Errorf("reading usage counters: %w", err)
		}
		v, err := it.ValueAndErr()
		if err != nil {
			return nil, fmt.Errorf("reading usage counters of %s: %w", p, err)
		}
		c, err := decodeCounts(v)
		if err != nil {
			return nil, fmt.Errorf("reading usage counters of %s: %w", p, err)
		}
		u.apply(p, c)
	}
	return u, it.Error()
}

// mergeUsage adds a change to a partition's persisted counter in batch b.
func mergeUsage(b *pebble.Batch, p cas.Partition, d counts) error {
	if d == (counts{}) {
		return nil
	}
	return b.Merge(usageKey(p), encodeCounts(d), nil)
}

// applyUsage records a committed change in memory.
func (s *Store) applyUsage(p cas.Partition, d counts) {
	s.usageMu.Lock()
	s.usage.apply(p, d)
	s.usageMu.Unlock()
}

// OrgUsage returns the bytes stored for an org (the first partition segment),
// plain and sealed partitions together, from the counters: no scan.
func (s *Store) OrgUsage(ctx context.Context, orgID string) (int64, error) {
	if !cas.ValidSegment(orgID) {
		return 0, fmt.Errorf("org id %q is not a valid partition segment", orgID)
	}
	if s.closed.Load() {
		return 0, errClosed
	}
	s.usageMu.Lock()
	defer s.usageMu.Unlock()
	return s.usage.byOrg[orgID], nil
}

// Stats is a snapshot of the store's figures.
type Stats struct {
	UsedBytes     int64  // bytes of all stored objects
	Objects       int64  // number of stored objects
	ReservedBytes int64  // bytes promised to uploads in flight
	MaxBytes      int64  // the size budget in force (after the clamp at Open)
	Evictions     uint64 // objects evicted to make room since Open
}

// Stats returns the current figures.
func (s *Store) Stats() Stats {
	s.usageMu.Lock()
	defer s.usageMu.Unlock()
	return Stats{
		UsedBytes:     s.usage.total.bytes,
		Objects:       s.usage.total.objects,
		ReservedBytes: s.usage.reserved,
		MaxBytes:      s.maxSize,
		Evictions:     s.evictions.Load(),
	}
}
