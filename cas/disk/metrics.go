package disk

import "github.com/prometheus/client_golang/prometheus"

// Collector returns a Prometheus collector of the store's figures. Register
// it once per Store.
func (s *Store) Collector() prometheus.Collector { return collector{s} }

var (
	usedBytesDesc = prometheus.NewDesc("sealcache_disk_used_bytes",
		"Bytes of objects in the disk store.", nil, nil)
	objectsDesc = prometheus.NewDesc("sealcache_disk_objects",
		"Objects in the disk store.", nil, nil)
	reservedBytesDesc = prometheus.NewDesc("sealcache_disk_reserved_bytes",
		"Bytes of the disk store's budget held by uploads in flight.", nil, nil)
	maxBytesDesc = prometheus.NewDesc("sealcache_disk_max_bytes",
		"The disk store's size budget, after the clamp to the file system at start-up.", nil, nil)
	evictionsDesc = prometheus.NewDesc("sealcache_disk_evictions_total",
		"Objects evicted from the disk store to make room since start-up.", nil, nil)
)

type collector struct{ s *Store }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{usedBytesDesc, objectsDesc, reservedBytesDesc, maxBytesDesc, evictionsDesc} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	st := c.s.Stats()
	ch <- prometheus.MustNewConstMetric(usedBytesDesc, prometheus.GaugeValue, float64(st.UsedBytes))
	ch <- prometheus.MustNewConstMetric(objectsDesc, prometheus.GaugeValue, float64(st.Objects))
	ch <- prometheus.MustNewConstMetric(reservedBytesDesc, prometheus.GaugeValue, float64(st.ReservedBytes))
	ch <- prometheus.MustNewConstMetric(maxBytesDesc, prometheus.GaugeValue, float64(st.MaxBytes))
	ch <- prometheus.MustNewConstMetric(evictionsDesc, prometheus.CounterValue, float64(st.Evictions))
}
