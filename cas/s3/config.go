package s3

import (
	"fmt"
	"log/slog"
	"net/url"
	"strings"

	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// URLScheme is the scheme of --blob_store values this package serves.
const URLScheme = "s3"

// Sizes and limits of uploads.
const (
	// DefaultPartSize is the part size when Config.PartSize is 0: large
	// enough that a 1 GiB blob takes 128 requests, small enough that the
	// default memory budget serves 64 uploads at once.
	DefaultPartSize = 8 << 20
	// MinPartSize is S3's minimum for every part but the last.
	MinPartSize = 5 << 20
	// MaxPartSize is S3's maximum part (and single PutObject) size.
	MaxPartSize = 5 << 30
	// MaxParts is S3's limit on parts per multipart upload. Objects may
	// thus hold at most MaxParts x PartSize bytes (78 GiB at 8 MiB).
	MaxParts = 10000

	// DefaultPartConcurrency is how many buffers one upload holds by
	// default: one being filled from the client while the others are sent.
	DefaultPartConcurrency = 4
	// DefaultUploadMemory is the default store-wide bound on upload buffers.
	DefaultUploadMemory = 512 << 20
	// DefaultHeadConcurrency is how many HEAD requests one FindMissing call
	// sends at once by default.
	DefaultHeadConcurrency = 32
)

// regionForEndpoints is the region requests are signed for when an
// S3-compatible endpoint is given and no region is configured anywhere:
// most such services accept it or ignore the region.
const regionForEndpoints = "us-east-1"

// Config says where the store keeps objects and how it talks to the
// service. Bucket and Prefix come from --blob_store s3://BUCKET/PREFIX
// (see ParseURL); the other fields from the --s3_* flags. The zero value
// of every other field means its default.
type Config struct {
	// Bucket holds the objects. It must exist: the store never creates or
	// configures buckets, so versioning, lifecycle rules and encryption
	// at rest stay the operator's choice.
	Bucket string
	// Prefix is prepended to every object name ("cache/prod" stores under
	// "cache/prod/..."), so one bucket can serve several deployments. Each
	// deployment must have its own prefix: a store owns everything under it.
	Prefix string

	// Endpoint is the base URL of an S3-compatible service
	// (--s3_endpoint), such as "https://minio.internal:9000". Empty means
	// AWS S3 in Region.
	Endpoint string
	// Region is the region requests are signed for (--s3_region). Empty
	// means the AWS SDK's default chain (AWS_REGION, ~/.aws/config), and
	// "us-east-1" if that finds none and Endpoint is set. AWS S3 needs the
	// bucket's own region.
	Region string
	// PathStyle sends requests to ENDPOINT/BUCKET/KEY instead of
	// BUCKET.ENDPOINT/KEY (--s3_path_style). Most self-hosted services
	// (MinIO, Ceph, versitygw) need it, since their buckets have no DNS names.
	PathStyle bool
	// AccessKeyID and SecretAccessKey are static credentials
	// (--s3_access_key_id, --s3_secret_access_key): give both or neither.
	// Neither means the AWS SDK's default chain: AWS_ACCESS_KEY_ID and
	// AWS_SECRET_ACCESS_KEY, the shared credentials file, web identity,
	// then the ECS or EC2 instance role. They are never logged.
	AccessKeyID     string
	SecretAccessKey string

	// PartSize is the size of each multipart upload part and the largest
	// object sent with one PutObject, in bytes. Default DefaultPartSize;
	// at least MinPartSize and at most MaxPartSize.
	PartSize int64
	// PartConcurrency is how many part buffers one upload holds at most:
	// one is filled from the client while the others are being sent.
	// Default DefaultPartConcurrency. One upload thus holds at most
	// PartSize x PartConcurrency bytes (32 MiB by default).
	PartConcurrency int
	// UploadMemory bounds the bytes held in upload buffers by all uploads
	// together; an upload waits for room before it reads its first part.
	// Default DefaultUploadMemory; at least PartSize.
	UploadMemory int64
	// HeadConcurrency is how many HEAD requests one FindMissing call sends
	// at once. Default DefaultHeadConcurrency.
	HeadConcurrency int

	// ChecksumsWhenRequired stops the SDK from adding CRC32 checksums to
	// uploads and checking them on downloads unless an operation requires
	// them. Set it for S3-compatible services that reject the checksum
	// headers (x-amz-checksum-crc32, x-amz-sdk-checksum-algorithm) of
	// current AWS SDKs. AWS_REQUEST_CHECKSUM_CALCULATION=when_required has
	// the same effect on uploads.
	ChecksumsWhenRequired bool

	// clientOptions change the S3 client after everything else; tests use
	// them to observe requests.
	clientOptions []func(*s3.Options)
}

// ParseURL reads a --blob_store value "s3://BUCKET" or "s3://BUCKET/PREFIX"
// into a Config holding Bucket and Prefix; the caller fills in the rest.
func ParseURL(raw string) (Config, error) {
	const form = "use s3://BUCKET or s3://BUCKET/PREFIX"
	u, err := url.Parse(raw)
	if err != nil {
		return Config{}, fmt.Errorf("blob store URL %q: %v; %s", raw, err, form)
	}
	if u.Scheme != URLScheme {
		return Config{}, fmt.Errorf("blob store URL %q is not an s3:// URL; %s", raw, form)
	}
	if u.User != nil || u.Port() != "" || u.RawQuery != "" || u.Fragment != "" {
		return Config{}, fmt.Errorf("blob store URL %q has credentials, a port, a query or a fragment; %s and give the endpoint and credentials with the --s3_* flags", redact(u), form)
	}
	cfg := Config{Bucket: u.Host, Prefix: strings.Trim(u.Path, separator)}
	if err := validateBucket(cfg.Bucket); err != nil {
		return Config{}, fmt.Errorf("blob store URL %q: %v", raw, err)
	}
	if _, err := NewLayout(cfg.Prefix); err != nil {
		return Config{}, fmt.Errorf("blob store URL %q: %v", raw, err)
	}
	return cfg, nil
}

// redact hides a password someone put into the URL.
func redact(u *url.URL) string {
	if u.User == nil {
		return u.String()
	}
	c := *u
	c.User = url.User("REDACTED")
	return c.String()
}

// validateBucket applies S3's bucket naming rules loosely (some services
// allow upper case and underscores): it rejects only what can never be a
// bucket name in a URL path or host.
func validateBucket(b string) error {
	if b == "" {
		return fmt.Errorf("no bucket name; use s3://BUCKET/PREFIX")
	}
	if len(b) < 3 || len(b) > 63 {
		return fmt.Errorf("bucket name %q has %d characters; S3 bucket names have 3 to 63", b, len(b))
	}
	for i := 0; i < len(b); i++ {
		if c := b[i]; !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			return fmt.Errorf("bucket name %q has character %q; use lowercase letters, digits, '.' and '-'", b, c)
		}
	}
	return nil
}

