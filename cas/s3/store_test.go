package s3

import (
	"context"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/sealcache/sealcache/cas"
	"github.com/sealcache/sealcache/cas/castest"
	"github.com/sealcache/sealcache/internal/s3test"
)

// testPartSize is the smallest part size S3 (and versitygw) accept, so
// that tests cross part boundaries with little data.
const testPartSize = MinPartSize

// testConfig is a Config for bucket on srv with the test part size.
func testConfig(srv *s3test.Server, bucket string) Config {
	return Config{
		Bucket:          bucket,
		Prefix:          "sealcache",
		Endpoint:        srv.Endpoint,
		Region:          s3test.Region,
		PathStyle:       true,
		AccessKeyID:     srv.AccessKeyID,
		SecretAccessKey: srv.SecretAccessKey,
		PartSize:        testPartSize,
	}
}

// openStore opens a store on a fresh bucket of the shared test server.
// edit, if given, changes the config first.
func openStore(t testing.TB, edit ...func(*Config)) (*Store, *s3test.Server, string) {
	t.Helper()
	srv, bucket := s3test.NewBucket(t)
	cfg := testConfig(srv, bucket)
	for _, e := range edit {
		e(&cfg)
	}
	s, err := New(t.Context(), cfg)
	if err != nil {
		t.Fatalf("New(%v): %v", cfg, err)
	}
	t.Cleanup(func() { s.Close() })
	return s, srv, bucket
}

func TestConformance(t *testing.T) {
	// 2.5 parts: the large objects are multipart uploads with a short last part.
	opts := castest.Options{LargeSize: 5*testPartSize/2 + 17}
	castest.Run(t, opts, func(t *testing.T) cas.Backend {
		s, _, _ := openStore(t)
		return s
	})
}

// TestConformanceWithoutPrefix: objects may also sit at the top of the
// bucket, with partitions as the first name element.
func TestConformanceWithoutPrefix(t *testing.T) {
	castest.Run(t, castest.Options{LargeSize: 5*testPartSize/2 + 17}, func(t *testing.T) cas.Backend {
		s, _, _ := openStore(t, func(c *Config) { c.Prefix = "" })
		return s
	})
}

// listNames returns every object name in the bucket.
func listNames(t testing.TB, srv *s3test.Server, bucket string) []string {
	t.Helper()
	var names []string
	pages := s3.NewListObjectsV2Paginator(srv.Client(), &s3.ListObjectsV2Input{Bucket: aws.String(bucket)})
	for pages.HasMorePages() {
		page, err := pages.NextPage(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range page.Contents {
			names = append(names, aws.ToString(o.Key))
		}
	}
	return names
}

// unfinishedUploads returns the multipart uploads under way in the bucket.
func unfinishedUploads(t testing.TB, srv *s3test.Server, bucket string) []string {
	t.Helper()
	out, err := srv.Client().ListMultipartUploads(context.Background(), &s3.ListMultipartUploadsInput{Bucket: aws.String(bucket)})
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, u := range out.Uploads {
		keys = append(keys, aws.ToString(u.Key)+" "+aws.ToString(u.UploadId))
	}
	return keys
}
