package s3

import (
	"context"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/sealcache/sealcache/cas"
)

// ListObjects calls fn for every object under the store's prefix, in name
// order, with its key, stored size and last modification: for sweeping
// objects an index does not know. Names this layout does not produce are
// skipped (and counted in the result).
func (s *Store) ListObjects(ctx context.Context, fn func(key cas.Key, size int64, modified time.Time) error) (skipped int, err error) {
	err = s.list(ctx, s.layout.Prefix(), func(page []types.Object) error {
		for _, o := range page {
			key, err := s.layout.ParseObjectName(aws.ToString(o.Key))
			if err != nil {
				skipped++
				continue
			}
			if err := fn(key, aws.ToInt64(o.Size), aws.ToTime(o.LastModified)); err != nil {
				return err
			}
		}
		return nil
	})
	return skipped, err
}
