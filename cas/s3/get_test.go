package s3

import (
	"bytes"
	"fmt"
	"io"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/sealcache/sealcache/cas"
	"github.com/sealcache/sealcache/cas/castest"
)

// An offset read is one ranged GET, whose answer also gives the whole
// object's size: no HEAD first, no read of the skipped bytes.
func TestOffsetReadIsOneRangedGet(t *testing.T) {
	var rec *recorder
	s, _, _ := openStore(t, func(c *Config) { rec = record(c) })
	data := castest.Bytes(1, 5*testPartSize/2)
	k := castest.CASKey("org1", data)
	if err := s.Put(t.Context(), k, int64(len(data)), bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	rec.take()

	const offset = testPartSize + 12345
	rc, size, err := s.Get(t.Context(), k, offset)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	if size != int64(len(data)) || !bytes.Equal(got, data[offset:]) {
		t.Fatalf("Get at %d: size %d and %d bytes; want %d and the tail of %d bytes", offset, size, len(got), len(data), len(data)-offset)
	}
	want := []request{{Operation: opGet, Range: fmt.Sprintf("bytes=%d-", offset)}}
	if reqs := rec.take(); fmt.Sprint(reqs) != fmt.Sprint(want) {
		t.Fatalf("Get at offset %d sent %v; want %v", offset, reqs, want)
	}

	// A whole read is one GET without a range.
	rc, _, err = s.Get(t.Context(), k, 0)
	if err != nil {
		t.Fatal(err)
	}
	rc.Close()
	want = []request{{Operation: opGet}}
	if reqs := rec.take(); fmt.Sprint(reqs) != fmt.Sprint(want) {
		t.Fatalf("Get at offset 0 sent %v; want %v", reqs, want)
	}
}

// S3 refuses a range that starts at the end of an object; the store then
// asks the object's size and serves an empty read, or fails (not a miss)
// past the end.
func TestReadAtTheEnd(t *testing.T) {
	var rec *recorder
	s, _, _ := openStore(t, func(c *Config) { rec = record(c) })
	data := []byte("twelve bytes")
	k := castest.CASKey("org1", data)
	if err := s.Put(t.Context(), k, int64(len(data)), bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	rec.take()
	rc, size, err := s.Get(t.Context(), k, int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(rc)
	rc.Close()
	if size != int64(len(data)) || len(got) != 0 {
		t.Fatalf("Get at the end: size %d, %d bytes; want size %d and no bytes", size, len(got), len(data))
	}
	if ops := operations(rec.take()); ops[opGet] != 1 || ops[opHead] != 1 || len(ops) != 2 {
		t.Fatalf("Get at the end sent %v; want one GetObject and one HeadObject", ops)
	}
	_, _, err = s.Get(t.Context(), k, int64(len(data))+1)
	if err == nil || isNotFound(err) {
		t.Fatalf("Get past the end = %v; want an error that is not a miss", err)
	}
}

// FindMissing asks one HEAD per key, and confirms its first miss with a
// GET, since a HEAD's 404 cannot tell a missing object from a missing
// bucket.
func TestFindMissingSendsOneHeadPerKey(t *testing.T) {
	var rec *recorder
	s, _, _ := openStore(t, func(c *Config) { rec = record(c) })
	var keys []cas.Key
	for i := range 50 {
		data := castest.Bytes(uint64(i), 10)
		k := castest.CASKey("org1", data)
		keys = append(keys, k)
		if i%2 == 0 {
			if err := s.Put(t.Context(), k, int64(len(data)), bytes.NewReader(data)); err != nil {
				t.Fatal(err)
			}
		}
	}
	rec.take()
	missing, err := s.FindMissing(t.Context(), keys)
	if err != nil {
		t.Fatal(err)
	}
	if len(missing) != 25 {
		t.Fatalf("FindMissing found %d of 50 keys missing; want 25", len(missing))
	}
	if ops := operations(rec.take()); ops[opHead] != 50 || ops[opGet] != 1 || len(ops) != 2 {
		t.Fatalf("FindMissing of 50 keys, 25 missing, sent %v; want 50 HeadObject and 1 GetObject", ops)
	}
	if _, err := s.FindMissing(t.Context(), keys[:1]); err != nil {
		t.Fatal(err)
	}
	if ops := operations(rec.take()); ops[opHead] != 1 || len(ops) != 1 {
		t.Fatalf("FindMissing of 1 stored key sent %v; want 1 HeadObject", ops)
	}
}

// A bucket deleted under a running store makes FindMissing fail rather
// than report every key missing.
func TestFindMissingOnADeletedBucketFails(t *testing.T) {
	s, srv, bucket := openStore(t)
	if _, err := srv.Client().DeleteBucket(t.Context(), &s3.DeleteBucketInput{Bucket: aws.String(bucket)}); err != nil {
		t.Fatal(err)
	}
	_, err := s.FindMissing(t.Context(), []cas.Key{castest.CASKey("org1", []byte("x"))})
	checkFailure(t, "FindMissing on a deleted bucket", err, ErrNoSuchBucket, bucket)
}
