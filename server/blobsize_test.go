package server

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// A blob over --max_blob_size, or larger than the whole store, can never
// be stored: every protocol says INVALID_ARGUMENT (HTTP 400), which
// clients do not retry, names the flag that sets the limit, and the
// refusal is in the log.
func TestBlobsOverTheLimitsAreRefusedNamingTheFlag(t *testing.T) {
	ctx := context.Background()
	big := bytes.Repeat([]byte("x"), 2<<10)

	t.Run("--max_blob_size", func(t *testing.T) {
		env := startServer(t, func(c *Config) { c.MaxBlobSize = 1 << 10 })
		_, err := writeBlob(ctx, env.bs(), "", sha(big), big)
		wantRefused(t, "ByteStream Write", err, "--max_blob_size of 1024 bytes")

		resp, err := env.cas().BatchUpdateBlobs(ctx, &repb.BatchUpdateBlobsRequest{Requests: []*repb.BatchUpdateBlobsRequest_Request{{Digest: sha(big).Proto(), Data: big}}})
		if err != nil {
			t.Fatal(err)
		}
		wantRefused(t, "BatchUpdateBlobs", status.ErrorProto(resp.GetResponses()[0].GetStatus()), "--max_blob_size of 1024 bytes")

		code, body := env.httpDo("PUT", "/cas/"+sha(big).Hash, env.adminKey, big)
		wantHTTPRefused(t, "PUT with Content-Length", code, body, "--max_blob_size of 1024 bytes")

		// Without Content-Length the limit holds while the body streams.
		req, _ := http.NewRequest("PUT", env.httpURL+"/cas/"+sha(big).Hash, io.MultiReader(bytes.NewReader(big)))
		req.ContentLength = -1
		req.Header.Set("x-api-key", env.adminKey)
		r, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ = io.ReadAll(r.Body)
		r.Body.Close()
		wantHTTPRefused(t, "chunked PUT", r.StatusCode, body, "--max_blob_size of 1024 bytes")
		if code, _ := env.httpDo("GET", "/cas/"+sha(big).Hash, env.adminKey, nil); code != http.StatusNotFound {
			t.Errorf("the refused chunked PUT was stored: GET answers %d", code)
		}
		if logs := env.logs.String(); !strings.Contains(logs, "request refused") || !strings.Contains(logs, "--max_blob_size") {
			t.Errorf("the refusals are not in the log:\n%s", logs)
		}
	})

	t.Run("--max_size", func(t *testing.T) {
		env := startServer(t, func(c *Config) { c.MaxSize = 1 << 10 })
		_, err := writeBlob(ctx, env.bs(), "", sha(big), big)
		wantRefused(t, "ByteStream Write", err, "--max_size")
		code, body := env.httpDo("PUT", "/cas/"+sha(big).Hash, env.adminKey, big)
		wantHTTPRefused(t, "PUT", code, body, "--max_size")
	})
}

func wantRefused(t *testing.T, what string, err error, flag string) {
	t.Helper()
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), flag) {
		t.Errorf("%s of a blob over the limit: %v; want INVALID_ARGUMENT naming %s", what, err, flag)
	}
}

func wantHTTPRefused(t *testing.T, what string, code int, body []byte, flag string) {
	t.Helper()
	if code != http.StatusBadRequest || !strings.Contains(string(body), flag) {
		t.Errorf("%s of a blob over the limit: %d %q; want 400 naming %s", what, code, body, flag)
	}
}
