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
