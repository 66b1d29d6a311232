package kms

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awskms "github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// AWS KMS: Encrypt and Decrypt on a symmetric key. AWS KMS has no free-form
// associated data; its equivalent is the encryption context, a string map
// bound to the ciphertext. The associated data (an org id, a printable
// string) goes in as {"sealcache_org": string(associatedData)}; associated
// data that is not valid UTF-8 is refused. Decrypt names the key too, so a
// ciphertext made by another key is refused rather than silently decrypted
// with whatever key it names.

// AWSContextKey is the encryption context key that carries the associated data.
const AWSContextKey = "sealcache_org"

var awsARNRE = regexp.MustCompile(`^arn:(aws|aws-cn|aws-us-gov|aws-iso[a-z-]*):kms:([a-z0-9-]+):([0-9]{12}):` +
	`(key/(?:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|mrk-[0-9a-f]{32})|alias/[A-Za-z0-9/_-]{1,250})$`)

type awsKeyARN struct {
	arn    string
	region string
}

func parseAWSKeyARN(s string) (awsKeyARN, error) {
	m := awsARNRE.FindStringSubmatch(s)
	if m == nil {
		return awsKeyARN{}, fmt.Errorf("use %s", awsURIForm)
	}
	return awsKeyARN{arn: s, region: m[2]}, nil
}

type awsClient struct {
	*awskms.Client
}

func newAWSClient(ctx context.Context, cfg Config, region string) (*awsClient, error) {
	opts := []func(*config.LoadOptions) error{
		config.WithRegion(region),
		// Two attempts with a short pause: a key outage must be reported
		// quickly (the caller caches the failure briefly), not retried for
		// tens of seconds.
		config.WithRetryer(func() aws.Retryer {
			return retry.NewStandard(func(o *retry.StandardOptions) {
				o.MaxAttempts = 2
				o.MaxBackoff = 200 * time.Millisecond
				o.RateLimiter = ratelimit.None
			})
		}),
	}
	if cfg.AWSAccessKeyID != "" || cfg.AWSSecretAccessKey != "" {
		opts = append(opts, config.WithCredentialsProvider(
			credentials.NewStaticCredentialsProvider(cfg.AWSAccessKeyID, cfg.AWSSecretAccessKey, "")))
	}
	awsCfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("loading AWS configuration: %w", err)
	}
	c := awskms.NewFromConfig(awsCfg, func(o *awskms.Options) {
		if cfg.AWSEndpoint != "" {
			o.BaseEndpoint = aws.String(cfg.AWSEndpoint)
		}
	})
	return &awsClient{c}, nil
}

type awsWrapper struct {
	uri    string
	keyID  string // the ARN from the URI: key ARN or alias ARN
	client *awsClient
}

func (w *awsWrapper) URI() string { return w.uri }

func (w *awsWrapper) encryptionContext(op string, associatedData []byte) (map[string]string, error) {
	if len(associatedData) == 0 {
		return nil, nil
	}
	if !utf8.Valid(associatedData) {
		return nil, &Error{Kind: KindOther, URI: w.uri, Op: op, Provider: ProviderAWS,
			Err: errors.New("associated data must be a UTF-8 string to serve as AWS encryption context")}
	}
	return map[string]string{AWSContextKey: string(associatedData)}, nil
}

func (w *awsWrapper) Wrap(ctx context.Context, plaintext, associatedData []byte) ([]byte, error) {
	ec, err := w.encryptionContext("wrap", associatedData)
	if err != nil {
		return nil, err
	}
	out, err := w.client.Encrypt(ctx, &awskms.EncryptInput{
		KeyId:             aws.String(w.keyID),
		Plaintext:         plaintext,
		EncryptionContext: ec,
	})
	if err != nil {
		return nil, w.mapError("wrap", err)
	}
	return out.CiphertextBlob, nil
}

func (w *awsWrapper) Unwrap(ctx context.Context, ciphertext, associatedData []byte) ([]byte, error) {
	ec, err := w.encryptionContext("unwrap", associatedData)
	if err != nil {
		return nil, err
	}
	out, err := w.client.Decrypt(ctx, &awskms.DecryptInput{
		KeyId:             aws.String(w.keyID),
		CiphertextBlob:    ciphertext,
		EncryptionContext: ec,
	})
	if err != nil {
		return nil, w.mapError("unwrap", err)
	}
	return out.Plaintext, nil
}

// mapError classifies an AWS KMS error by its error code; Err keeps the
// service's message.
func (w *awsWrapper) mapError(op string, err error) *Error {
	e := &Error{Kind: KindOther, URI: w.uri, Op: op, Provider: ProviderAWS, Err: err}
	var apiErr smithy.APIError
	var respErr *smithyhttp.ResponseError
	var sendErr *smithyhttp.RequestSendError
	switch {
	case errors.As(err, &apiErr):
		switch apiErr.ErrorCode() {
		case "AccessDeniedException", "UnrecognizedClientException", "InvalidSignatureException",
			"IncompleteSignature", "ExpiredTokenException", "MissingAuthenticationToken":
			e.Kind = KindPermissionDenied
		case "NotFoundException":
			e.Kind = KindNotFound
		case "DisabledException", "KMSInvalidStateException":
			e.Kind = KindDisabled // disabled, pending deletion, or pending import
		case "InvalidCiphertextException", "IncorrectKeyException":
			e.Kind = KindInvalidCiphertext
		case "KMSInternalException", "DependencyTimeoutException", "KeyUnavailableException",
			"ThrottlingException", "ServiceUnavailableException":
			e.Kind = KindUnavailable
		default:
			if errors.As(err, &respErr) && respErr.HTTPStatusCode() >= http.StatusInternalServerError {
				e.Kind = KindUnavailable
			}
		}
	case errors.As(err, &respErr) && respErr.HTTPStatusCode() >= http.StatusInternalServerError,
		errors.As(err, &sendErr),
		errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		e.Kind = KindUnavailable
	}
	return e
}
