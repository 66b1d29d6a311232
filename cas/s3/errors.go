package s3

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"

	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/sealcache/sealcache/cas"
)

// Errors a caller may want to tell apart. Each is wrapped with a message
// that names the bucket, the object and what to check.
var (
	// ErrAccessDenied: the service refused the credentials or the request
	// (HTTP 403). It is never a miss.
	ErrAccessDenied = errors.New("access denied by the S3 service")
	// ErrUnreachable: no connection to the endpoint could be made.
	ErrUnreachable = errors.New("cannot reach the S3 endpoint")
	// ErrNoSuchBucket: the configured bucket does not exist.
	ErrNoSuchBucket = errors.New("S3 bucket does not exist")
)

// S3 error codes this package reacts to.
const (
	codeNoSuchKey    = "NoSuchKey"
	codeNotFound     = "NotFound" // HEAD's 404, which has no body to say more
	codeNoSuchBucket = "NoSuchBucket"
	codeInvalidRange = "InvalidRange"
	codeWrongRegion  = "AuthorizationHeaderMalformed"
	codeRedirect     = "PermanentRedirect"
	codeMovedBucket  = "301" // HEAD's 301 for a bucket in another region
	codeAccessDenied = "AccessDenied"
	codeBadAccessKey = "InvalidAccessKeyId"
	codeBadSignature = "SignatureDoesNotMatch"
	codeExpiredToken = "ExpiredToken"
	codeTimeSkewed   = "RequestTimeTooSkewed"
	codeInvalidToken = "InvalidToken"
	// versitygw answers an unknown access key id with this code and a 404,
	// where AWS sends InvalidAccessKeyId and a 403.
	codeUnknownUser   = "XAdminUserNotFound"
	codeNoSuchUpload  = "NoSuchUpload"
	codeSlowDown      = "SlowDown"
	codeServiceBusy   = "ServiceUnavailable"
	codeInternalError = "InternalError"
)

// failure turns an error of the S3 operation op ("GetObject") on object
// name (or "" for bucket-wide operations) into one that says what went
// wrong and what to check. Misses wrap cas.ErrNotFound; nothing else does.
func (s *Store) failure(op, name string, err error) error {
	where := s.where(name)
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("S3 %s of %s: %w", op, where, err)
	}
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		return s.apiFailure(op, name, where, apiErr, err)
	}
	var signErr *v4.SigningError
	if errors.As(err, &signErr) {
		return fmt.Errorf("S3 %s of %s: no usable credentials: %w: %v; give --s3_access_key_id and --s3_secret_access_key, "+
			"or make the AWS default chain find some (AWS_ACCESS_KEY_ID, ~/.aws/credentials, an instance role)", op, where, ErrAccessDenied, err)
	}
	// The network error alone says more than the SDK's wrapping of it.
	var opErr *net.OpError
	var dnsErr *net.DNSError
	switch {
	case errors.As(err, &dnsErr):
		return fmt.Errorf("S3 %s of %s: %w %s: %v; check --s3_endpoint and this host's DNS",
			op, where, ErrUnreachable, s.endpointName(), dnsErr)
	case errors.As(err, &opErr) && opErr.Op == "dial":
		return fmt.Errorf("S3 %s of %s: %w %s: %v; check --s3_endpoint and that the service is running and reachable from this host",
			op, where, ErrUnreachable, s.endpointName(), opErr)
	}
	var certErr *x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	if errors.As(err, &certErr) || errors.As(err, &hostErr) {
		return fmt.Errorf("S3 %s of %s: the TLS certificate of %s is not trusted: %v; check --s3_endpoint, or install the service's CA certificate on this host",
			op, where, s.endpointName(), err)
	}
	return fmt.Errorf("S3 %s of %s at %s: %w", op, where, s.endpointName(), err)
}

