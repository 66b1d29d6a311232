package server

import (
	"bytes"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sealcache/sealcache/cas"
	"github.com/sealcache/sealcache/encryption/kms"
	"github.com/sealcache/sealcache/internal/pgtest"
	"github.com/sealcache/sealcache/internal/s3test"
	"github.com/sealcache/sealcache/orgs"
)

// cluster is nodes sharing one PostgreSQL, one bucket and one local-kms
// directory (so they share the operator key).
type cluster struct {
	nodes  []*testEnv
	s3     *s3test.Server
	bucket string
	kmsDir string
}

const clusterPrefix = "cache"

func startCluster(t *testing.T, n int, configure ...func(*Config)) *cluster {
	t.Helper()
	url := pgtest.NewDatabase(t)
	srv, bucket := s3test.NewBucket(t)
	c := &cluster{s3: srv, bucket: bucket, kmsDir: t.TempDir()}
	for i := range n {
		env := startServer(t, func(cfg *Config) {
			cfg.MetadataURL = url
			cfg.BlobStore = "s3://" + bucket + "/" + clusterPrefix
			cfg.S3Endpoint = srv.Endpoint
			cfg.S3Region = s3test.Region
			cfg.S3PathStyle = true
			cfg.S3AccessKeyID = srv.AccessKeyID
			cfg.S3SecretAccessKey = srv.SecretAccessKey
			cfg.LocalKMSDir = c.kmsDir
			for _, f := range configure {
				f(cfg)
			}
		})
		if i > 0 { // only the first node bootstraps and writes the keys
			env.adminKey, env.operatorKey = c.nodes[0].adminKey, c.nodes[0].operatorKey
			env.conn = env.dial(env.adminKey)
		}
		c.nodes = append(c.nodes, env)
	}
	return c
}

// objects lists the bucket's object names under the org's prefix.
func (c *cluster) objects(t *testing.T, org string) []string {
	t.Helper()
	var names []string
	pages := s3.NewListObjectsV2Paginator(c.s3.Client(), &s3.ListObjectsV2Input{
		Bucket: aws.String(c.bucket), Prefix: aws.String(clusterPrefix + "/" + org + "/")})
	for pages.HasMorePages() {
		page, err := pages.NextPage(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range page.Contents {
			names = append(names, aws.ToString(o.Key))
		}
	}
	return names
}

func missingOn(t *testing.T, env *testEnv, d cas.Digest) (bool, error) {
	t.Helper()
	resp, err := env.cas().FindMissingBlobs(t.Context(), &repb.FindMissingBlobsRequest{
		BlobDigests: []*repb.Digest{{Hash: d.Hash, SizeBytes: d.Size}}})
	if err != nil {
		return false, err
	}
	return len(resp.MissingBlobDigests) == 1, nil
}

// A blob uploaded through one node is found and read through the other,
// whose disk tier fills on the way.
func TestNodesShareOneCache(t *testing.T) {
	c := startCluster(t, 2)
	a, b := c.nodes[0], c.nodes[1]
	ctx := t.Context()
	blob := bytes.Repeat([]byte("shared between nodes "), 5000)
	d := sha(blob)
	if _, err := writeBlob(ctx, a.bs(), "", d, blob); err != nil {
		t.Fatal(err)
	}
	if missing, err := missingOn(t, b, d); err != nil || missing {
		t.Fatalf("FindMissingBlobs through the other node = missing %v, %v; want found", missing, err)
	}
	got, err := readBlob(ctx, b.bs(), readName("", d), 0, 0)
	if err != nil || !bytes.Equal(got, blob) {
		t.Fatalf("read through the other node: %d bytes, %v", len(got), err)
	}
	key := cas.Key{Partition: cas.Partition(a.defaultOrg()), Kind: cas.KindCAS, Digest: d}
	if missing, err := b.s.storage.nodes.local.FindMissing(ctx, []cas.Key{key}); err != nil || len(missing) != 0 {
		t.Fatalf("a complete read did not fill the reading node's disk tier: missing %v, %v", missing, err)
	}
	if names := c.objects(t, a.defaultOrg()); len(names) != 1 {
		t.Fatalf("the bucket holds %v for the org; want the one blob", names)
	}
	code, body := b.httpDo(http.MethodGet, "/readyz", "", nil)
	if code != http.StatusOK {
		t.Fatalf("/readyz = %d %s", code, body)
	}
}

// Disabling CMEK through one node stops the other from serving the org's
// sealed data as soon as the change feed tells it, and no sealed object
// of the org stays in the bucket or on either disk tier.
func TestCMEKChangesReachEveryNode(t *testing.T) {
	c := startCluster(t, 2)
	a, b := c.nodes[0], c.nodes[1]
	ctx := t.Context()
	org := a.defaultOrg()
	if err := kms.CreateLocalKey(c.kmsDir, "customer"); err != nil {
		t.Fatal(err)
	}
	rec, err := a.s.storage.manager.Enable(ctx, org, "test", "local-kms://customer")
	if err != nil {
		t.Fatal(err)
	}
	marker := []byte("SEALED-ON-NODE-B")
	blob := bytes.Repeat(marker, 2000)
	d := sha(blob)
	sealedPrefix := fmt.Sprintf("%s/%s/k%s/", clusterPrefix, org, rec.KeyID)
	waitUntil(t, "node B to hear of the enable", func() string {
		if k, err := b.s.storage.keys.Current(ctx, org); err != nil || k.KeyID != rec.KeyID {
			return fmt.Sprintf("node B's key for the org: %q, %v", k.KeyID, err)
		}
		return ""
	})
	if _, err := writeBlob(ctx, b.bs(), "", d, blob); err != nil {
		t.Fatal(err)
	}
	if names := c.objects(t, org); len(names) != 1 || !strings.HasPrefix(names[0], sealedPrefix) {
		t.Fatalf("the bucket holds %v for the org; want one object under %s", names, sealedPrefix)
	}
	for _, env := range []*testEnv{a, b} {
		if missing, err := missingOn(t, env, d); err != nil || missing {
			t.Fatalf("sealed blob before disabling: missing %v, %v", missing, err)
		}
	}

	start := time.Now()
	if err := a.s.storage.manager.Disable(ctx, org, "test"); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "node B to stop serving the sealed blob", func() string {
		if missing, err := missingOn(t, b, d); err != nil || !missing {
			return fmt.Sprintf("missing %v, %v", missing, err)
		}
		return ""
	})
	t.Logf("node B stopped serving the org's sealed data %v after the disable began on node A", time.Since(start).Round(time.Millisecond))
	if _, err := readBlob(ctx, b.bs(), readName("", d), 0, 0); status.Code(err) != codes.NotFound {
		t.Fatalf("read through node B after disabling = %v; want NOT_FOUND", err)
	}
	waitUntil(t, "every disk tier to drop the sealed copies", func() string {
		for i, env := range []*testEnv{a, b} {
			if n := tierObjects(t, env, cas.Partition(org).Child("k"+rec.KeyID)); n > 0 {
				return fmt.Sprintf("node %d still has %d sealed objects in its disk tier", i, n)
			}
		}
		return ""
	})
	for _, name := range c.objects(t, org) {
		if strings.HasPrefix(name, sealedPrefix) {
			t.Fatalf("the bucket still holds sealed object %s", name)
		}
	}
}

