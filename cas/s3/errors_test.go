package s3

import (
	"bytes"
	"cmp"
	"errors"
	"strings"
	"testing"

	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/sealcache/sealcache/cas"
	"github.com/sealcache/sealcache/cas/castest"
	"github.com/sealcache/sealcache/internal/s3test"
)

// checkFailure fails t unless err wraps want, is no miss, and its message
// holds every one of hints.
func checkFailure(t *testing.T, what string, err, want error, hints ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s succeeded; want an error wrapping %v", what, want)
	}
	if errors.Is(err, cas.ErrNotFound) {
		t.Fatalf("%s = %v; that is no miss, it must not wrap cas.ErrNotFound", what, err)
	}
	if !errors.Is(err, want) {
		t.Fatalf("%s = %v; want an error wrapping %v", what, err, want)
	}
	for _, h := range hints {
		if !strings.Contains(err.Error(), h) {
			t.Fatalf("%s = %q; want the message to mention %q", what, err, h)
		}
	}
	t.Logf("%s: %v", what, err) // what an operator would read, for -v
}

// Wrong credentials fail New at once, with a message that names the
// permission problem and the flags to check.
func TestWrongCredentialsFailAtStart(t *testing.T) {
	srv, bucket := s3test.NewBucket(t)
	cfg := testConfig(srv, bucket)
	cfg.SecretAccessKey = "not-the-secret"
	_, err := New(t.Context(), cfg)
	checkFailure(t, "New with a wrong secret key", err, ErrAccessDenied,
		"access denied", "--s3_secret_access_key", bucket)
	if strings.Contains(err.Error(), "not-the-secret") {
		t.Fatalf("the error shows the secret key: %v", err)
	}
}

// Credentials that stop working (a rotated key, a changed secret) turn
// every operation into a permission error; above all, FindMissing and Get
// report no miss, which would make clients upload everything again.
func TestRevokedCredentialsAreNoMisses(t *testing.T) {
	for _, c := range []struct{ name, keyID, secret string }{
		{"unknown access key", "revoked", "revoked"},
		{"wrong secret", "", "not-the-secret"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, srv, bucket := openStore(t)
			data := []byte("stored while the key was good")
			k := castest.CASKey("org1", data)
			if err := s.Put(t.Context(), k, int64(len(data)), bytes.NewReader(data)); err != nil {
				t.Fatal(err)
			}
			keyID := cmp.Or(c.keyID, srv.AccessKeyID)
			s.client = s3.New(s.client.Options(), func(o *s3.Options) {
				o.Credentials = credentials.NewStaticCredentialsProvider(keyID, c.secret, "")
				// A fresh signer: the old one caches signing keys by access
				// key id (not secret) and would go on signing with the right
				// secret.
				o.HTTPSignerV4 = v4.NewSigner(func(so *v4.SignerOptions) { so.DisableURIPathEscaping = true })
				o.AuthSchemes = nil // rebuilt around the new signer
			})

			_, _, err := s.Get(t.Context(), k, 0)
			checkFailure(t, "Get", err, ErrAccessDenied, bucket, "credentials")
			_, _, err = s.Get(t.Context(), k, 5)
			checkFailure(t, "Get at an offset", err, ErrAccessDenied, bucket)
			_, err = s.FindMissing(t.Context(), []cas.Key{k})
			checkFailure(t, "FindMissing", err, ErrAccessDenied, bucket)
			err = s.Put(t.Context(), k, int64(len(data)), bytes.NewReader(data))
			checkFailure(t, "Put", err, ErrAccessDenied, bucket)
			err = s.Put(t.Context(), castest.ACKey("org1", "", 1), cas.SizeUnknown, bytes.NewReader(castest.Bytes(1, 2*testPartSize)))
			checkFailure(t, "multipart Put", err, ErrAccessDenied, bucket)
			_, err = s.OrgUsage(t.Context(), "org1")
			checkFailure(t, "OrgUsage", err, ErrAccessDenied, bucket)
		})
	}
}

// A bucket that does not exist fails New with a message saying so.
func TestMissingBucketFailsAtStart(t *testing.T) {
	srv, _ := s3test.NewBucket(t)
	cfg := testConfig(srv, "no-such-bucket")
	_, err := New(t.Context(), cfg)
	checkFailure(t, "New on a missing bucket", err, ErrNoSuchBucket, "no-such-bucket", "create")
}

// An endpoint that does not answer is "cannot reach", naming the endpoint
// and the flag, both at start and later, and never a miss.
func TestEndpointDown(t *testing.T) {
	srv := s3test.Start(t)
	bucket := srv.NewBucket(t)
	cfg := testConfig(srv, bucket)
	// One attempt per request: retrying a refused connection only makes
	// the test slower, the message is the same.
	cfg.clientOptions = append(cfg.clientOptions, func(o *s3.Options) { o.RetryMaxAttempts = 1 })
	s, err := New(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	data := []byte("stored before the endpoint went down")
	k := castest.CASKey("org1", data)
	if err := s.Put(t.Context(), k, int64(len(data)), bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	srv.Stop()

	_, _, err = s.Get(t.Context(), k, 0)
	checkFailure(t, "Get", err, ErrUnreachable, "cannot reach", srv.Endpoint, "--s3_endpoint")
	_, err = s.FindMissing(t.Context(), []cas.Key{k})
	checkFailure(t, "FindMissing", err, ErrUnreachable, "cannot reach")
	err = s.Put(t.Context(), k, int64(len(data)), bytes.NewReader(data))
	checkFailure(t, "Put", err, ErrUnreachable, "cannot reach")
	_, err = New(t.Context(), cfg)
	checkFailure(t, "New", err, ErrUnreachable, "cannot reach", srv.Endpoint)
}
