package server

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sealcache/sealcache/cas"
)

// metrics holds the Prometheus collectors and the per-org hit counts shown
// on the org settings page. Org ids never become metric labels: their
// number is unbounded.
type metrics struct {
	requests *prometheus.CounterVec
	bytes    *prometheus.CounterVec
	lookups  *prometheus.CounterVec

	mu     sync.Mutex
	perOrg map[string]*orgCounters
}

type orgCounters struct{ hits, misses atomic.Uint64 }

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sealcache_requests_total",
			Help: "Requests by protocol, service, method and result code.",
		}, []string{"protocol", "service", "method", "code"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sealcache_bytes_total",
			Help: "Blob bytes received from (in) and sent to (out) clients.",
		}, []string{"protocol", "direction"}),
		lookups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sealcache_cache_lookups_total",
			Help: "Cache lookups by kind (cas, ac) and result (hit, miss).",
		}, []string{"kind", "result"}),
		perOrg: make(map[string]*orgCounters),
	}
	reg.MustRegister(m.requests, m.bytes, m.lookups)
	return m
}

func (m *metrics) bytesIn(protocol string, n int64) {
	m.bytes.WithLabelValues(protocol, "in").Add(float64(n))
}

func (m *metrics) bytesOut(protocol string, n int64) {
	m.bytes.WithLabelValues(protocol, "out").Add(float64(n))
}

func (m *metrics) countLookups(ctx context.Context, kind cas.Kind, hits, misses int) {
	if hits > 0 {
		m.lookups.WithLabelValues(kind.String(), "hit").Add(float64(hits))
	}
	if misses > 0 {
		m.lookups.WithLabelValues(kind.String(), "miss").Add(float64(misses))
	}
	c := m.org(principalFrom(ctx).OrgID)
	c.hits.Add(uint64(hits))
	c.misses.Add(uint64(misses))
}

func (m *metrics) org(orgID string) *orgCounters {
	m.mu.Lock()
	defer m.mu.Unlock()
	c, ok := m.perOrg[orgID]
	if !ok {
		c = &orgCounters{}
		m.perOrg[orgID] = c
	}
	return c
}

// OrgLookups returns the hits and misses counted for an org since start.
func (m *metrics) OrgLookups(orgID string) (hits, misses uint64) {
	c := m.org(orgID)
	return c.hits.Load(), c.misses.Load()
}

// storeCollector exports the disk store's own figures at scrape time.
type storeCollector struct {
	used, objects, evictions *prometheus.Desc
	stats                    func() (used, objects int64, evictions uint64)
}

func newStoreCollector(stats func() (int64, int64, uint64)) *storeCollector {
	return &storeCollector{
		used:      prometheus.NewDesc("sealcache_disk_used_bytes", "Bytes stored in the disk store.", nil, nil),
		objects:   prometheus.NewDesc("sealcache_disk_objects", "Objects stored in the disk store.", nil, nil),
		evictions: prometheus.NewDesc("sealcache_disk_evictions_total", "Objects evicted to stay under --max_size.", nil, nil),
		stats:     stats,
	}
}

func (c *storeCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.used
	ch <- c.objects
	ch <- c.evictions
}

func (c *storeCollector) Collect(ch chan<- prometheus.Metric) {
	used, objects, evictions := c.stats()
	ch <- prometheus.MustNewConstMetric(c.used, prometheus.GaugeValue, float64(used))
	ch <- prometheus.MustNewConstMetric(c.objects, prometheus.GaugeValue, float64(objects))
	ch <- prometheus.MustNewConstMetric(c.evictions, prometheus.CounterValue, float64(evictions))
}
