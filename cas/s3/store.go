package s3

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/sealcache/sealcache/cas"
)

// maxIdleConnsPerHost keeps enough idle connections to the one endpoint
// for a busy server's concurrent requests (FindMissing alone sends
// HeadConcurrency at once); the SDK's default of 10 would close and reopen
// connections under load.
const maxIdleConnsPerHost = 256

// Store keeps objects in one S3 bucket under a prefix. It implements
// cas.Backend and is safe for concurrent use.
type Store struct {
	client   *s3.Client
	bucket   string
	layout   Layout
	cfg      Config // with defaults applied
	region   string // as resolved, for messages
	endpoint string // the endpoint in use, for messages ("" is AWS)
	memory   *uploadMemory

	// partChecksum is the checksum every part of a multipart upload
	// carries, or "" when checksums are only sent where required.
	partChecksum types.ChecksumAlgorithm
	closed       atomic.Bool
}

var _ cas.Backend = (*Store)(nil)

var errClosed = errors.New("S3 store is closed")

// New connects to the bucket cfg names and checks that it exists and the
// credentials may list it (one HeadBucket request), so that a wrong
// endpoint, bucket or key fails at start-up with a message saying what
// to fix, not at the first build.
func New(ctx context.Context, cfg Config) (*Store, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	layout, err := NewLayout(cfg.Prefix)
	if err != nil {
		return nil, err
	}
	s := &Store{
		bucket: cfg.Bucket,
		layout: layout,
		cfg:    cfg,
		memory: newUploadMemory(cfg.UploadMemory, cfg.PartSize),
	}
	if err := s.connect(ctx); err != nil {
		return nil, err
	}
	if _, err := s.client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(s.bucket)}); err != nil {
		return nil, s.failure(opHeadBucket, "", err)
	}
	return s, nil
}

// connect builds the S3 client from cfg and the AWS SDK's environment.
func (s *Store) connect(ctx context.Context) error {
	cfg := s.cfg
	opts := []func(*config.LoadOptions) error{
		config.WithRetryer(func() aws.Retryer {
			return retry.NewStandard(func(o *retry.StandardOptions) {
				// The SDK's client-side retry quota stops retrying after a
				// burst of failures, turning one slow spell into many
				// failed builds; the service's own throttling (SlowDown,
				// which is retried with back-off) is the better brake.
				o.RateLimiter = ratelimit.None
			})
		}),
	}
	if cfg.Region != "" {
		opts = append(opts, config.WithRegion(cfg.Region))
	}
	if cfg.AccessKeyID != "" {
		opts = append(opts, config.WithCredentialsProvider(
			credentials.NewStaticCredentialsProvider(cfg.AccessKeyID, cfg.SecretAccessKey, "")))
	}
	// The SDK's HTTP client (which honours AWS_CA_BUNDLE and the proxy
	// variables) with more idle connections.
	opts = append(opts, config.WithHTTPClient(awshttp.NewBuildableClient().WithTransportOptions(func(t *http.Transport) {
		t.MaxIdleConnsPerHost = maxIdleConnsPerHost
	})))
	if cfg.ChecksumsWhenRequired {
		opts = append(opts,
			config.WithRequestChecksumCalculation(aws.RequestChecksumCalculationWhenRequired),
			config.WithResponseChecksumValidation(aws.ResponseChecksumValidationWhenRequired))
	}
	awsCfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return fmt.Errorf("loading the AWS SDK configuration for S3: %w", err)
	}
	if awsCfg.Region == "" {
		if cfg.Endpoint == "" {
			return fmt.Errorf("no region for AWS S3 bucket %q: set --s3_region (or AWS_REGION) to the bucket's region", cfg.Bucket)
		}
		awsCfg.Region = regionForEndpoints
	}
	s.region = awsCfg.Region
	s.client = s3.NewFromConfig(awsCfg, func(o *s3.Options) {
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
		}
		o.UsePathStyle = cfg.PathStyle
		// Multipart objects carry composite checksums that the SDK cannot
		// check on reads; it would log a warning for every such GET.
		// Whole-object checksums are still checked.
		o.DisableLogOutputChecksumValidationSkipped = true
	}, func(o *s3.Options) {
		for _, edit := range cfg.clientOptions {
			edit(o)
		}
	})
	// The SDK may also take the endpoint from AWS_ENDPOINT_URL_S3 or the
	// shared config; messages name the one in use.
	s.endpoint = aws.ToString(s.client.Options().BaseEndpoint)
	// Multipart uploads name their checksum up front and carry it on every
	// part, as the SDK's own upload manager does; otherwise AWS could not
	// check the parts against the completed object.
	if s.client.Options().RequestChecksumCalculation != aws.RequestChecksumCalculationWhenRequired {
		s.partChecksum = types.ChecksumAlgorithmCrc32
	}
	return nil
}

// Close stops the store: later calls fail. Requests under way finish;
// idle connections close by themselves after the SDK's idle timeout.
func (s *Store) Close() error {
	s.closed.Store(true)
	return nil
}

// check fails once the store is closed or ctx has ended, so that no
// request starts that nobody waits for.
func (s *Store) check(ctx context.Context) error {
	if s.closed.Load() {
		return errClosed
	}
	return ctx.Err()
}

// Layout is the key to object name mapping of this store.
func (s *Store) Layout() Layout { return s.layout }
