package kms

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"regexp"
	"strings"
	"time"

	kmsapi "cloud.google.com/go/kms/apiv1"
	"cloud.google.com/go/kms/apiv1/kmspb"
	"github.com/googleapis/gax-go/v2"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Cloud KMS: Encrypt and Decrypt on a symmetric CryptoKey, the associated
// data sent as additional_authenticated_data. Cloud KMS picks the primary
// version to encrypt and finds the version from the ciphertext to decrypt, so
// rotation needs nothing from us beyond re-wrapping.

// gcpCallTimeout bounds one Encrypt or Decrypt including its retry.
const gcpCallTimeout = 30 * time.Second

var gcpIDRE = regexp.MustCompile(`^[A-Za-z0-9_.:-]{1,100}$`)

// parseGCPKeyName checks "projects/P/locations/L/keyRings/R/cryptoKeys/K".
func parseGCPKeyName(name string) (string, error) {
	parts := strings.Split(name, "/")
	if len(parts) == 10 && parts[8] == "cryptoKeyVersions" {
		return "", fmt.Errorf("name the key, not a key version (Cloud KMS picks the version); use %s", gcpURIForm)
	}
	if len(parts) != 8 || parts[0] != "projects" || parts[2] != "locations" || parts[4] != "keyRings" || parts[6] != "cryptoKeys" {
		return "", fmt.Errorf("use %s", gcpURIForm)
	}
	for _, id := range []string{parts[1], parts[3], parts[5], parts[7]} {
		if !gcpIDRE.MatchString(id) {
			return "", fmt.Errorf("bad resource id %q; use %s", id, gcpURIForm)
		}
	}
	return name, nil
}

type gcpClient struct {
	*kmsapi.KeyManagementClient
}

func newGCPClient(ctx context.Context, cfg Config) (*gcpClient, error) {
	var opts []option.ClientOption
	if cfg.GCPEndpoint != "" {
		opts = append(opts, option.WithEndpoint(cfg.GCPEndpoint))
	}
	switch {
	case cfg.GCPInsecure:
		if cfg.GCPEndpoint == "" {
			return nil, errors.New("GCPInsecure needs GCPEndpoint (a local test server)")
		}
		opts = append(opts, option.WithoutAuthentication(),
			option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())))
	case cfg.GCPCredentialsFile != "":
		opts = append(opts, option.WithAuthCredentialsFile(option.ServiceAccount, cfg.GCPCredentialsFile))
	}
	// The client outlives the request that first needed it.
	c, err := kmsapi.NewKeyManagementClient(context.WithoutCancel(ctx), opts...)
	if err != nil {
		return nil, fmt.Errorf("creating Cloud KMS client: %w", err)
	}
	// The default retries UNAVAILABLE for up to 60 s; a key outage must be
	// reported quickly instead (the caller caches the failure briefly).
	callOpts := []gax.CallOption{
		gax.WithTimeout(gcpCallTimeout),
		gax.WithRetry(func() gax.Retryer { return &retryOnce{} }),
	}
	c.CallOptions.Encrypt = callOpts
	c.CallOptions.Decrypt = callOpts
	return &gcpClient{c}, nil
}

// retryOnce retries a call once after a short pause when the service was
// briefly unavailable.
type retryOnce struct{ done bool }

func (r *retryOnce) Retry(err error) (time.Duration, bool) {
	if r.done || status.Code(err) != codes.Unavailable {
		return 0, false
	}
	r.done = true
	return 100 * time.Millisecond, true
}

type gcpWrapper struct {
	uri     string
	keyName string
	client  *gcpClient
}

func (w *gcpWrapper) URI() string { return w.uri }

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func crc32c(b []byte) *wrapperspb.Int64Value {
	return wrapperspb.Int64(int64(crc32.Checksum(b, castagnoli)))
}

// errCorrupted reports a checksum mismatch: Cloud KMS asks clients to verify
// the CRC32C fields and retry on mismatch, as data was damaged in transit.
var errCorrupted = errors.New("request or response corrupted in transit (CRC32C mismatch); retry")

func (w *gcpWrapper) Wrap(ctx context.Context, plaintext, associatedData []byte) ([]byte, error) {
	resp, err := w.client.Encrypt(ctx, &kmspb.EncryptRequest{
		Name:                              w.keyName,
		Plaintext:                         plaintext,
		AdditionalAuthenticatedData:       associatedData,
		PlaintextCrc32C:                   crc32c(plaintext),
		AdditionalAuthenticatedDataCrc32C: crc32c(associatedData),
	})
	if err != nil {
		return nil, w.mapError("wrap", err)
	}
	if !resp.GetVerifiedPlaintextCrc32C() || !resp.GetVerifiedAdditionalAuthenticatedDataCrc32C() ||
		resp.GetCiphertextCrc32C() == nil || resp.GetCiphertextCrc32C().GetValue() != crc32c(resp.GetCiphertext()).GetValue() {
		return nil, &Error{Kind: KindUnavailable, URI: w.uri, Op: "wrap", Provider: ProviderGCP, Err: errCorrupted}
	}
	if !strings.HasPrefix(resp.GetName(), w.keyName+"/") {
		return nil, &Error{Kind: KindOther, URI: w.uri, Op: "wrap", Provider: ProviderGCP,
			Err: fmt.Errorf("Cloud KMS encrypted with %q, not a version of the requested key", resp.GetName())}
	}
	return resp.GetCiphertext(), nil
}

func (w *gcpWrapper) Unwrap(ctx context.Context, ciphertext, associatedData []byte) ([]byte, error) {
	resp, err := w.client.Decrypt(ctx, &kmspb.DecryptRequest{
		Name:                              w.keyName,
		Ciphertext:                        ciphertext,
		AdditionalAuthenticatedData:       associatedData,
		CiphertextCrc32C:                  crc32c(ciphertext),
		AdditionalAuthenticatedDataCrc32C: crc32c(associatedData),
	})
	if err != nil {
		return nil, w.mapError("unwrap", err)
	}
	if resp.GetPlaintextCrc32C() == nil || resp.GetPlaintextCrc32C().GetValue() != crc32c(resp.GetPlaintext()).GetValue() {
		clear(resp.Plaintext)
		return nil, &Error{Kind: KindUnavailable, URI: w.uri, Op: "unwrap", Provider: ProviderGCP, Err: errCorrupted}
	}
	return resp.GetPlaintext(), nil
}

// mapError classifies a Cloud KMS gRPC error; Err keeps the service's message.
func (w *gcpWrapper) mapError(op string, err error) *Error {
	kind := KindOther
	switch status.Code(err) {
	case codes.PermissionDenied, codes.Unauthenticated:
		kind = KindPermissionDenied
	case codes.NotFound:
		kind = KindNotFound
	case codes.FailedPrecondition:
		kind = KindDisabled // the key version is disabled, destroyed or not yet enabled
	case codes.Unavailable, codes.DeadlineExceeded, codes.ResourceExhausted, codes.Internal, codes.Canceled:
		kind = KindUnavailable
	case codes.InvalidArgument:
		if op == "unwrap" {
			kind = KindInvalidCiphertext
		}
	}
	return &Error{Kind: kind, URI: w.uri, Op: op, Provider: ProviderGCP, Err: err}
}
