package s3

import (
	"bytes"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/sealcache/sealcache/cas"
	"github.com/sealcache/sealcache/cas/castest"
)

// ListObjects sees every object under the prefix with its size and time,
// across partitions, and skips names the layout does not produce.
func TestListObjectsListsEverythingUnderThePrefix(t *testing.T) {
	s, srv, bucket := openStore(t)
	ctx := t.Context()
	var want []cas.Key
	for i, p := range []cas.Partition{"org1", "org1/kA", "org2"} {
		data := castest.Bytes(uint64(i), int64(100+i))
		k := castest.CASKey(p, data)
		if err := s.Put(ctx, k, int64(len(data)), bytes.NewReader(data)); err != nil {
			t.Fatal(err)
		}
		want = append(want, k)
	}
	if _, err := srv.Client().PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(s.Layout().Prefix() + "notes.txt"), Body: strings.NewReader("not a cache object")}); err != nil {
		t.Fatal(err)
	}
	var got []cas.Key
	start := time.Now().Add(-time.Hour)
	skipped, err := s.ListObjects(ctx, func(k cas.Key, size int64, modified time.Time) error {
		if size != 100+int64(slices.Index(want, k)) || modified.Before(start) {
			t.Errorf("%s listed with size %d, modified %v", k, size, modified)
		}
		got = append(got, k)
		return nil
	})
	if err != nil || skipped != 1 {
		t.Fatalf("ListObjects = %d skipped, %v; want the one foreign object skipped", skipped, err)
	}
	if len(got) != len(want) {
		t.Fatalf("ListObjects listed %v; want %v", got, want)
	}
}
