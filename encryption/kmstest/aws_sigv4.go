package kmstest

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"net/http"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// verifySigV4 checks the request's AWS Signature Version 4 by signing a copy
// of it (the headers it says it signed, the body, its timestamp) with the
// server's secret using the SDK's own signer, then comparing signatures in
// constant time. It returns nil or the error AWS would send.
func (s *AWSServer) verifySigV4(r *http.Request, body []byte) *awsError {
	auth := r.Header.Get("Authorization")
	if auth == "" {
		return &awsError{http.StatusBadRequest, "MissingAuthenticationTokenException", "Missing Authentication Token"}
	}
	algo, fields, _ := strings.Cut(auth, " ")
	if algo != "AWS4-HMAC-SHA256" {
		return &awsError{http.StatusBadRequest, "IncompleteSignatureException", "Unsupported AWS 'algorithm': '" + algo + "'"}
	}
	var credential, signedHeaders, signature string
	for _, f := range strings.Split(fields, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(f), "=")
		switch k {
		case "Credential":
			credential = v
		case "SignedHeaders":
			signedHeaders = v
		case "Signature":
			signature = v
		}
	}
	if credential == "" || signedHeaders == "" || signature == "" {
		return &awsError{http.StatusBadRequest, "IncompleteSignatureException",
			"Authorization header requires 'Credential', 'SignedHeaders' and 'Signature' parameters."}
	}
	// Credential = ACCESS_KEY/DATE/REGION/SERVICE/aws4_request
	scope := strings.Split(credential, "/")
	if len(scope) != 5 || scope[4] != "aws4_request" {
		return &awsError{http.StatusBadRequest, "IncompleteSignatureException", "Credential is not of the form ACCESS_KEY/DATE/REGION/SERVICE/aws4_request."}
	}
	if subtle.ConstantTimeCompare([]byte(scope[0]), []byte(s.AccessKeyID)) != 1 {
		return &awsError{http.StatusBadRequest, "UnrecognizedClientException", "The security token included in the request is invalid."}
	}
	if scope[2] != s.Region {
		return &awsError{http.StatusBadRequest, "InvalidSignatureException", "Credential should be scoped to a valid region. "}
	}
	if scope[3] != "kms" {
		return &awsError{http.StatusBadRequest, "InvalidSignatureException", "Credential should be scoped to correct service: 'kms'. "}
	}
	signingTime, err := time.Parse("20060102T150405Z", r.Header.Get("X-Amz-Date"))
	if err != nil || scope[1] != signingTime.Format("20060102") {
		return &awsError{http.StatusBadRequest, "IncompleteSignatureException", "Date must be in ISO-8601 'basic format' and match the credential scope."}
	}

	// Rebuild the request with only the headers the client signed.
	cp, err := http.NewRequest(r.Method, "http://"+r.Host+r.URL.RequestURI(), nil)
	if err != nil {
		return &awsError{http.StatusBadRequest, "InvalidSignatureException", "malformed request"}
	}
	cp.Host = r.Host
	for _, h := range strings.Split(signedHeaders, ";") {
		switch h {
		case "host":
		case "content-length":
			cp.ContentLength = r.ContentLength
		default:
			if vs := r.Header.Values(h); len(vs) > 0 {
				cp.Header[http.CanonicalHeaderKey(h)] = vs
			}
		}
	}
	sum := sha256.Sum256(body)
	creds := aws.Credentials{AccessKeyID: s.AccessKeyID, SecretAccessKey: s.SecretAccessKey}
	if err := v4.NewSigner().SignHTTP(r.Context(), creds, cp, hex.EncodeToString(sum[:]), "kms", s.Region, signingTime); err != nil {
		return &awsError{http.StatusInternalServerError, "KMSInternalException", "signing failed"}
	}
	want := cp.Header.Get("Authorization")
	_, wantSig, _ := strings.Cut(want, "Signature=")
	_, wantSigned, _ := strings.Cut(want, "SignedHeaders=")
	wantSigned, _, _ = strings.Cut(wantSigned, ",")
	if wantSigned != signedHeaders || subtle.ConstantTimeCompare([]byte(wantSig), []byte(signature)) != 1 {
		return &awsError{http.StatusBadRequest, "InvalidSignatureException",
			"The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details."}
	}
	return nil
}