func (s *Store) apiFailure(op, name, where string, apiErr smithy.APIError, err error) error {
	status := 0
	var respErr *smithyhttp.ResponseError
	if errors.As(err, &respErr) {
		status = respErr.HTTPStatusCode()
	}
	switch code := apiErr.ErrorCode(); {
	// A HEAD's 404 says only "NotFound"; FindMissing confirms it.
	case code == codeNoSuchKey || code == codeNotFound && name != "":
		return fmt.Errorf("%s: %w", where, cas.ErrNotFound)
	case code == codeNoSuchBucket || code == codeNotFound && name == "":
		return fmt.Errorf("S3 %s of %s: %w: create bucket %q at %s (the store never creates buckets) or fix the bucket in --blob_store",
			op, where, ErrNoSuchBucket, s.bucket, s.endpointName())
	case code == codeWrongRegion || code == codeRedirect || code == codeMovedBucket || status == http.StatusMovedPermanently:
		return fmt.Errorf("S3 %s of %s: the bucket is in another region than %q: set --s3_region to the bucket's region (%v)",
			op, where, s.region, err)
	case code == codeTimeSkewed:
		return fmt.Errorf("S3 %s of %s: %w: this host's clock differs too much from the service's; synchronise it (NTP): %v",
			op, where, ErrAccessDenied, err)
	case code == codeBadAccessKey || code == codeBadSignature || code == codeExpiredToken || code == codeInvalidToken || code == codeUnknownUser:
		return fmt.Errorf("S3 %s of %s: %w: the service does not accept the credentials (%s); check --s3_access_key_id and --s3_secret_access_key, or the credentials the AWS default chain finds",
			op, where, ErrAccessDenied, code)
	case code == codeAccessDenied || status == http.StatusForbidden:
		return fmt.Errorf("S3 %s of %s: %w (%s); check the credentials (--s3_access_key_id, --s3_secret_access_key) and that the bucket's policy grants them %s",
			op, where, ErrAccessDenied, code, permissionFor(op))
	case code == codeSlowDown || code == codeServiceBusy || code == codeInternalError || status >= 500:
		return fmt.Errorf("S3 %s of %s: the service at %s failed or is overloaded after retries (%s); the client may retry later: %w",
			op, where, s.endpointName(), code, err)
	}
	return fmt.Errorf("S3 %s of %s at %s: %w", op, where, s.endpointName(), err)
}

// permissionFor names the IAM action an S3 operation needs, for messages.
func permissionFor(op string) string {
	switch op {
	case opGet, opHead:
		return "s3:GetObject"
	case opPut, opCreateMultipart, opUploadPart, opCompleteMultipart:
		return "s3:PutObject"
	case opAbortMultipart:
		return "s3:AbortMultipartUpload"
	case opDelete, opDeleteMany:
		return "s3:DeleteObject"
	case opList, opHeadBucket:
		return "s3:ListBucket"
	}
	return "run " + op
}

// The S3 operations this store sends, as messages name them.
const (
	opGet               = "GetObject"
	opHead              = "HeadObject"
	opPut               = "PutObject"
	opCreateMultipart   = "CreateMultipartUpload"
	opUploadPart        = "UploadPart"
	opCompleteMultipart = "CompleteMultipartUpload"
	opAbortMultipart    = "AbortMultipartUpload"
	opDelete            = "DeleteObject"
	opDeleteMany        = "DeleteObjects"
	opList              = "ListObjectsV2"
	opHeadBucket        = "HeadBucket"
)

// isAPIError reports whether err is the service's answer with code.
func isAPIError(err error, code string) bool {
	var apiErr smithy.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode() == code
}

// isNotFound reports whether err is a miss.
func isNotFound(err error) bool { return errors.Is(err, cas.ErrNotFound) }

// where names an object (or the bucket, for name "") in messages.
func (s *Store) where(name string) string {
	return fmt.Sprintf("s3://%s/%s", s.bucket, name)
}

// endpointName names the service in messages.
func (s *Store) endpointName() string {
	if s.endpoint != "" {
		return s.endpoint
	}
	return fmt.Sprintf("AWS S3 in region %s", s.region)
}