// withDefaults returns c with every unset tuning field at its default and
// checks the result.
func (c Config) withDefaults() (Config, error) {
	if err := validateBucket(c.Bucket); err != nil {
		return c, err
	}
	if (c.AccessKeyID == "") != (c.SecretAccessKey == "") {
		return c, fmt.Errorf("only one of the S3 access key id and secret access key is set; give both (--s3_access_key_id, --s3_secret_access_key) or neither to use the AWS default credential chain")
	}
	if c.Endpoint != "" {
		u, err := url.Parse(c.Endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return c, fmt.Errorf("S3 endpoint %q is not a URL such as https://minio.internal:9000", c.Endpoint)
		}
	}
	if c.PartSize == 0 {
		c.PartSize = DefaultPartSize
	}
	if c.PartSize < MinPartSize || c.PartSize > MaxPartSize {
		return c, fmt.Errorf("S3 part size %d is outside S3's limits; use %d (5 MiB) to %d (5 GiB) bytes", c.PartSize, MinPartSize, int64(MaxPartSize))
	}
	if c.PartConcurrency == 0 {
		c.PartConcurrency = DefaultPartConcurrency
	}
	if c.PartConcurrency < 1 {
		return c, fmt.Errorf("S3 part concurrency %d: use at least 1", c.PartConcurrency)
	}
	if c.UploadMemory == 0 {
		c.UploadMemory = max(DefaultUploadMemory, c.PartSize)
	}
	if c.UploadMemory < c.PartSize {
		return c, fmt.Errorf("S3 upload memory of %d bytes cannot hold one part of %d bytes; raise it or lower the part size", c.UploadMemory, c.PartSize)
	}
	if c.HeadConcurrency == 0 {
		c.HeadConcurrency = DefaultHeadConcurrency
	}
	if c.HeadConcurrency < 1 {
		return c, fmt.Errorf("S3 HEAD concurrency %d: use at least 1", c.HeadConcurrency)
	}
	return c, nil
}

// String describes c for logs with the secret access key left out, so that
// printing a Config (%v, %+v, %#v) or logging it (slog) cannot leak it.
func (c Config) String() string {
	endpoint := c.Endpoint
	if endpoint == "" {
		endpoint = "AWS"
	}
	creds := "default chain"
	if c.AccessKeyID != "" {
		creds = "access key " + c.AccessKeyID
	}
	return fmt.Sprintf("s3://%s/%s (endpoint %s, region %q, path style %v, credentials: %s, part size %d)",
		c.Bucket, c.Prefix, endpoint, c.Region, c.PathStyle, creds, c.PartSize)
}

// GoString is String, for %#v.
func (c Config) GoString() string { return c.String() }

// LogValue is String, for log/slog.
func (c Config) LogValue() slog.Value { return slog.StringValue(c.String()) }
