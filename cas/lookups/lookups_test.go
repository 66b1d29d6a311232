package lookups

import (
	"bytes"
	"context"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sealcache/sealcache/cas"
	"github.com/sealcache/sealcache/cas/memory"
)

func TestHitsAndMissesByKindAndOrg(t *testing.T) {
	ctx := context.Background()
	reg := prometheus.NewRegistry()
	c := New(memory.New(), reg)
	blob := func(org cas.Partition, s string) cas.Key {
		return cas.Key{Partition: org, Kind: cas.KindCAS, Digest: cas.DigestOf(repb.DigestFunction_SHA256, []byte(s))}
	}
	stored := blob("acme", "stored")
	c.Put(ctx, stored, 6, bytes.NewReader([]byte("stored")))

	c.FindMissing(ctx, []cas.Key{stored, blob("acme", "a"), blob("acme", "b"), blob("other", "c")})
	if rc, _, err := c.Get(ctx, stored, 0); err == nil {
		rc.Close()
	}
	ac := cas.Key{Partition: "acme", Kind: cas.KindAC, Digest: stored.Digest}
	c.Get(ctx, ac, 0)

	if hits, misses := c.Org("acme"); hits != 2 || misses != 3 {
		t.Fatalf("acme: %d hits, %d misses; want 2 and 3", hits, misses)
	}
	if hits, misses := c.Org("other"); hits != 0 || misses != 1 {
		t.Fatalf("other: %d hits, %d misses; want 0 and 1", hits, misses)
	}
	for _, want := range []struct {
		kind, result string
		n            float64
	}{{"cas", "hit", 2}, {"cas", "miss", 3}, {"ac", "miss", 1}} {
		if got := testutil.ToFloat64(c.lookups.WithLabelValues(want.kind, want.result)); got != want.n {
			t.Fatalf("sealcache_cache_lookups_total{kind=%s,result=%s} = %v; want %v", want.kind, want.result, got, want.n)
		}
	}
}
