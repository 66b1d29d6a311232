package kms_test

import (
	"context"
	"io"
	"sync"
	"testing"

	"github.com/sealcache/sealcache/encryption/kms"
	"github.com/sealcache/sealcache/encryption/kmstest"
)

func TestOpenRejectsMalformedURIs(t *testing.T) {
	cfg := kms.Config{LocalDir: t.TempDir()}
	const (
		gcpForm   = "gcp-kms://projects/PROJECT/locations/LOCATION/keyRings/RING/cryptoKeys/KEY"
		awsForm   = "aws-kms://arn:aws:kms:REGION:ACCOUNT:key/KEY_ID"
		localForm = "local-kms://NAME"
	)
	for _, tc := range []struct{ uri, mentions string }{
		{"", gcpForm},
		{"projects/p/locations/l/keyRings/r/cryptoKeys/k", gcpForm},
		{"vault-kms://transit/keys/k", "unknown KMS provider"},

		{"gcp-kms://", gcpForm},
		{"gcp-kms://projects/p/locations/l/keyRings/r", gcpForm},
		{"gcp-kms://projects/p/locations/l/keyRings/r/cryptoKeys/", gcpForm},
		{"gcp-kms://projects/p/locations/l/keyRings/r/cryptoKeys/k/cryptoKeyVersions/1", "not a key version"},
		{"gcp-kms://project/p/location/l/keyRings/r/cryptoKeys/k", gcpForm},
		{"gcp-kms://projects/p/locations/l/keyRings/r/cryptoKeys/k?x=1", gcpForm},

		{"aws-kms://", awsForm},
		{"aws-kms://1234abcd-12ab-34cd-56ef-1234567890ab", awsForm},
		{"aws-kms://arn:aws:kms:us-east-1:111122223333:key/", awsForm},
		{"aws-kms://arn:aws:kms:us-east-1:1111:key/1234abcd-12ab-34cd-56ef-1234567890ab", awsForm},
		{"aws-kms://arn:aws:s3:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab", awsForm},
		{"aws-kms://arn:aws:kms::111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab", awsForm},
		{"aws-kms://arn:aws:kms:us-east-1:111122223333:key/mrk-123", awsForm},

		{"local-kms://", localForm},
		{"local-kms://../etc/passwd", localForm},
		{"local-kms://a/b", localForm},
		{"local-kms://op.disabled", localForm},
	} {
		_, err := kms.Open(context.Background(), tc.uri, cfg)
		if err == nil {
			t.Errorf("Open(%q) succeeded, want KindInvalidURI", tc.uri)
			continue
		}
		kerr := wantKind(t, err, kms.KindInvalidURI, tc.mentions)
		if kerr.URI != tc.uri || kerr.Op != "open" {
			t.Errorf("Open(%q): error URI %q, Op %q", tc.uri, kerr.URI, kerr.Op)
		}
	}
}

func TestOpenAcceptsEachURIForm(t *testing.T) {
	cfg := kms.Config{LocalDir: t.TempDir(), GCPEndpoint: "127.0.0.1:1", GCPInsecure: true,
		AWSEndpoint: "http://127.0.0.1:1", AWSAccessKeyID: "AKIDEXAMPLE", AWSSecretAccessKey: "secret"}
	for _, uri := range []string{
		"gcp-kms://projects/my-project/locations/europe-west1/keyRings/ring_1/cryptoKeys/key-1",
		"gcp-kms://projects/example.com:proj/locations/global/keyRings/r/cryptoKeys/k",
		"aws-kms://arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
		"aws-kms://arn:aws:kms:eu-west-1:111122223333:key/mrk-1234abcd12ab34cd56ef1234567890ab",
		"aws-kms://arn:aws:kms:eu-west-1:111122223333:alias/sealcache/org-1",
		"aws-kms://arn:aws-us-gov:kms:us-gov-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
		"local-kms://operator",
	} {
		w, err := kms.Open(context.Background(), uri, cfg)
		if err != nil {
			t.Errorf("Open(%q): %v", uri, err)
			continue
		}
		if w.URI() != uri {
			t.Errorf("URI() = %q, want %q", w.URI(), uri)
		}
		if err := w.(io.Closer).Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	}
}

func TestOpenerCachesWrappers(t *testing.T) {
	o := kms.NewOpener(kms.Config{LocalDir: t.TempDir()})
	a, err := o.Open(context.Background(), "local-kms://a")
	if err != nil {
		t.Fatal(err)
	}
	again, _ := o.Open(context.Background(), "local-kms://a")
	if a != again {
		t.Error("second Open of the same URI returned a new Wrapper")
	}
	o.Close()
	_, err = o.Open(context.Background(), "local-kms://a")
	wantKind(t, err, kms.KindOther, "closed")
}

// One Opener serves many requests at once, as in the server.
func TestOpenerConcurrentUse(t *testing.T) {
	gcp := kmstest.NewGCP(t)
	aws := kmstest.NewAWS(t)
	cfg := kms.Config{LocalDir: t.TempDir()}
	gcp.Configure(&cfg)
	aws.Configure(&cfg)
	if err := kms.CreateLocalKey(cfg.LocalDir, "operator"); err != nil {
		t.Fatal(err)
	}
	uris := []string{
		gcp.CreateKey("projects/p/locations/global/keyRings/r/cryptoKeys/k"),
		"aws-kms://" + aws.CreateKey(),
		"local-kms://operator",
	}
	o := kms.NewOpener(cfg)
	defer o.Close()

	var wg sync.WaitGroup
	errs := make(chan error, 3*len(uris))
	for range 3 {
		for _, uri := range uris {
			wg.Go(func() {
				w, err := o.Open(context.Background(), uri)
				if err != nil {
					errs <- err
					return
				}
				ct, err := w.Wrap(context.Background(), testKey, orgA)
				if err == nil {
					_, err = w.Unwrap(context.Background(), ct, orgA)
				}
				if err != nil {
					errs <- err
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
