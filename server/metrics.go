package server

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics holds the request and byte counters. Lookup counts (hits and
// misses) come from the storage stack (cas/lookups).
type metrics struct {
	requests *prometheus.CounterVec
	bytes    *prometheus.CounterVec
}

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
	}
	reg.MustRegister(m.requests, m.bytes)
	return m
}

func (m *metrics) bytesIn(protocol string, n int64) {
	m.bytes.WithLabelValues(protocol, "in").Add(float64(n))
}

func (m *metrics) bytesOut(protocol string, n int64) {
	m.bytes.WithLabelValues(protocol, "out").Add(float64(n))
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
