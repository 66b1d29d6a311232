// Package eviction keeps the shared store (cas/shared) within its budget:
// a global size (--shared_max_size) and, optionally, a quota per org
// (--shared_org_quota). Every node runs an Evictor; one at a time evicts,
// by a PostgreSQL advisory lock, and a node that dies releases it.
//
// Least recently used objects go first, but never an object used within
// the minimum retention (--min_retention): an object a client read, found,
// or was served an action result naming it, stays at least that long, so
// Builds without the Bytes can fetch outputs it was told exist. When
// everything over the budget is inside the retention, the store stays over
// budget and a warning says so: the retention wins over the budget.
package eviction

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sealcache/sealcache/cas/pgindex"
)

// Defaults of Config.
const (
	DefaultInterval  = 2 * time.Second
	DefaultBatchSize = 1000
	// recoverEvery is how often the lock holder finishes deletes whose
	// node died and forgets old tombstones.
	recoverEvery = time.Minute
	// warnEvery spaces the warnings about a budget the retention keeps
	// exceeded.
	warnEvery = time.Minute
)

// Target is the store being kept within budget (*shared.Store).
type Target interface {
	TryEvictorLock(ctx context.Context) (release func(), ok bool, err error)
	Usage(ctx context.Context) (objects, bytes int64, err error)
	OrgsOver(ctx context.Context, quota int64) ([]pgindex.OrgBytes, error)
	// Evict deletes up to limit least recently used objects outside the
	// retention (of org only, when not "") and returns how many objects
	// and bytes went; 0 when none is old enough.
	Evict(ctx context.Context, org string, limit int) (int, int64, error)
	Recover(ctx context.Context) (int, error)
}

// Config configures New.
type Config struct {
	// MaxSize is the budget of the whole store in bytes; 0 means none.
	MaxSize int64
	// OrgQuota is the budget of each org in bytes; 0 means none.
	OrgQuota int64
	// MinRetention is only named in messages: the Target enforces it.
	MinRetention time.Duration
	// Interval is the pause between passes. Default DefaultInterval.
	Interval time.Duration
	// BatchSize is the most objects one eviction statement deletes.
	// Default DefaultBatchSize.
	BatchSize int
	Logger    *slog.Logger
	// Registerer receives the metrics; nil registers none.
	Registerer prometheus.Registerer
}

// Evictor runs passes of eviction.
type Evictor struct {
	target Target
	cfg    Config

	evictedObjects prometheus.Counter
	evictedBytes   prometheus.Counter
	indexObjects   prometheus.Gauge
	indexBytes     prometheus.Gauge
	overBudget     prometheus.Gauge

	lastRecover    atomic.Int64 // unix nanoseconds
	lastWarnOrg    atomic.Int64
	lastWarnGlobal atomic.Int64
}

// New returns an evictor for target.
func New(target Target, cfg Config) *Evictor {
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = DefaultBatchSize
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	e := &Evictor{
		target: target,
		cfg:    cfg,
		evictedObjects: prometheus.NewCounter(prometheus.CounterOpts{Name: "sealcache_shared_evicted_objects_total",
			Help: "Objects this node evicted from the shared store."}),
		evictedBytes: prometheus.NewCounter(prometheus.CounterOpts{Name: "sealcache_shared_evicted_bytes_total",
			Help: "Stored bytes this node evicted from the shared store."}),
		indexObjects: prometheus.NewGauge(prometheus.GaugeOpts{Name: "sealcache_shared_objects",
			Help: "Objects in the shared store, from its index."}),
		indexBytes: prometheus.NewGauge(prometheus.GaugeOpts{Name: "sealcache_shared_used_bytes",
			Help: "Stored bytes in the shared store, from its index."}),
		overBudget: prometheus.NewGauge(prometheus.GaugeOpts{Name: "sealcache_shared_over_budget_bytes",
			Help: "Bytes above --shared_max_size that the minimum retention kept at the last pass."}),
	}
	if cfg.Registerer != nil {
		cfg.Registerer.MustRegister(e.evictedObjects, e.evictedBytes, e.indexObjects, e.indexBytes, e.overBudget)
	}
	return e
}

