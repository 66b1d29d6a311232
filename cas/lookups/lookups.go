// Package lookups is the storage behaviour that counts cache hits and
// misses: by kind for Prometheus (sealcache_cache_lookups_total), and per
// org for the org's Overview page. It sits outermost in the stack, so it
// counts what clients see: an action result whose outputs are gone is a
// miss, as it is to Bazel.
//
// Org ids never become metric labels: their number is unbounded.
package lookups

import (
	"context"
	"errors"
	"io"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sealcache/sealcache/cas"
)

// Counter wraps a BlobStore and counts its lookups.
type Counter struct {
	inner   cas.BlobStore
	lookups *prometheus.CounterVec

	mu     sync.Mutex
	perOrg map[string]*orgCounts
}

type orgCounts struct{ hits, misses atomic.Uint64 }

var _ cas.BlobStore = (*Counter)(nil)

// New returns inner with lookup counting, registering its collector with reg.
func New(inner cas.BlobStore, reg prometheus.Registerer) *Counter {
	c := &Counter{
		inner: inner,
		lookups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sealcache_cache_lookups_total",
			Help: "Cache lookups by kind (cas, ac) and result (hit, miss).",
		}, []string{"kind", "result"}),
		perOrg: map[string]*orgCounts{},
	}
	reg.MustRegister(c.lookups)
	return c
}

// Org returns the hits and misses counted for an org since start.
func (c *Counter) Org(orgID string) (hits, misses uint64) {
	o := c.org(orgID)
	return o.hits.Load(), o.misses.Load()
}

func (c *Counter) org(orgID string) *orgCounts {
	c.mu.Lock()
	defer c.mu.Unlock()
	o, ok := c.perOrg[orgID]
	if !ok {
		o = &orgCounts{}
		c.perOrg[orgID] = o
	}
	return o
}

func (c *Counter) count(key cas.Key, hits, misses int) {
	if hits > 0 {
		c.lookups.WithLabelValues(key.Kind.String(), "hit").Add(float64(hits))
	}
	if misses > 0 {
		c.lookups.WithLabelValues(key.Kind.String(), "miss").Add(float64(misses))
	}
	o := c.org(key.Partition.Org())
	o.hits.Add(uint64(hits))
	o.misses.Add(uint64(misses))
}

// Get counts a hit, or a miss for an error wrapping cas.ErrNotFound; other
// errors (key or backend trouble) are neither.
func (c *Counter) Get(ctx context.Context, key cas.Key, offset int64) (io.ReadCloser, int64, error) {
	rc, size, err := c.inner.Get(ctx, key, offset)
	switch {
	case err == nil:
		c.count(key, 1, 0)
	case errors.Is(err, cas.ErrNotFound):
		c.count(key, 0, 1)
	}
	return rc, size, err
}

// FindMissing counts a hit per key found and a miss per key missing.
func (c *Counter) FindMissing(ctx context.Context, keys []cas.Key) ([]cas.Key, error) {
	missing, err := c.inner.FindMissing(ctx, keys)
	if err == nil && len(keys) > 0 {
		c.countBatch(keys, missing)
	}
	return missing, err
}

// countBatch counts per kind and org; a batch is nearly always one org
// and one kind, so the common case makes one pass and two map look-ups.
func (c *Counter) countBatch(keys, missing []cas.Key) {
	type group struct {
		org  string
		kind cas.Kind
	}
	totals := map[group][2]int{}
	for _, k := range keys {
		g := group{k.Partition.Org(), k.Kind}
		t := totals[g]
		t[0]++
		totals[g] = t
	}
	for _, k := range missing {
		g := group{k.Partition.Org(), k.Kind}
		t := totals[g]
		t[1]++
		totals[g] = t
	}
	for g, t := range totals {
		c.count(cas.Key{Partition: cas.Partition(g.org), Kind: g.kind}, t[0]-t[1], t[1])
	}
}

func (c *Counter) Put(ctx context.Context, key cas.Key, size int64, r io.Reader) error {
	return c.inner.Put(ctx, key, size, r)
}

func (c *Counter) Delete(ctx context.Context, key cas.Key) error {
	return c.inner.Delete(ctx, key)
}
