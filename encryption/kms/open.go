package kms

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
)

// Config tells Open how to reach each provider. The zero value talks to the
// real Cloud KMS and AWS KMS with their default credential chains and
// disables local-kms.
type Config struct {
	// LocalDir is the directory holding local-kms key files (mode 0700, files
	// 0600). Empty disables local-kms:// URIs.
	LocalDir string

	// GCPEndpoint overrides the Cloud KMS endpoint ("host:port"), e.g. a
	// kmstest.GCPServer. Empty means cloudkms.googleapis.com.
	GCPEndpoint string
	// GCPInsecure dials GCPEndpoint in plaintext and sends no credentials.
	// Only for local test servers.
	GCPInsecure bool
	// GCPCredentialsFile is a service account JSON key file. Empty means
	// Application Default Credentials.
	GCPCredentialsFile string

	// AWSEndpoint overrides the AWS KMS endpoint URL ("http://127.0.0.1:PORT"),
	// e.g. a kmstest.AWSServer. Empty means the regional AWS endpoint.
	AWSEndpoint string
	// AWSRegion overrides the region taken from the key ARN. Rarely needed:
	// AWS KMS keys live in the region their ARN names.
	AWSRegion string
	// AWSAccessKeyID and AWSSecretAccessKey are static credentials, meant for
	// tests. Empty means the SDK's default credential chain (environment,
	// shared config, instance or task role).
	AWSAccessKeyID     string
	AWSSecretAccessKey string
}

// Provider names, as used in URIs (before "://") and in Error.Provider.
const (
	ProviderGCP   = "gcp-kms"
	ProviderAWS   = "aws-kms"
	ProviderLocal = "local-kms"
)

// Expected URI forms, quoted in KindInvalidURI errors so the user sees what to type.
const (
	gcpURIForm   = "gcp-kms://projects/PROJECT/locations/LOCATION/keyRings/RING/cryptoKeys/KEY"
	awsURIForm   = "aws-kms://arn:aws:kms:REGION:ACCOUNT:key/KEY_ID (or ...:alias/NAME)"
	localURIForm = "local-kms://NAME (NAME of letters, digits, '-' and '_')"
)

// Opener opens Wrappers and shares the expensive provider clients between
// them: one Cloud KMS gRPC client, one AWS KMS client per region. Wrappers
// are cached per URI. An Opener is safe for concurrent use; Close it when
// done to release connections.
type Opener struct {
	cfg Config

	mu       sync.Mutex
	wrappers map[string]Wrapper
	gcp      *gcpClient            // created on first gcp-kms URI
	aws      map[string]*awsClient // by region
	closed   bool
}

// NewOpener returns an Opener using cfg. It contacts no KMS.
func NewOpener(cfg Config) *Opener {
	return &Opener{cfg: cfg, wrappers: map[string]Wrapper{}, aws: map[string]*awsClient{}}
}

// Open returns the Wrapper for uri, creating provider clients on first use.
// It checks the URI's syntax but does not call the KMS: a key that does not
// exist or may not be used is reported by the first Wrap or Unwrap. Errors
// are *Error; a malformed URI is KindInvalidURI with the expected form.
func (o *Opener) Open(ctx context.Context, uri string) (Wrapper, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return nil, &Error{Kind: KindOther, URI: uri, Op: "open", Provider: providerOf(uri), Err: errors.New("kms.Opener is closed")}
	}
	if w, ok := o.wrappers[uri]; ok {
		return w, nil
	}
	w, err := o.open(ctx, uri)
	if err != nil {
		return nil, err
	}
	o.wrappers[uri] = w
	return w, nil
}

func (o *Opener) open(ctx context.Context, uri string) (Wrapper, error) {
	scheme, rest, ok := strings.Cut(uri, "://")
	if !ok {
		return nil, invalidURI(uri, "", fmt.Errorf("missing scheme; use one of %s, %s, %s", gcpURIForm, awsURIForm, localURIForm))
	}
	switch scheme {
	case ProviderLocal:
		return openLocal(uri, rest, o.cfg)
	case ProviderGCP:
		name, err := parseGCPKeyName(rest)
		if err != nil {
			return nil, invalidURI(uri, ProviderGCP, err)
		}
		if o.gcp == nil {
			c, err := newGCPClient(ctx, o.cfg)
			if err != nil {
				return nil, &Error{Kind: KindOther, URI: uri, Op: "open", Provider: ProviderGCP, Err: err}
			}
			o.gcp = c
		}
		return &gcpWrapper{uri: uri, keyName: name, client: o.gcp}, nil
	case ProviderAWS:
		key, err := parseAWSKeyARN(rest)
		if err != nil {
			return nil, invalidURI(uri, ProviderAWS, err)
		}
		region := key.region
		if o.cfg.AWSRegion != "" {
			region = o.cfg.AWSRegion
		}
		c, ok := o.aws[region]
		if !ok {
			c, err = newAWSClient(ctx, o.cfg, region)
			if err != nil {
				return nil, &Error{Kind: KindOther, URI: uri, Op: "open", Provider: ProviderAWS, Err: err}
			}
			o.aws[region] = c
		}
		return &awsWrapper{uri: uri, keyID: key.arn, client: c}, nil
	}
	return nil, invalidURI(uri, "", fmt.Errorf("unknown KMS provider %q; use one of %s, %s, %s", scheme, gcpURIForm, awsURIForm, localURIForm))
}

// Close releases the provider clients. Wrappers opened from o stop working.
func (o *Opener) Close() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.closed = true
	o.wrappers = nil
	var err error
	if o.gcp != nil {
		err = o.gcp.Close()
		o.gcp = nil
	}
	o.aws = nil // the AWS client holds only idle HTTP connections
	return err
}

// Open opens one Wrapper with its own provider clients: for one-off use such
// as a CLI command. Servers should keep one Opener instead. The returned
// Wrapper also implements io.Closer; close it to release its connections.
func Open(ctx context.Context, uri string, cfg Config) (Wrapper, error) {
	o := NewOpener(cfg)
	w, err := o.Open(ctx, uri)
	if err != nil {
		o.Close()
		return nil, err
	}
	return ownedWrapper{Wrapper: w, opener: o}, nil
}

// ownedWrapper is a Wrapper that owns the Opener it came from.
type ownedWrapper struct {
	Wrapper
	opener *Opener
}

func (w ownedWrapper) Close() error { return w.opener.Close() }

var _ io.Closer = ownedWrapper{}

func invalidURI(uri, provider string, err error) *Error {
	if provider == "" {
		provider = providerOf(uri)
	}
	return &Error{Kind: KindInvalidURI, URI: uri, Op: "open", Provider: provider, Err: err}
}

// providerOf returns the scheme of uri if it is a known provider, else "kms".
func providerOf(uri string) string {
	scheme, _, _ := strings.Cut(uri, "://")
	switch scheme {
	case ProviderGCP, ProviderAWS, ProviderLocal:
		return scheme
	}
	return "kms"
}
