package kmstest_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	awskms "github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/smithy-go"

	"github.com/sealcache/sealcache/encryption/kmstest"
)

// signedRequest builds a DescribeKey request signed with creds for region.
func signedRequest(t *testing.T, srv *kmstest.AWSServer, creds aws.Credentials, region string, body []byte) *http.Request {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, srv.Endpoint()+"/", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-amz-json-1.1")
	req.Header.Set("X-Amz-Target", "TrentService.DescribeKey")
	sum := sha256.Sum256(body)
	if err := v4.NewSigner().SignHTTP(context.Background(), creds, req, hex.EncodeToString(sum[:]), "kms", region, time.Now()); err != nil {
		t.Fatal(err)
	}
	return req
}

// awsErrorOf sends req and returns the HTTP status and the AWS error type
// and message ("" for a success).
func awsErrorOf(t *testing.T, req *http.Request) (status int, errType, message string) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		return resp.StatusCode, "", ""
	}
	var body struct {
		Type    string `json:"__type"`
		Message string `json:"message"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("error body is not JSON: %v", err)
	}
	return resp.StatusCode, body.Type, body.Message
}

func TestAWSVerifiesSigV4(t *testing.T) {
	srv := kmstest.NewAWS(t)
	arn := srv.CreateKey()
	body := []byte(`{"KeyId":"` + arn + `"}`)
	good := aws.Credentials{AccessKeyID: srv.AccessKeyID, SecretAccessKey: srv.SecretAccessKey}

	if status, typ, msg := awsErrorOf(t, signedRequest(t, srv, good, srv.Region, body)); status != http.StatusOK {
		t.Fatalf("correctly signed request: %d %s %s", status, typ, msg)
	}

	tampered := signedRequest(t, srv, good, srv.Region, body)
	other := bytes.Replace(body, []byte("key/"), []byte("kez/"), 1) // same length, other bytes
	tampered.Body = io.NopCloser(bytes.NewReader(other))

	noAuth := signedRequest(t, srv, good, srv.Region, body)
	noAuth.Header.Del("Authorization")

	for _, tc := range []struct {
		name     string
		req      *http.Request
		wantType string
	}{
		{"wrong secret", signedRequest(t, srv, aws.Credentials{AccessKeyID: srv.AccessKeyID, SecretAccessKey: "wrong"}, srv.Region, body), "InvalidSignatureException"},
		{"body changed after signing", tampered, "InvalidSignatureException"},
		{"signed for another region", signedRequest(t, srv, good, "eu-west-1", body), "InvalidSignatureException"},
		{"unknown access key", signedRequest(t, srv, aws.Credentials{AccessKeyID: "AKIAOTHER", SecretAccessKey: srv.SecretAccessKey}, srv.Region, body), "UnrecognizedClientException"},
		{"not signed", noAuth, "MissingAuthenticationTokenException"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, typ, msg := awsErrorOf(t, tc.req)
			if status != http.StatusBadRequest || typ != tc.wantType || msg == "" {
				t.Errorf("got %d %q %q, want 400 %q with a message", status, typ, msg, tc.wantType)
			}
		})
	}
	_, _, msg := awsErrorOf(t, signedRequest(t, srv, aws.Credentials{AccessKeyID: srv.AccessKeyID, SecretAccessKey: "wrong"}, srv.Region, body))
	if want := "The request signature we calculated does not match the signature you provided."; !bytes.HasPrefix([]byte(msg), []byte(want)) {
		t.Errorf("message %q, want AWS's %q", msg, want)
	}
}

func newAWSClient(srv *kmstest.AWSServer) *awskms.Client {
	return awskms.New(awskms.Options{
		Region:       srv.Region,
		BaseEndpoint: aws.String(srv.Endpoint()),
		Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: srv.AccessKeyID, SecretAccessKey: srv.SecretAccessKey}, nil
		}),
	})
}

func TestAWSOperationsThroughSDK(t *testing.T) {
	srv := kmstest.NewAWS(t)
	arn := srv.CreateKey()
	c := newAWSClient(srv)
	ctx := context.Background()
	ec := map[string]string{"sealcache_org": "org-a"}

	desc, err := c.DescribeKey(ctx, &awskms.DescribeKeyInput{KeyId: aws.String(arn)})
	if err != nil {
		t.Fatal(err)
	}
	if got := desc.KeyMetadata; aws.ToString(got.Arn) != arn || got.KeyState != types.KeyStateEnabled || !got.Enabled {
		t.Errorf("DescribeKey = %+v", got)
	}

	dk, err := c.GenerateDataKey(ctx, &awskms.GenerateDataKeyInput{KeyId: aws.String(arn), KeySpec: types.DataKeySpecAes256, EncryptionContext: ec})
	if err != nil {
		t.Fatal(err)
	}
	if len(dk.Plaintext) != 32 || aws.ToString(dk.KeyId) != arn {
		t.Fatalf("GenerateDataKey: %d bytes, key %s", len(dk.Plaintext), aws.ToString(dk.KeyId))
	}

	if _, err := c.RotateKeyOnDemand(ctx, &awskms.RotateKeyOnDemandInput{KeyId: aws.String(arn)}); err != nil {
		t.Fatal(err)
	}
	// Decrypt without KeyId: the blob names its key and backing material.
	out, err := c.Decrypt(ctx, &awskms.DecryptInput{CiphertextBlob: dk.CiphertextBlob, EncryptionContext: ec})
	if err != nil {
		t.Fatalf("Decrypt after rotation: %v", err)
	}
	if !bytes.Equal(out.Plaintext, dk.Plaintext) || aws.ToString(out.KeyId) != arn {
		t.Error("Decrypt returned other plaintext or key")
	}

	_, err = c.Decrypt(ctx, &awskms.DecryptInput{CiphertextBlob: dk.CiphertextBlob}) // context missing
	var invalid *types.InvalidCiphertextException
	if !errors.As(err, &invalid) {
		t.Errorf("Decrypt without the encryption context: %v, want InvalidCiphertextException", err)
	}

	srv.DisableKey(arn)
	desc, _ = c.DescribeKey(ctx, &awskms.DescribeKeyInput{KeyId: aws.String(arn)})
	if desc.KeyMetadata.KeyState != types.KeyStateDisabled {
		t.Errorf("disabled key state = %v", desc.KeyMetadata.KeyState)
	}
	_, err = c.Encrypt(ctx, &awskms.EncryptInput{KeyId: aws.String(arn), Plaintext: []byte("x")})
	var disabled *types.DisabledException
	if !errors.As(err, &disabled) {
		t.Errorf("Encrypt with disabled key: %v, want DisabledException", err)
	}

	_, err = c.Encrypt(ctx, &awskms.EncryptInput{KeyId: aws.String("alias/missing"), Plaintext: []byte("x")})
	var notFound *types.NotFoundException
	if !errors.As(err, &notFound) {
		t.Errorf("Encrypt with unknown alias: %v, want NotFoundException", err)
	}

	srv.Revoke(arn)
	_, err = c.DescribeKey(ctx, &awskms.DescribeKeyInput{KeyId: aws.String(arn)})
	var apiErr smithy.APIError
	if !errors.As(err, &apiErr) || apiErr.ErrorCode() != "AccessDeniedException" {
		t.Errorf("DescribeKey of revoked key: %v, want AccessDeniedException", err)
	}
}

func TestAWSCountsCalls(t *testing.T) {
	srv := kmstest.NewAWS(t)
	arn := srv.CreateKey()
	c := newAWSClient(srv)
	for range 3 {
		if _, err := c.Encrypt(context.Background(), &awskms.EncryptInput{KeyId: aws.String(arn), Plaintext: []byte("x")}); err != nil {
			t.Fatal(err)
		}
	}
	if n := srv.Calls("Encrypt"); n != 3 {
		t.Errorf("Calls(Encrypt) = %d, want 3", n)
	}
	if n := srv.Calls(""); n != 3 {
		t.Errorf("Calls() = %d, want 3", n)
	}
}
