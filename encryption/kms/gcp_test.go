package kms_test

import (
	"context"
	"testing"

	"cloud.google.com/go/kms/apiv1/kmspb"

	"github.com/sealcache/sealcache/encryption/kms"
	"github.com/sealcache/sealcache/encryption/kmstest"
)

// These tests drive the official Cloud KMS client against kmstest.GCPServer.

const gcpKeyName = "projects/p/locations/global/keyRings/sealcache/cryptoKeys/org-a"

func newGCP(t *testing.T) (*kmstest.GCPServer, kms.Wrapper) {
	srv := kmstest.NewGCP(t)
	uri := srv.CreateKey(gcpKeyName)
	var cfg kms.Config
	srv.Configure(&cfg)
	return srv, open(t, cfg, uri)
}

func TestGCPWrapUnwrap(t *testing.T) {
	_, w := newGCP(t)
	ct := wrap(t, w, testKey, orgA)
	unwrapEquals(t, w, ct, orgA, testKey)

	_, err := w.Unwrap(context.Background(), ct, orgB)
	wantKind(t, err, kms.KindInvalidCiphertext, "Decryption failed")
}

func TestGCPRotationThenDisablingOldVersion(t *testing.T) {
	srv, w := newGCP(t)
	old := wrap(t, w, testKey, orgA)

	srv.RotateKey(gcpKeyName) // version 2 becomes primary
	// Re-wrap, as the rotation job does: the old ciphertext still opens, and
	// wrapping again uses the new primary version.
	unwrapEquals(t, w, old, orgA, testKey)
	rewrapped := wrap(t, w, testKey, orgA)

	srv.SetVersionState(gcpKeyName+"/cryptoKeyVersions/1", kmspb.CryptoKeyVersion_DISABLED)
	unwrapEquals(t, w, rewrapped, orgA, testKey)
	_, err := w.Unwrap(context.Background(), old, orgA)
	wantKind(t, err, kms.KindDisabled, "cryptoKeyVersions/1 is not enabled", "DISABLED")

	srv.SetVersionState(gcpKeyName+"/cryptoKeyVersions/1", kmspb.CryptoKeyVersion_ENABLED)
	unwrapEquals(t, w, old, orgA, testKey)
}

func TestGCPDisabledPrimaryRefusesWrap(t *testing.T) {
	srv, w := newGCP(t)
	srv.SetVersionState(gcpKeyName+"/cryptoKeyVersions/1", kmspb.CryptoKeyVersion_DISABLED)
	_, err := w.Wrap(context.Background(), testKey, orgA)
	wantKind(t, err, kms.KindDisabled)
}

func TestGCPRevokedPermission(t *testing.T) {
	srv, w := newGCP(t)
	ct := wrap(t, w, testKey, orgA)
	srv.Revoke(gcpKeyName)

	_, err := w.Wrap(context.Background(), testKey, orgA)
	wantKind(t, err, kms.KindPermissionDenied, "Permission 'cloudkms.cryptoKeyVersions.useToEncrypt' denied on resource '"+gcpKeyName+"'")
	_, err = w.Unwrap(context.Background(), ct, orgA)
	wantKind(t, err, kms.KindPermissionDenied, "cloudkms.cryptoKeyVersions.useToDecrypt")

	srv.Grant(gcpKeyName)
	unwrapEquals(t, w, ct, orgA, testKey)
}

func TestGCPUnknownKey(t *testing.T) {
	srv := kmstest.NewGCP(t)
	var cfg kms.Config
	srv.Configure(&cfg)
	w := open(t, cfg, "gcp-kms://"+gcpKeyName)
	_, err := w.Wrap(context.Background(), testKey, orgA)
	wantKind(t, err, kms.KindNotFound, gcpKeyName)
}

func TestGCPOutageIsReportedAfterOneRetry(t *testing.T) {
	srv, w := newGCP(t)
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

func TestGCPUnreachableEndpoint(t *testing.T) {
	cfg := kms.Config{GCPEndpoint: "127.0.0.1:1", GCPInsecure: true} // nothing listens on port 1
	w := open(t, cfg, "gcp-kms://"+gcpKeyName)
	_, err := w.Wrap(context.Background(), testKey, orgA)
	wantKind(t, err, kms.KindUnavailable)
}