// Run runs a pass every Interval until ctx ends. Failures are logged and
// the next pass tries again.
func (e *Evictor) Run(ctx context.Context) {
	tick := time.NewTicker(e.cfg.Interval)
	defer tick.Stop()
	for {
		if _, err := e.Pass(ctx); err != nil && ctx.Err() == nil {
			e.cfg.Logger.Warn("evicting from the shared store failed; the next pass tries again", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// Result is what one pass did.
type Result struct {
	Ran            bool  // this node held the lock and evicted
	Objects, Bytes int64 // evicted
	// OverBudget is how many bytes above MaxSize the retention kept.
	OverBudget int64
}

// Pass reads the usage and, when a budget is exceeded and no other node is
// evicting, evicts until every budget holds or nothing left is outside the
// retention.
func (e *Evictor) Pass(ctx context.Context) (Result, error) {
	var res Result
	objects, bytes, err := e.target.Usage(ctx)
	if err != nil {
		return res, err
	}
	e.indexObjects.Set(float64(objects))
	e.indexBytes.Set(float64(bytes))
	var orgs []pgindex.OrgBytes
	if e.cfg.OrgQuota > 0 {
		if orgs, err = e.target.OrgsOver(ctx, e.cfg.OrgQuota); err != nil {
			return res, err
		}
	}
	recoverDue := time.Since(time.Unix(0, e.lastRecover.Load())) >= recoverEvery
	overGlobal := e.cfg.MaxSize > 0 && bytes > e.cfg.MaxSize
	if !overGlobal && len(orgs) == 0 && !recoverDue {
		e.overBudget.Set(0)
		return res, nil
	}
	release, ok, err := e.target.TryEvictorLock(ctx)
	if err != nil || !ok {
		return res, err
	}
	defer release()
	res.Ran = true
	if recoverDue {
		e.lastRecover.Store(time.Now().UnixNano())
		if n, err := e.target.Recover(ctx); err != nil {
			e.cfg.Logger.Warn("finishing interrupted deletes in the shared store failed", "err", err)
		} else if n > 0 {
			e.cfg.Logger.Info("finished deletes in the shared store that a node left unfinished", "deletes", n)
		}
	}
	for _, o := range orgs {
		left, err := e.evictDown(ctx, o.Org, o.Bytes, e.cfg.OrgQuota, objects, bytes, &res)
		if err != nil {
			return res, err
		}
		if left > 0 {
			e.warn(&e.lastWarnOrg, "an org is over its --shared_org_quota, but every object of it above the quota was used within --min_retention; it stays over until they age out",
				"org", o.Org, "over_bytes", left, "quota_bytes", e.cfg.OrgQuota)
		}
	}
	if e.cfg.MaxSize > 0 {
		// Re-read: org evictions freed some.
		if objects, bytes, err = e.target.Usage(ctx); err != nil {
			return res, err
		}
		left, err := e.evictDown(ctx, "", bytes, e.cfg.MaxSize, objects, bytes, &res)
		if err != nil {
			return res, err
		}
		res.OverBudget = left
		e.overBudget.Set(float64(left))
		if left > 0 {
			e.warn(&e.lastWarnGlobal, "the shared store is over --shared_max_size, but every object above the budget was used within --min_retention; it stays over until they age out (raise the budget or lower the retention)",
				"over_bytes", left, "max_size_bytes", e.cfg.MaxSize, "min_retention", e.cfg.MinRetention.String())
		}
	}
	if res.Objects > 0 {
		e.cfg.Logger.Info("evicted from the shared store", "objects", res.Objects, "bytes", res.Bytes)
	}
	return res, nil
}

// evictDown evicts (of org, or of everything for "") from used bytes until
// they are within budget, and returns how many bytes are still over. The
// batch size follows the average object size, so a pass does not
// overshoot the budget by a whole batch.
func (e *Evictor) evictDown(ctx context.Context, org string, used, budget, objects, totalBytes int64, res *Result) (int64, error) {
	avg := int64(1)
	if objects > 0 {
		avg = max(totalBytes/objects, 1)
	}
	for used > budget {
		limit := int(min(int64(e.cfg.BatchSize), (used-budget+avg-1)/avg))
		n, freed, err := e.target.Evict(ctx, org, limit)
		if err != nil {
			return used - budget, fmt.Errorf("evicting%s: %w", orgSuffix(org), err)
		}
		if n == 0 {
			return used - budget, nil
		}
		used -= freed
		res.Objects += int64(n)
		res.Bytes += freed
		e.evictedObjects.Add(float64(n))
		e.evictedBytes.Add(float64(freed))
	}
	return 0, nil
}

func orgSuffix(org string) string {
	if org == "" {
		return ""
	}
	return " org " + org
}

// warn logs msg at most once per warnEvery (last holds when it last did).
func (e *Evictor) warn(last *atomic.Int64, msg string, args ...any) {
	now := time.Now().UnixNano()
	prev := last.Load()
	if prev != 0 && now-prev < int64(warnEvery) || !last.CompareAndSwap(prev, now) {
		return
	}
	e.cfg.Logger.Warn(msg, args...)
}
