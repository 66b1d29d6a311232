package server

import (
	"context"
	"net/http"
	"strings"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	bspb "google.golang.org/genproto/googleapis/bytestream"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Instance names become part of stored object names, so they are bounded:
// a longer one is the client's mistake (INVALID_ARGUMENT, 400) on every
// method of both protocols, never a server error.
func TestInstanceNamesOverTheLimitAreRefusedEverywhere(t *testing.T) {
	env := startServer(t)
	ctx := context.Background()
	long := strings.Repeat("i", maxInstanceNameLength+1)
	blob := []byte("blob")
	d := sha(blob)
	result := &repb.ActionResult{StdoutRaw: []byte("out")}

	grpcCalls := map[string]func() error{
		"GetActionResult": func() error {
			_, err := env.ac().GetActionResult(ctx, &repb.GetActionResultRequest{InstanceName: long, ActionDigest: d.Proto()})
			return err
		},
		"UpdateActionResult": func() error {
			_, err := env.ac().UpdateActionResult(ctx, &repb.UpdateActionResultRequest{InstanceName: long, ActionDigest: d.Proto(), ActionResult: result})
			return err
		},
		"FindMissingBlobs": func() error {
			_, err := env.cas().FindMissingBlobs(ctx, &repb.FindMissingBlobsRequest{InstanceName: long, BlobDigests: []*repb.Digest{d.Proto()}})
			return err
		},
		"BatchUpdateBlobs": func() error {
			_, err := env.cas().BatchUpdateBlobs(ctx, &repb.BatchUpdateBlobsRequest{InstanceName: long, Requests: []*repb.BatchUpdateBlobsRequest_Request{{Digest: d.Proto(), Data: blob}}})
			return err
		},
		"BatchReadBlobs": func() error {
			_, err := env.cas().BatchReadBlobs(ctx, &repb.BatchReadBlobsRequest{InstanceName: long, Digests: []*repb.Digest{d.Proto()}})
			return err
		},
		"GetTree": func() error {
			stream, err := env.cas().GetTree(ctx, &repb.GetTreeRequest{InstanceName: long, RootDigest: d.Proto()})
			if err == nil {
				_, err = stream.Recv()
			}
			return err
		},
		"ByteStream.Read": func() error {
			_, err := readBlob(ctx, env.bs(), readName(long, d), 0, 0)
			return err
		},
		"ByteStream.Write": func() error {
			_, err := writeBlob(ctx, env.bs(), long, d, blob)
			return err
		},
		"ByteStream.QueryWriteStatus": func() error {
			_, err := env.bs().QueryWriteStatus(ctx, &bspb.QueryWriteStatusRequest{ResourceName: uploadName(long, d, "u1")})
			return err
		},
	}
	for name, call := range grpcCalls {
		err := call()
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "instance_name") || !strings.Contains(err.Error(), "at most 120") {
			t.Errorf("%s with a %d-byte instance name: %v; want INVALID_ARGUMENT naming the limit", name, len(long), err)
		}
	}
	for _, req := range []struct{ method, path string }{
		{"GET", "/" + long + "/ac/" + d.Hash},
		{"PUT", "/" + long + "/ac/" + d.Hash},
		{"GET", "/" + long + "/cas/" + d.Hash},
		{"PUT", "/" + long + "/cas/" + d.Hash},
	} {
		code, body := env.httpDo(req.method, req.path, env.adminKey, blob)
		if code != http.StatusBadRequest || !strings.Contains(string(body), "instance_name") {
			t.Errorf("HTTP %s with a %d-byte instance prefix: %d %q; want 400 naming the limit", req.method, len(long), code, body)
		}
	}

	// The longest allowed name works.
	longest := long[:maxInstanceNameLength]
	if _, err := env.ac().UpdateActionResult(ctx, &repb.UpdateActionResultRequest{InstanceName: longest, ActionDigest: d.Proto(), ActionResult: result}); err != nil {
		t.Fatalf("UpdateActionResult with a %d-byte instance name: %v", len(longest), err)
	}
	if _, err := env.ac().GetActionResult(ctx, &repb.GetActionResultRequest{InstanceName: longest, ActionDigest: d.Proto()}); err != nil {
		t.Fatalf("GetActionResult with a %d-byte instance name: %v", len(longest), err)
	}
}
