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
	// byKind holds the four counters of lookups, so that counting does not
	// look labels up on every call.
	byKind [3][2]prometheus.Counter // [kind][0 hit, 1 miss]

	// perOrg maps org ids to *orgCounts. A sync.Map: every lookup of every
	// request counts here, and orgs are added rarely, so reads must not
	// share a lock.
	perOrg sync.Map
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
	}
	for _, k := range []cas.Kind{cas.KindCAS, cas.KindAC} {
		c.byKind[k][0] = c.lookups.WithLabelValues(k.String(), "hit")
		c.byKind[k][1] = c.lookups.WithLabelValues(k.String(), "miss")
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
	if o, ok := c.perOrg.Load(orgID); ok {
		return o.(*orgCounts)
	}
	o, _ := c.perOrg.LoadOrStore(orgID, &orgCounts{})
	return o.(*orgCounts)
}

func (c *Counter) count(key cas.Key, hits, misses int) {
	kind := int(key.Kind)
	if kind >= len(c.byKind) || c.byKind[kind][0] == nil {
		return // not a kind a client can ask for
	}
	if hits > 0 {
		c.byKind[kind][0].Add(float64(hits))
	}
	if misses > 0 {
		c.byKind[kind][1].Add(float64(misses))
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

// countBatch counts per kind and org. A batch is nearly always one org
// and one kind (the server asks for one caller's keys), so that case is
// checked first with one comparison per key and counted at once.
func (c *Counter) countBatch(keys, missing []cas.Key) {
	first := keys[0]
	same := true
	for i := range keys {
		if keys[i].Kind != first.Kind || keys[i].Partition != first.Partition {
			same = false
			break
		}
	}
	if same {
		c.count(first, len(keys)-len(missing), len(missing))
		return
	}
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
