package server

import (
	"fmt"
	"math"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sealcache/sealcache/encryption"
)

// Config is everything the server is told at start-up. cmd/sealcache fills
// it from flags, SEALCACHE_* environment variables and a YAML file.
type Config struct {
	DataDir     string
	GRPCAddress string
	HTTPAddress string
	MaxSize     int64 // disk budget in bytes
	MaxBlobSize int64 // largest accepted blob in bytes; 0 = no limit beyond MaxSize

	TLSCertFile string // both set: gRPC and HTTP serve TLS
	TLSKeyFile  string

	AnonymousAccess string // none, read or write: what keyless clients may do in org "default"
	AuthCacheTTL    time.Duration

	// HTTPACStrict refuses HTTP /ac/ bodies that are not ActionResult
	// messages; by default they are stored as opaque entries (ccache).
	HTTPACStrict bool

	// Remote Asset API (grpc_asset.go, asset_fetch.go): whether FetchBlob
	// downloads on a miss (AssetFetchOn or AssetFetchOff), from which hosts
	// (empty: any host at a public address), and for how long at most.
	AssetFetch             string
	AssetFetchAllowedHosts []string
	AssetFetchTimeout      time.Duration

	// CMEK
	KeyCacheTTL        time.Duration
	KeyRewrapInterval  time.Duration
	LocalKMSDir        string
	OperatorKeyURI     string
	GCPKMSPrincipal    string
	AWSKMSPrincipal    string
	GCPKMSEndpoint     string
	GCPKMSInsecure     bool // plaintext, unauthenticated gRPC to GCPKMSEndpoint (tests, private proxies)
	GCPCredentialsFile string
	AWSKMSEndpoint     string
	AWSRegion          string
	AWSAccessKeyID     string
	AWSSecretAccessKey string

	ShutdownGrace time.Duration

	// Connection and stream limits (limits.go, idle.go).
	//
	// UploadIdleTimeout ends a ByteStream Write stream or an HTTP PUT body
	// that sends nothing for this long; the upload is dropped.
	UploadIdleTimeout time.Duration
	// MaxConcurrentStreams caps the gRPC calls in flight on one connection;
	// clients queue the rest.
	MaxConcurrentStreams int
	// MaxConnectionsPerPort caps the open connections of each port (gRPC
	// and HTTP); further clients wait until one closes.
	MaxConnectionsPerPort int

	// Many nodes (see scaleout.go): a shared object store and PostgreSQL.
	BlobStore         string // s3://BUCKET/PREFIX; empty: this node's disk only
	S3Endpoint        string
	S3Region          string
	S3PathStyle       bool
	S3AccessKeyID     string
	S3SecretAccessKey string
	MetadataURL       string        // postgres://...: metadata and the shared object index; empty: SQLite
	SharedMaxSize     int64         // budget of the shared store in bytes; 0: none
	SharedOrgQuota    int64         // budget of each org in the shared store; 0: none
	MinRetention      time.Duration // no shared object used more recently is evicted

	// PublicCacheURL is what Bazel users pass as --remote_cache, shown with
	// new keys; empty means grpc(s)://HOST:PORT of the admin request's host
	// and the gRPC port.
	PublicCacheURL string

	// Clock replaces time.Now for the CMEK key cache; tests move it past
	// the TTL instead of waiting. Nil means time.Now.
	Clock func() time.Time
}

// Defaults returns the embedded defaults: one machine, one data directory.
func Defaults() Config {
	return Config{
		DataDir:           "./sealcache-data",
		GRPCAddress:       ":1985",
		HTTPAddress:       ":8080",
		MaxSize:           20 << 30,
		AnonymousAccess:   AnonymousNone,
		AssetFetch:        AssetFetchOn,
		AssetFetchTimeout: 5 * time.Minute,
		AuthCacheTTL:      30 * time.Second,
		KeyCacheTTL:       encryption.MaxKeyTTL,
		KeyRewrapInterval: 6 * time.Hour,
		OperatorKeyURI:    "local-kms://operator",
		ShutdownGrace:     30 * time.Second,

		UploadIdleTimeout:     time.Minute,
		MaxConcurrentStreams:  100,
		MaxConnectionsPerPort: 1000,
		MinRetention:          time.Hour,
	}
}

