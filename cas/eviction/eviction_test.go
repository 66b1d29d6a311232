package eviction

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sealcache/sealcache/cas"
	"github.com/sealcache/sealcache/cas/castest"
	"github.com/sealcache/sealcache/cas/memory"
	"github.com/sealcache/sealcache/cas/pgindex"
	"github.com/sealcache/sealcache/cas/pgindex/pgindextest"
	"github.com/sealcache/sealcache/cas/shared"
	"github.com/sealcache/sealcache/internal/pgtest"
)

// fixture is a shared store over the in-memory fake and a real index, and
// an evictor for it.
type fixture struct {
	t       *testing.T
	url     string
	store   *shared.Store
	objects *memory.Store
	log     *syncBuffer
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	url := pgtest.NewDatabase(t)
	ix, err := pgindex.Open(t.Context(), pgindex.Config{URL: url, MinRetention: time.Hour, FlushInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, url: url, objects: memory.New(), log: &syncBuffer{}}
	f.store = shared.New(f.objects, ix, slog.New(slog.DiscardHandler))
	t.Cleanup(func() { f.store.Close() })
	return f
}

func (f *fixture) evictor(cfg Config) *Evictor {
	cfg.Logger = slog.New(slog.NewTextHandler(f.log, nil))
	cfg.MinRetention = time.Hour
	if cfg.Registerer == nil {
		cfg.Registerer = prometheus.NewRegistry()
	}
	return New(f.store, cfg)
}

// put stores n objects of size bytes in org and returns their keys, in
// the order written.
func (f *fixture) put(org cas.Partition, n int, size int64, seed uint64) []cas.Key {
	var keys []cas.Key
	for i := range n {
		data := castest.Bytes(seed+uint64(i), size)
		k := castest.CASKey(org, data)
		if err := f.store.Put(f.t.Context(), k, size, bytes.NewReader(data)); err != nil {
			f.t.Fatal(err)
		}
		keys = append(keys, k)
	}
	return keys
}

// age pretends d passed since the objects of orgs (all when none) were used.
func (f *fixture) age(d time.Duration, orgs ...string) {
	pgindextest.AgeObjects(f.t, f.url, d, orgs...)
}

func (f *fixture) pass(e *Evictor) Result {
	f.t.Helper()
	res, err := e.Pass(f.t.Context())
	if err != nil {
		f.t.Fatal(err)
	}
	return res
}

// stored reports which keys the object store still holds.
func (f *fixture) stored(keys []cas.Key) []bool {
	held := make([]bool, len(keys))
	for i, k := range keys {
		held[i] = f.objects.Raw(k) != nil
	}
	return held
}

func TestEvictsLeastRecentlyUsedDownToTheBudget(t *testing.T) {
	f := newFixture(t)
	old := f.put("org1", 15, 1000, 0)
	f.age(2 * time.Hour)
	fresh := f.put("org1", 5, 1000, 100)
	reg := prometheus.NewRegistry()
	e := f.evictor(Config{MaxSize: 10_000, Registerer: reg})

	res := f.pass(e)
	if !res.Ran || res.Objects != 10 || res.Bytes != 10_000 || res.OverBudget != 0 {
		t.Fatalf("pass = %+v; want 10 objects of 10000 bytes evicted, none over budget", res)
	}
	for i, held := range f.stored(old) {
		if held != (i >= 10) {
			t.Errorf("old object %d (of 15, oldest first): stored=%v; want the 10 oldest evicted", i, held)
		}
	}
	for i, held := range f.stored(fresh) {
		if !held {
			t.Errorf("fresh object %d was evicted", i)
		}
	}
	if _, used, _ := f.store.Usage(t.Context()); used != 10_000 {
		t.Errorf("after the pass the store holds %d bytes; want 10000", used)
	}
	if got := testutil.ToFloat64(e.evictedBytes); got != 10_000 {
		t.Errorf("sealcache_shared_evicted_bytes_total = %v", got)
	}
	if got := testutil.ToFloat64(e.indexBytes); got != 20_000 {
		t.Errorf("sealcache_shared_used_bytes = %v; want the 20000 read before evicting", got)
	}
	if res := f.pass(e); res.Objects != 0 {
		t.Fatalf("a second pass within budget evicted %+v", res)
	}
}

// The retention wins over the budget: nothing used within it goes, and
// the evictor says why the store stays over.
func TestNeverEvictsInsideTheRetention(t *testing.T) {
	f := newFixture(t)
	keys := f.put("org1", 10, 1000, 0)
	f.age(59 * time.Minute) // one minute short of the retention
	e := f.evictor(Config{MaxSize: 5000})
	res := f.pass(e)
	if res.Objects != 0 || res.OverBudget != 5000 {
		t.Fatalf("pass = %+v; want nothing evicted and 5000 bytes over budget", res)
	}
	for i, held := range f.stored(keys) {
		if !held {
			t.Fatalf("object %d, used 59 minutes ago with a 1h retention, was evicted", i)
		}
	}
	if log := f.log.String(); !strings.Contains(log, "over --shared_max_size") || !strings.Contains(log, "--min_retention") {
		t.Fatalf("no warning about the budget kept exceeded by the retention; log:\n%s", log)
	}
	f.age(2 * time.Minute)
	if res := f.pass(e); res.Objects != 5 || res.OverBudget != 0 {
		t.Fatalf("once the objects left the retention: pass = %+v; want 5 evicted", res)
	}
}

func TestOrgQuotaEvictsOnlyWithinTheOrg(t *testing.T) {
	f := newFixture(t)
	f.put("org1", 6, 1000, 0)
	f.put("org1/kA", 2, 1000, 50) // sealed objects count toward the org
	small := f.put("org2", 2, 1000, 100)
	f.age(2 * time.Hour)
	res := f.pass(f.evictor(Config{OrgQuota: 3000}))
	if res.Objects != 5 {
		t.Fatalf("pass = %+v; want org1's 8000 bytes cut to 3000", res)
	}
	if used, _ := f.store.OrgUsage(t.Context(), "org1"); used != 3000 {
		t.Fatalf("org1 uses %d bytes after the pass; want 3000", used)
	}
	for _, held := range f.stored(small) {
		if !held {
			t.Fatal("org2, within its quota, lost an object")
		}
	}
}

// Only one node evicts at a time.
func TestOneEvictorAtATime(t *testing.T) {
	f := newFixture(t)
	f.put("org1", 4, 1000, 0)
	f.age(2 * time.Hour)
	e := f.evictor(Config{MaxSize: 1000})
	release, ok, err := f.store.TryEvictorLock(t.Context()) // another node's pass
	if err != nil || !ok {
		t.Fatalf("TryEvictorLock = %v, %v", ok, err)
	}
	if res := f.pass(e); res.Ran || res.Objects != 0 {
		t.Fatalf("pass while another node evicts = %+v; want it to stand aside", res)
	}
	release()
	if res := f.pass(e); !res.Ran || res.Objects != 3 {
		t.Fatalf("pass after the other node finished = %+v; want 3 evicted", res)
	}
}

// syncBuffer is a log sink safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
