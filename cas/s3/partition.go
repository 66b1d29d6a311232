package s3

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/sealcache/sealcache/cas"
)

// Listing-based operations. S3 has no directories: the objects at or below
// a partition are those whose names start with its prefix
// ("PREFIX/org1/"), listed 1,000 at a time. Their cost grows with the
// number of objects (one request per 1,000), so OrgUsage in particular is
// slow for large orgs; an index kept beside the bucket is to replace it.

// deleteBatch is the most keys one DeleteObjects request may name.
const deleteBatch = 1000

// Delete removes key's object; S3 answers a delete of a missing object
// with success too.
func (s *Store) Delete(ctx context.Context, key cas.Key) error {
	name, err := s.layout.ObjectName(key)
	if err != nil {
		return err
	}
	if err := s.check(ctx); err != nil {
		return err
	}
	_, err = s.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(name)})
	if err != nil {
		return s.failure(opDelete, name, err)
	}
	return nil
}

// WalkPartition calls fn for every object at or below partition, in name
// order. An object under the partition's prefix whose name this layout
// does not produce fails the walk rather than being skipped: the walk
// backs the check that an org's data is gone, which must not overlook
// anything.
func (s *Store) WalkPartition(ctx context.Context, partition cas.Partition, fn func(cas.StoredObject) error) error {
	prefix, err := s.layout.PartitionPrefix(partition)
	if err != nil {
		return err
	}
	return s.list(ctx, prefix, func(page []types.Object) error {
		for _, o := range page {
			name := aws.ToString(o.Key)
			key, err := s.layout.ParseObjectName(name)
			if err != nil {
				return fmt.Errorf("walking partition %s: %w; only this store may write under %s: remove the object or give each deployment its own prefix",
					partition, err, s.where(s.layout.Prefix()))
			}
			if err := fn(cas.StoredObject{Key: key, Size: aws.ToInt64(o.Size)}); err != nil {
				return err
			}
		}
		return nil
	})
}

// DeletePartition removes every object under the partition's prefix, one
// DeleteObjects request per listed page, and returns the bytes freed.
// Objects stored while it runs may survive it.
func (s *Store) DeletePartition(ctx context.Context, partition cas.Partition) (int64, error) {
	prefix, err := s.layout.PartitionPrefix(partition)
	if err != nil {
		return 0, err
	}
	var freed int64
	err = s.list(ctx, prefix, func(page []types.Object) error {
		for len(page) > 0 {
			batch := page[:min(len(page), deleteBatch)]
			page = page[len(batch):]
			n, err := s.deleteObjects(ctx, batch)
			freed += n
			if err != nil {
				return fmt.Errorf("deleting partition %s: %w", partition, err)
			}
		}
		return nil
	})
	return freed, err
}

// deleteObjects deletes up to deleteBatch listed objects with one request
// and returns the bytes of those deleted.
func (s *Store) deleteObjects(ctx context.Context, objs []types.Object) (int64, error) {
	ids := make([]types.ObjectIdentifier, len(objs))
	var bytes int64
	for i, o := range objs {
		ids[i] = types.ObjectIdentifier{Key: o.Key}
		bytes += aws.ToInt64(o.Size)
	}
	out, err := s.client.DeleteObjects(ctx, &s3.DeleteObjectsInput{
		Bucket: aws.String(s.bucket),
		Delete: &types.Delete{Objects: ids, Quiet: aws.Bool(true)},
	})
	if err != nil {
		return 0, s.failure(opDeleteMany, aws.ToString(objs[0].Key), err)
	}
	if len(out.Errors) > 0 {
		// Quiet mode lists only failures. Count the rest as freed.
		failed := map[string]bool{}
		for _, e := range out.Errors {
			failed[aws.ToString(e.Key)] = true
		}
		for _, o := range objs {
			if failed[aws.ToString(o.Key)] {
				bytes -= aws.ToInt64(o.Size)
			}
		}
		first := out.Errors[0]
		return bytes, fmt.Errorf("S3 %s could not delete %d of %d objects, such as %s: %s: %s",
			opDeleteMany, len(out.Errors), len(objs), s.where(aws.ToString(first.Key)), aws.ToString(first.Code), aws.ToString(first.Message))
	}
	return bytes, nil
}

// OrgUsage sums the sizes of the org's objects, plain and sealed, by
// listing them all: one request per 1,000 objects.
func (s *Store) OrgUsage(ctx context.Context, orgID string) (int64, error) {
	org, err := cas.OrgPartition(orgID)
	if err != nil {
		return 0, err
	}
	prefix, err := s.layout.PartitionPrefix(org)
	if err != nil {
		return 0, err
	}
	var total int64
	err = s.list(ctx, prefix, func(page []types.Object) error {
		for _, o := range page {
			total += aws.ToInt64(o.Size)
		}
		return nil
	})
	return total, err
}

// list calls fn with each page of the objects whose names start with
// prefix, in name order.
func (s *Store) list(ctx context.Context, prefix string, fn func([]types.Object) error) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	pages := s3.NewListObjectsV2Paginator(s.client, &s3.ListObjectsV2Input{
		Bucket: aws.String(s.bucket),
		Prefix: aws.String(prefix),
	})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return s.failure(opList, prefix, err)
		}
		if err := fn(page.Contents); err != nil {
			return err
		}
	}
	return nil
}