// waitUntil polls cond (which says why it is not yet true, or "") until it
// holds; the bound is a safety net, not a speed check.
func waitUntil(t *testing.T, what string, cond func() string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		why := cond()
		if why == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: %s", what, why)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// tierObjects counts the objects at or below p in the node's disk tier.
func tierObjects(t *testing.T, env *testEnv, p cas.Partition) int {
	t.Helper()
	n := 0
	if err := env.s.storage.nodes.local.WalkPartition(t.Context(), p, func(cas.StoredObject) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}

// An API key revoked through one node stops working on the others as soon
// as the change feed tells them, not after their key cache's TTL.
func TestRevokedKeysStopOnEveryNode(t *testing.T) {
	c := startCluster(t, 2, func(cfg *Config) { cfg.AuthCacheTTL = time.Hour })
	a, b := c.nodes[0], c.nodes[1]
	ctx := t.Context()
	key, secret, err := a.s.orgs.CreateAPIKey(ctx, a.defaultOrg(), orgs.RoleWriter, "ci")
	if err != nil {
		t.Fatal(err)
	}
	client := repb.NewContentAddressableStorageClient(b.dial(secret))
	probe := &repb.FindMissingBlobsRequest{BlobDigests: []*repb.Digest{{Hash: sha([]byte("probe")).Hash, SizeBytes: 5}}}
	if _, err := client.FindMissingBlobs(ctx, probe); err != nil {
		t.Fatalf("the new key on node B: %v", err) // now in B's key cache for an hour
	}
	if err := a.s.orgs.RevokeAPIKey(ctx, a.defaultOrg(), key.ID); err != nil {
		t.Fatal(err)
	}
	revoked := time.Now()
	waitUntil(t, "node B to refuse the revoked key", func() string {
		if _, err := client.FindMissingBlobs(ctx, probe); status.Code(err) != codes.Unauthenticated {
			return fmt.Sprintf("FindMissingBlobs: %v", err)
		}
		return ""
	})
	t.Logf("node B refused the key %v after it was revoked through node A (key cache TTL 1h)", time.Since(revoked).Round(time.Millisecond))
}
