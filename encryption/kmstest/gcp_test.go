package kmstest_test

import (
	"bytes"
	"context"
	"testing"

	kmsapi "cloud.google.com/go/kms/apiv1"
	"cloud.google.com/go/kms/apiv1/kmspb"
	"github.com/googleapis/gax-go/v2"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/sealcache/sealcache/encryption/kmstest"
)

func newGCPClient(t *testing.T, srv *kmstest.GCPServer) *kmsapi.KeyManagementClient {
	t.Helper()
	c, err := kmsapi.NewKeyManagementClient(context.Background(),
		option.WithEndpoint(srv.Endpoint()), option.WithoutAuthentication(),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func wantCode(t *testing.T, err error, code codes.Code) {
	t.Helper()
	if status.Code(err) != code {
		t.Fatalf("error %v, want code %v", err, code)
	}
}

// The key lifecycle an admin runs in Cloud KMS, over the real API.
func TestGCPKeyLifecycleThroughClient(t *testing.T) {
	srv := kmstest.NewGCP(t)
	c := newGCPClient(t, srv)
	ctx := context.Background()
	aad := []byte("org-a")

	_, err := c.CreateCryptoKey(ctx, &kmspb.CreateCryptoKeyRequest{Parent: "projects/p/locations/global/keyRings/r", CryptoKeyId: "k",
		CryptoKey: &kmspb.CryptoKey{Purpose: kmspb.CryptoKey_ENCRYPT_DECRYPT}})
	wantCode(t, err, codes.NotFound) // no key ring yet

	ring, err := c.CreateKeyRing(ctx, &kmspb.CreateKeyRingRequest{Parent: "projects/p/locations/global", KeyRingId: "r"})
	if err != nil {
		t.Fatal(err)
	}
	key, err := c.CreateCryptoKey(ctx, &kmspb.CreateCryptoKeyRequest{Parent: ring.Name, CryptoKeyId: "k",
		CryptoKey: &kmspb.CryptoKey{Purpose: kmspb.CryptoKey_ENCRYPT_DECRYPT}})
	if err != nil {
		t.Fatal(err)
	}
	v1 := key.Name + "/cryptoKeyVersions/1"
	if key.Primary.GetName() != v1 {
		t.Fatalf("primary = %q, want %q", key.Primary.GetName(), v1)
	}

	enc1, err := c.Encrypt(ctx, &kmspb.EncryptRequest{Name: key.Name, Plaintext: []byte("secret"), AdditionalAuthenticatedData: aad})
	if err != nil || enc1.Name != v1 {
		t.Fatalf("Encrypt: %v, version %q", err, enc1.GetName())
	}

	// A new version is not primary until made so.
	v2, err := c.CreateCryptoKeyVersion(ctx, &kmspb.CreateCryptoKeyVersionRequest{Parent: key.Name})
	if err != nil {
		t.Fatal(err)
	}
	if enc, _ := c.Encrypt(ctx, &kmspb.EncryptRequest{Name: key.Name, Plaintext: []byte("x")}); enc.GetName() != v1 {
		t.Errorf("Encrypt used %q before the primary changed", enc.GetName())
	}
	if _, err := c.UpdateCryptoKeyPrimaryVersion(ctx, &kmspb.UpdateCryptoKeyPrimaryVersionRequest{Name: key.Name, CryptoKeyVersionId: "2"}); err != nil {
		t.Fatal(err)
	}
	enc2, err := c.Encrypt(ctx, &kmspb.EncryptRequest{Name: key.Name, Plaintext: []byte("secret"), AdditionalAuthenticatedData: aad})
	if err != nil || enc2.Name != v2.Name {
		t.Fatalf("Encrypt after rotation: %v, version %q, want %q", err, enc2.GetName(), v2.Name)
	}

	_, err = c.UpdateCryptoKeyVersion(ctx, &kmspb.UpdateCryptoKeyVersionRequest{
		CryptoKeyVersion: &kmspb.CryptoKeyVersion{Name: v1, State: kmspb.CryptoKeyVersion_DISABLED},
		UpdateMask:       &fieldmaskpb.FieldMask{Paths: []string{"state"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Decrypt(ctx, &kmspb.DecryptRequest{Name: key.Name, Ciphertext: enc1.Ciphertext, AdditionalAuthenticatedData: aad})
	wantCode(t, err, codes.FailedPrecondition)
	dec, err := c.Decrypt(ctx, &kmspb.DecryptRequest{Name: key.Name, Ciphertext: enc2.Ciphertext, AdditionalAuthenticatedData: aad})
	if err != nil || !bytes.Equal(dec.Plaintext, []byte("secret")) || !dec.UsedPrimary {
		t.Fatalf("Decrypt with v2: %v", err)
	}
	_, err = c.UpdateCryptoKeyPrimaryVersion(ctx, &kmspb.UpdateCryptoKeyPrimaryVersionRequest{Name: key.Name, CryptoKeyVersionId: "1"})
	wantCode(t, err, codes.FailedPrecondition) // a disabled version cannot become primary

	got, err := c.GetCryptoKey(ctx, &kmspb.GetCryptoKeyRequest{Name: key.Name})
	if err != nil || got.Primary.GetName() != v2.Name {
		t.Fatalf("GetCryptoKey: %v, primary %q", err, got.GetPrimary().GetName())
	}
}

func TestGCPChecksCRC32C(t *testing.T) {
	srv := kmstest.NewGCP(t)
	uri := srv.CreateKey("projects/p/locations/global/keyRings/r/cryptoKeys/k")
	name := uri[len("gcp-kms://"):]
	c := newGCPClient(t, srv)

	_, err := c.Encrypt(context.Background(), &kmspb.EncryptRequest{Name: name, Plaintext: []byte("secret"), PlaintextCrc32C: wrapperspb.Int64(1)})
	wantCode(t, err, codes.InvalidArgument)
}

func TestGCPDownAndCalls(t *testing.T) {
	srv := kmstest.NewGCP(t)
	uri := srv.CreateKey("projects/p/locations/global/keyRings/r/cryptoKeys/k")
	name := uri[len("gcp-kms://"):]
	c := newGCPClient(t, srv)
	ctx := context.Background()

	if _, err := c.GetCryptoKey(ctx, &kmspb.GetCryptoKeyRequest{Name: name}); err != nil {
		t.Fatal(err)
	}
	srv.Down()
	noRetry := gax.WithRetry(func() gax.Retryer { return nil })
	_, err := c.GetCryptoKey(ctx, &kmspb.GetCryptoKeyRequest{Name: name}, noRetry)
	wantCode(t, err, codes.Unavailable)
	if n := srv.Calls("GetCryptoKey"); n != 2 {
		t.Errorf("Calls(GetCryptoKey) = %d, want 2", n)
	}
	srv.Up()
	if _, err := c.GetCryptoKey(ctx, &kmspb.GetCryptoKeyRequest{Name: name}); err != nil {
		t.Fatalf("after Up: %v", err)
	}
}
