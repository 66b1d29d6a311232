package s3

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"golang.org/x/sync/errgroup"

	"github.com/sealcache/sealcache/cas"
)

// Get opens key's object at offset with one GetObject request, ranged
// ("Range: bytes=OFFSET-") when offset > 0, and returns the whole object's
// length: from Content-Length for a whole read, from Content-Range for a
// ranged one. S3 refuses a range that starts at the end of the object, so
// a read at offset == size costs a HEAD more and returns an empty reader.
func (s *Store) Get(ctx context.Context, key cas.Key, offset int64) (io.ReadCloser, int64, error) {
	name, err := s.layout.ObjectName(key)
	if err != nil {
		return nil, 0, err
	}
	if offset < 0 {
		return nil, 0, fmt.Errorf("Get(%s): negative offset %d", key, offset)
	}
	if err := s.check(ctx); err != nil {
		return nil, 0, err
	}
	in := &s3.GetObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(name)}
	if offset > 0 {
		in.Range = aws.String(fmt.Sprintf("bytes=%d-", offset))
	}
	out, err := s.client.GetObject(ctx, in)
	if err != nil {
		if offset > 0 && isAPIError(err, codeInvalidRange) {
			return s.getAtEnd(ctx, key, name, offset)
		}
		return nil, 0, s.failure(opGet, name, err)
	}
	size, err := wholeSize(out, offset)
	if err != nil {
		out.Body.Close()
		return nil, 0, fmt.Errorf("S3 %s of %s: %w", opGet, s.where(name), err)
	}
	return out.Body, size, nil
}

// wholeSize is the length of the whole object a GetObject answer reads
// from offset.
func wholeSize(out *s3.GetObjectOutput, offset int64) (int64, error) {
	if offset == 0 {
		if out.ContentLength == nil {
			return 0, fmt.Errorf("the answer has no Content-Length")
		}
		return *out.ContentLength, nil
	}
	// "bytes START-END/TOTAL"
	cr := aws.ToString(out.ContentRange)
	spec, ok := strings.CutPrefix(cr, "bytes ")
	rng, total, ok2 := strings.Cut(spec, "/")
	startText, _, ok3 := strings.Cut(rng, "-")
	start, err1 := strconv.ParseInt(startText, 10, 64)
	size, err2 := strconv.ParseInt(total, 10, 64)
	if !ok || !ok2 || !ok3 || err1 != nil || err2 != nil {
		return 0, fmt.Errorf("the answer to a ranged read has Content-Range %q, not \"bytes START-END/TOTAL\"; the service may not support ranged reads", cr)
	}
	if start != offset {
		return 0, fmt.Errorf("asked for bytes from %d, got Content-Range %q", offset, cr)
	}
	return size, nil
}

// getAtEnd answers a read whose range S3 refused: a read at the very end
// of the object is empty; one past it is an error (not a miss).
func (s *Store) getAtEnd(ctx context.Context, key cas.Key, name string, offset int64) (io.ReadCloser, int64, error) {
	size, err := s.head(ctx, name)
	if err != nil {
		return nil, 0, err
	}
	if offset != size {
		return nil, 0, fmt.Errorf("Get(%s): offset %d is past the end of the object's %d bytes", key, offset, size)
	}
	return io.NopCloser(strings.NewReader("")), size, nil
}

// head returns the stored length of the object name.
func (s *Store) head(ctx context.Context, name string) (int64, error) {
	out, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(name)})
	if err != nil {
		return 0, s.failure(opHead, name, err)
	}
	return aws.ToInt64(out.ContentLength), nil
}

// FindMissing sends one HEAD per key, HeadConcurrency at a time. S3 keeps
// no access order, so a hit is not a use here: expiry is the bucket's
// lifecycle rules' (or a future index's) business.
//
// A HEAD's 404 has no body to say what is missing: the object, or the
// bucket, or (on versitygw) the user of the access key. So when there are
// misses, the first is confirmed with a GET, whose error says which; a
// call that would report everything missing because the bucket is gone
// fails instead.
func (s *Store) FindMissing(ctx context.Context, keys []cas.Key) ([]cas.Key, error) {
	names := make([]string, len(keys))
	for i, k := range keys {
		var err error
		if names[i], err = s.layout.ObjectName(k); err != nil {
			return nil, err
		}
	}
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	missing := make([]bool, len(keys))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(s.cfg.HeadConcurrency)
	for i, name := range names {
		g.Go(func() error {
			_, err := s.head(gctx, name)
			if isNotFound(err) {
				missing[i] = true
				return nil
			}
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	var out []cas.Key
	for i, k := range keys {
		if missing[i] {
			if len(out) == 0 {
				if err := s.confirmMiss(ctx, names[i]); err != nil {
					return nil, err
				}
			}
			out = append(out, k)
		}
	}
	return out, nil
}

// confirmMiss asks for the first byte of an object a HEAD did not find:
// S3 answers NoSuchKey only if the bucket exists and the credentials are
// good. An object that appeared meanwhile is still reported missing: the
// client uploads it once more, which is harmless.
func (s *Store) confirmMiss(ctx context.Context, name string) error {
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{
		Bucket: aws.String(s.bucket),
		Key:    aws.String(name),
		Range:  aws.String(firstByte),
	})
	switch {
	case err == nil:
		out.Body.Close()
		return nil
	case isAPIError(err, codeInvalidRange): // appeared meanwhile, empty
		return nil
	}
	if err := s.failure(opGet, name, err); !isNotFound(err) {
		return err
	}
	return nil
}

// firstByte is the Range of a GET that only checks an object's existence.
const firstByte = "bytes=0-0"
