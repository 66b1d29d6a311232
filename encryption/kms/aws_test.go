package kms_test

import (
	"context"
	"testing"

	"github.com/sealcache/sealcache/encryption/kms"
	"github.com/sealcache/sealcache/encryption/kmstest"
)

// These tests drive the official AWS SDK KMS client against kmstest.AWSServer.

func newAWS(t *testing.T) (srv *kmstest.AWSServer, cfg kms.Config, keyARN string) {
	srv = kmstest.NewAWS(t)
	srv.Configure(&cfg)
	return srv, cfg, srv.CreateKey()
}

func TestAWSWrapUnwrap(t *testing.T) {
	srv, cfg, arn := newAWS(t)
	for name, uri := range map[string]string{
		"key ARN":              "aws-kms://" + arn,
		"multi-Region key ARN": "aws-kms://" + srv.CreateMultiRegionKey(),
		"alias ARN":            "aws-kms://" + srv.CreateAlias("alias/sealcache/org-a", arn),
	} {
		t.Run(name, func(t *testing.T) {
			w := open(t, cfg, uri)
			ct := wrap(t, w, testKey, orgA)
			unwrapEquals(t, w, ct, orgA, testKey)

			_, err := w.Unwrap(context.Background(), ct, orgB)
			wantKind(t, err, kms.KindInvalidCiphertext, "InvalidCiphertextException")
		})
	}
}

func TestAWSCiphertextOfAnotherKeyIsRefused(t *testing.T) {
	srv, cfg, arn := newAWS(t)
	ct := wrap(t, open(t, cfg, "aws-kms://"+arn), testKey, orgA)
	other := open(t, cfg, "aws-kms://"+srv.CreateKey())
	_, err := other.Unwrap(context.Background(), ct, orgA)
	wantKind(t, err, kms.KindInvalidCiphertext, "IncorrectKeyException")
}

func TestAWSRotation(t *testing.T) {
	srv, cfg, arn := newAWS(t)
	w := open(t, cfg, "aws-kms://"+arn)
	old := wrap(t, w, testKey, orgA)

	srv.RotateKey(arn)
	unwrapEquals(t, w, old, orgA, testKey)
	rewrapped := wrap(t, w, testKey, orgA)
	unwrapEquals(t, w, rewrapped, orgA, testKey)
	unwrapEquals(t, w, old, orgA, testKey) // AWS keeps old backing keys: no per-version disabling
}

func TestAWSDisabledKey(t *testing.T) {
	srv, cfg, arn := newAWS(t)
	w := open(t, cfg, "aws-kms://"+arn)
	ct := wrap(t, w, testKey, orgA)

	srv.DisableKey(arn)
	_, err := w.Wrap(context.Background(), testKey, orgA)
	wantKind(t, err, kms.KindDisabled, arn+" is disabled")
	_, err = w.Unwrap(context.Background(), ct, orgA)
	wantKind(t, err, kms.KindDisabled)

	srv.EnableKey(arn)
	unwrapEquals(t, w, ct, orgA, testKey)
}

func TestAWSRevokedPermission(t *testing.T) {
	srv, cfg, arn := newAWS(t)
	w := open(t, cfg, "aws-kms://"+arn)
	ct := wrap(t, w, testKey, orgA)
	srv.Revoke(arn)

	_, err := w.Wrap(context.Background(), testKey, orgA)
	wantKind(t, err, kms.KindPermissionDenied, "User: "+srv.Principal+" is not authorized to perform: kms:Encrypt on resource: "+arn)
	_, err = w.Unwrap(context.Background(), ct, orgA)
	wantKind(t, err, kms.KindPermissionDenied, "kms:Decrypt")

	srv.Grant(arn)
	unwrapEquals(t, w, ct, orgA, testKey)
}

func TestAWSUnknownKey(t *testing.T) {
	_, cfg, _ := newAWS(t)
	missing := "arn:aws:kms:us-east-1:111122223333:key/00000000-0000-4000-8000-000000000000"
	w := open(t, cfg, "aws-kms://"+missing)
	_, err := w.Wrap(context.Background(), testKey, orgA)
	wantKind(t, err, kms.KindNotFound, "does not exist")
}

func TestAWSWrongCredentials(t *testing.T) {
	_, cfg, arn := newAWS(t)
	cfg.AWSSecretAccessKey = "not-the-secret"
	w := open(t, cfg, "aws-kms://"+arn)
	_, err := w.Wrap(context.Background(), testKey, orgA)
	wantKind(t, err, kms.KindPermissionDenied, "InvalidSignatureException")
}

func TestAWSOutageIsReportedAfterOneRetry(t *testing.T) {
	srv, cfg, arn := newAWS(t)
	w := open(t, cfg, "aws-kms://"+arn)
	ct := wrap(t, w, testKey, orgA)
	srv.Down()

	before := srv.Calls("Encrypt")
	_, err := w.Wrap(context.Background(), testKey, orgA)
	wantKind(t, err, kms.KindUnavailable)
	if n := srv.Calls("Encrypt") - before; n != 2 {
		t.Errorf("Encrypt attempts during outage = %d, want 2 (one retry)", n)
	}
	_, err = w.Unwrap(context.Background(), ct, orgA)
	wantKind(t, err, kms.KindUnavailable)

	srv.Up()
	unwrapEquals(t, w, ct, orgA, testKey)
}

func TestAWSUnreachableEndpoint(t *testing.T) {
	_, cfg, arn := newAWS(t)
	cfg.AWSEndpoint = "http://127.0.0.1:1" // nothing listens on port 1
	w := open(t, cfg, "aws-kms://"+arn)
	_, err := w.Wrap(context.Background(), testKey, orgA)
	wantKind(t, err, kms.KindUnavailable)
}

func TestAWSAssociatedDataMustBeText(t *testing.T) {
	_, cfg, arn := newAWS(t)
	w := open(t, cfg, "aws-kms://"+arn)
	_, err := w.Wrap(context.Background(), testKey, []byte{0xff, 0xfe})
	wantKind(t, err, kms.KindOther, "UTF-8")
}
