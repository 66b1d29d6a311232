package e2etest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/sealcache/sealcache/cas"
	"github.com/sealcache/sealcache/cas/disk"
	"github.com/sealcache/sealcache/internal/pgtest"
	"github.com/sealcache/sealcache/internal/s3test"
)

// Shared is what several sealcache processes share when they run as nodes
// of one deployment: a PostgreSQL database (metadata and the object index),
// a bucket on a real S3-compatible server (versitygw), and a local-kms
// directory, so every node has the same operator key.
type Shared struct {
	MetadataURL string
	S3          *s3test.Server
	Bucket      string
	Prefix      string // the bucket prefix the nodes store under
	KMSDir      string
}

// NewShared creates a fresh database, bucket and key directory for t.
func NewShared(t testing.TB) *Shared {
	t.Helper()
	srv, bucket := s3test.NewBucket(t)
	return &Shared{MetadataURL: pgtest.NewDatabase(t), S3: srv, Bucket: bucket, Prefix: "cache", KMSDir: t.TempDir()}
}

// Flags are the server flags that make a node of this deployment.
func (sh *Shared) Flags() []string {
	return []string{
		"--metadata_url", sh.MetadataURL,
		"--blob_store", "s3://" + sh.Bucket + "/" + sh.Prefix,
		"--s3_endpoint", sh.S3.Endpoint,
		"--s3_region", s3test.Region,
		"--s3_path_style",
		"--s3_access_key_id", sh.S3.AccessKeyID,
		"--s3_secret_access_key", sh.S3.SecretAccessKey,
		"--local_kms_dir", sh.KMSDir,
	}
}

// StartNodes starts n servers of the deployment, one after the other (the
// first creates the org "default" and writes the initial keys into its
// data directory: read them from nodes[0]). extraFlags go to every node.
func StartNodes(t testing.TB, sh *Shared, n int, extraFlags ...string) []*Server {
	t.Helper()
	var nodes []*Server
	for range n {
		nodes = append(nodes, StartServer(t, append(sh.Flags(), extraFlags...)...))
	}
	return nodes
}

// BucketObject is one object in the bucket.
type BucketObject struct {
	Name string
	Size int64
}

// Objects lists the bucket's objects under the deployment's prefix and
// below, further, sub ("" for all; an org id for one org's).
func (sh *Shared) Objects(t testing.TB, sub string) []BucketObject {
	t.Helper()
	prefix := sh.Prefix + "/"
	if sub != "" {
		prefix += strings.TrimSuffix(sub, "/") + "/"
	}
	var objs []BucketObject
	pages := s3.NewListObjectsV2Paginator(sh.S3.Client(), &s3.ListObjectsV2Input{Bucket: aws.String(sh.Bucket), Prefix: aws.String(prefix)})
	for pages.HasMorePages() {
		page, err := pages.NextPage(context.Background())
		if err != nil {
			t.Fatalf("listing the bucket: %v", err)
		}
		for _, o := range page.Contents {
			objs = append(objs, BucketObject{Name: aws.ToString(o.Key), Size: aws.ToInt64(o.Size)})
		}
	}
	return objs
}

// BucketBytes is the total size of the objects Objects lists.
func (sh *Shared) BucketBytes(t testing.TB, sub string) int64 {
	var n int64
	for _, o := range sh.Objects(t, sub) {
		n += o.Size
	}
	return n
}

// Client is a REAPI client of the server with an org's API key.
type Client struct {
	t    testing.TB
	conn *grpc.ClientConn
	key  string
}

// Client connects to the server's gRPC port; the connection closes when
// the test ends.
func (s *Server) Client(apiKey string) *Client {
	s.t.Helper()
	conn, err := grpc.NewClient(s.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20), grpc.MaxCallSendMsgSize(64<<20)))
	if err != nil {
		s.t.Fatalf("connecting to %s: %v", s.GRPCAddr, err)
	}
	s.t.Cleanup(func() { conn.Close() })
	return &Client{t: s.t, conn: conn, key: apiKey}
}

// Conn is the client's connection, for REAPI calls of a test's own.
func (c *Client) Conn() *grpc.ClientConn { return c.conn }

// Context carries the API key, bounded by probeTimeout.
func (c *Client) Context() (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
	return metadata.AppendToOutgoingContext(ctx, "x-api-key", c.key), cancel
}

// DigestOf is the SHA-256 REAPI digest of data.
func DigestOf(data []byte) *repb.Digest {
	sum := sha256.Sum256(data)
	return &repb.Digest{Hash: hex.EncodeToString(sum[:]), SizeBytes: int64(len(data))}
}

// Upload stores blobs with BatchUpdateBlobs (keep each call's blobs under
// a few MB) and fails the test unless every one is stored.
func (c *Client) Upload(blobs ...[]byte) {
	c.t.Helper()
	ctx, cancel := c.Context()
	defer cancel()
	req := &repb.BatchUpdateBlobsRequest{}
	for _, b := range blobs {
		req.Requests = append(req.Requests, &repb.BatchUpdateBlobsRequest_Request{Digest: DigestOf(b), Data: b})
	}
	resp, err := repb.NewContentAddressableStorageClient(c.conn).BatchUpdateBlobs(ctx, req)
	if err != nil {
		c.t.Fatalf("BatchUpdateBlobs: %v", err)
	}
	for _, r := range resp.Responses {
		if r.Status.GetCode() != 0 {
			c.t.Fatalf("BatchUpdateBlobs of %s: %s", r.Digest.Hash, r.Status.GetMessage())
		}
	}
}

// Missing returns the digests FindMissingBlobs reports missing, or the
// call's error.
func (c *Client) Missing(digests ...*repb.Digest) ([]*repb.Digest, error) {
	ctx, cancel := c.Context()
	defer cancel()
	resp, err := repb.NewContentAddressableStorageClient(c.conn).FindMissingBlobs(ctx, &repb.FindMissingBlobsRequest{BlobDigests: digests})
	if err != nil {
		return nil, err
	}
	return resp.MissingBlobDigests, nil
}

// String names a digest in messages.
func String(d *repb.Digest) string { return fmt.Sprintf("%s/%d", d.Hash, d.SizeBytes) }

// Metrics returns the server's /metrics page.
func (s *Server) Metrics() string {
	s.t.Helper()
	resp, err := http.Get(s.HTTPURL() + "/metrics")
	if err != nil {
		s.t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		s.t.Fatalf("GET /metrics: %s, %v", resp.Status, err)
	}
	return string(body)
}

// DiskObjects counts the objects at or below partition in the disk store
// (a node's disk tier) of a server that has stopped: it opens the store
// itself, as the server would at its next start.
func DiskObjects(t testing.TB, s *Server, partition string) int {
	t.Helper()
	d, err := disk.Open(s.StoreDir(), disk.Options{MaxSize: 20 << 30})
	if err != nil {
		t.Fatalf("opening the disk store of the stopped server %s: %v", s.GRPCAddr, err)
	}
	defer d.Close()
	n := 0
	if err := d.WalkPartition(context.Background(), cas.Partition(partition), func(cas.StoredObject) error { n++; return nil }); err != nil {
		t.Fatalf("walking %s in the disk store of %s: %v", partition, s.GRPCAddr, err)
	}
	return n
}

// LogLines counts the lines of the server's log that hold every one of parts.
func (s *Server) LogLines(parts ...string) int {
	n := 0
	for _, line := range strings.Split(s.Log(), "\n") {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(line, p)
		}
		if all {
			n++
		}
	}
	return n
}
