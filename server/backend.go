package server

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sealcache/sealcache/cas"
	"github.com/sealcache/sealcache/cas/disk"
	"github.com/sealcache/sealcache/cas/eviction"
	"github.com/sealcache/sealcache/cas/pgindex"
	"github.com/sealcache/sealcache/cas/s3"
	"github.com/sealcache/sealcache/cas/shared"
	"github.com/sealcache/sealcache/cas/tiered"
)

// The bottom of the storage stack: the one place in server that names
// concrete backends. One node alone keeps everything on its disk store;
// many nodes share one bucket (--blob_store) and one PostgreSQL
// (--metadata_url), and each node's disk store becomes a tier in front of
// the shared store (cas/tiered over cas/shared), with an evictor of which
// one at a time evicts across nodes (cas/eviction).

// openBackend opens the bottom of the stack: the one place that knows
// which backend it is. One node: the disk store. Many nodes: the disk
// store as a tier in front of the shared store (S3 and its PostgreSQL
// index), see scaleout.go.
func (s *Server) openBackend(ctx context.Context) (cas.Backend, *nodes, error) {
	d, err := disk.Open(filepath.Join(s.cfg.DataDir, "cas"), disk.Options{
		MaxSize: s.cfg.MaxSize,
		Logger:  s.log,
		OnEvict: s.evictions.evicted,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("opening the disk store: %w", err)
	}
	s.registry.MustRegister(d.Collector())
	if s.cfg.BlobStore == "" {
		return d, nil, nil
	}
	return s.openTiered(ctx, d)
}

// nodes is what a node of many runs beside the storage stack.
type nodes struct {
	local   cas.Backend // this node's disk tier
	shared  *shared.Store
	evictor *eviction.Evictor
}

// openTiered opens the shared store and puts the disk store in front of
// it. It owns local from here, closing it on failure.
func (s *Server) openTiered(ctx context.Context, local cas.Backend) (cas.Backend, *nodes, error) {
	sh, err := s.openShared(ctx)
	if err != nil {
		local.Close()
		return nil, nil, err
	}
	tier := tiered.New(local, sh, s.log)
	n := &nodes{
		local:  local,
		shared: sh,
		evictor: eviction.New(sh, eviction.Config{
			MaxSize:      s.cfg.SharedMaxSize,
			OrgQuota:     s.cfg.SharedOrgQuota,
			MinRetention: s.cfg.MinRetention,
			Logger:       s.log,
			Registerer:   s.registry,
		}),
	}
	s.registry.MustRegister(newTierCollector(tier, sh.Index()))
	return tier, n, nil
}

// openShared connects to the bucket and the index.
func (s *Server) openShared(ctx context.Context) (*shared.Store, error) {
	cfg, err := s3.ParseURL(s.cfg.BlobStore)
	if err != nil {
		return nil, fmt.Errorf("--blob_store: %w", err)
	}
	cfg.Endpoint = s.cfg.S3Endpoint
	cfg.Region = s.cfg.S3Region
	cfg.PathStyle = s.cfg.S3PathStyle
	cfg.AccessKeyID = s.cfg.S3AccessKeyID
	cfg.SecretAccessKey = s.cfg.S3SecretAccessKey
	objects, err := s3.New(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("opening the shared object store %s: %w", cfg, err)
	}
	index, err := pgindex.Open(ctx, pgindex.Config{URL: s.cfg.MetadataURL, MinRetention: s.cfg.MinRetention, Logger: s.log})
	if err != nil {
		objects.Close()
		return nil, err
	}
	s.log.Info("shared object store", "blob_store", cfg, "shared_max_size", s.cfg.SharedMaxSize,
		"shared_org_quota", s.cfg.SharedOrgQuota, "min_retention", s.cfg.MinRetention.String())
	return shared.New(objects, index, s.log), nil
}

// start runs the evictor until ctx ends.
func (n *nodes) start(ctx context.Context) {
	go n.evictor.Run(ctx)
}

// ping checks the shared store, for /readyz.
func (n *nodes) ping(ctx context.Context) error {
	return n.shared.Ping(ctx)
}

// tierCollector exports the tier's and the index's counters.
type tierCollector struct {
	tier  *tiered.Store
	index *pgindex.Index
	descs map[string]*prometheus.Desc
}

func newTierCollector(tier *tiered.Store, index *pgindex.Index) *tierCollector {
	d := func(name, help string) *prometheus.Desc { return prometheus.NewDesc(name, help, nil, nil) }
	return &tierCollector{tier: tier, index: index, descs: map[string]*prometheus.Desc{
		"hits":    d("sealcache_tier_local_hits_total", "CAS reads served from this node's disk tier."),
		"fills":   d("sealcache_tier_fills_total", "Shared objects copied into this node's disk tier by a complete read."),
		"stale":   d("sealcache_tier_stale_local_total", "Local copies dropped because the shared store no longer has the object."),
		"written": d("sealcache_shared_access_writes_total", "Index rows whose access time this node's batched uses updated."),
		"dropped": d("sealcache_shared_access_dropped_total", "Uses not recorded because too many were waiting for the next batch."),
	}}
}

func (c *tierCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}

func (c *tierCollector) Collect(ch chan<- prometheus.Metric) {
	st, ts := c.tier.Stats(), c.index.TouchStats()
	for name, v := range map[string]uint64{"hits": st.LocalHits, "fills": st.Fills, "stale": st.StaleLocal, "written": ts.Written, "dropped": ts.Dropped} {
		ch <- prometheus.MustNewConstMetric(c.descs[name], prometheus.CounterValue, float64(v))
	}
}