// Validate checks the config and fills paths derived from DataDir.
func (c *Config) Validate() error {
	if c.DataDir == "" {
		return fmt.Errorf("--data_dir must not be empty")
	}
	if c.MaxSize <= 0 {
		return fmt.Errorf("--max_size must be positive, such as 20GiB")
	}
	if c.MaxBlobSize < 0 || c.MaxBlobSize > c.MaxSize {
		return fmt.Errorf("--max_blob_size must be between 0 (no limit) and --max_size")
	}
	switch c.AnonymousAccess {
	case AnonymousNone, AnonymousRead, AnonymousWrite:
	default:
		return fmt.Errorf("--anonymous_access=%q: use none, read or write", c.AnonymousAccess)
	}
	if err := c.validateAssetFetch(); err != nil {
		return err
	}
	if c.KeyCacheTTL <= 0 || c.KeyCacheTTL > encryption.MaxKeyTTL {
		return fmt.Errorf("--key_cache_ttl=%s: must be above 0 and at most %s, the promised bound on how long a disabled key keeps working", c.KeyCacheTTL, encryption.MaxKeyTTL)
	}
	if c.KeyRewrapInterval < time.Minute {
		return fmt.Errorf("--key_rewrap_interval=%s: must be at least 1m", c.KeyRewrapInterval)
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		return fmt.Errorf("--tls_cert_file and --tls_key_file go together")
	}
	c.LocalKMSDir = c.LocalKeyDir()
	if c.ShutdownGrace <= 0 {
		c.ShutdownGrace = 30 * time.Second
	}
	if c.UploadIdleTimeout <= 0 {
		return fmt.Errorf("--upload_idle_timeout=%s: must be above 0, such as 1m", c.UploadIdleTimeout)
	}
	if c.MaxConcurrentStreams < 1 || c.MaxConcurrentStreams > math.MaxUint32 {
		return fmt.Errorf("--grpc_max_concurrent_streams must be at least 1, such as 100")
	}
	if c.MaxConnectionsPerPort < 1 {
		return fmt.Errorf("--max_connections_per_port must be at least 1, such as 1000")
	}
	return c.validateScaleout()
}

// BlobLimit is the largest CAS blob the server accepts and the flag that
// sets it, so that a refusal can name the flag to raise.
type BlobLimit struct {
	Bytes int64
	Flag  string
}

// BlobLimit is --max_blob_size, or else the whole disk budget, which no
// larger blob could fit in.
func (c *Config) BlobLimit() BlobLimit {
	if c.MaxBlobSize > 0 {
		return BlobLimit{c.MaxBlobSize, "--max_blob_size"}
	}
	return BlobLimit{c.MaxSize, "--max_size"}
}

// Check refuses a blob of size bytes (what is named by what) over the
// limit: INVALID_ARGUMENT, because retrying cannot help.
func (l BlobLimit) Check(what string, size int64) error {
	if l.Bytes > 0 && size > l.Bytes {
		return status.Errorf(codes.InvalidArgument, "%s has %d bytes, more than the server's %s of %d bytes", what, size, l.Flag, l.Bytes)
	}
	return nil
}

// ParseSize reads a byte size such as "20GiB", "512MB", "1.5TiB" or
// "4096". KiB, MiB, GiB, TiB (and K, M, G, T) are powers of 1024; KB, MB,
// GB, TB are powers of 1000. Units are case-insensitive.
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	i := len(t)
	for i > 0 && (t[i-1] >= 'a' && t[i-1] <= 'z' || t[i-1] >= 'A' && t[i-1] <= 'Z') {
		i--
	}
	number, unit := strings.TrimSpace(t[:i]), strings.ToLower(t[i:])
	mult, ok := sizeUnits[unit]
	v, err := strconv.ParseFloat(number, 64)
	if !ok || err != nil || v < 0 {
		return 0, fmt.Errorf("size %q: use a number with an optional unit, such as 20GiB, 500MB or 1048576", s)
	}
	return int64(v * mult), nil
}

var sizeUnits = map[string]float64{
	"": 1, "b": 1,
	"k": 1 << 10, "kib": 1 << 10, "m": 1 << 20, "mib": 1 << 20,
	"g": 1 << 30, "gib": 1 << 30, "t": 1 << 40, "tib": 1 << 40,
	"kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12,
}

// LocalKeyDir is where local-kms:// keys live: --local_kms_dir, else
// DATA_DIR/kms.
func (c Config) LocalKeyDir() string {
	if c.LocalKMSDir != "" {
		return c.LocalKMSDir
	}
	return filepath.Join(c.DataDir, "kms")
}
