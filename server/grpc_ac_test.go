package server

import (
	"context"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sealcache/sealcache/cas"
)

func statusCode(err error) codes.Code { return status.Code(err) }

func TestActionCacheCompletenessCheck(t *testing.T) {
	env := startServer(t)
	ctx := context.Background()
	out := []byte("output file contents")
	stdout := []byte("compiler said hello")
	if _, err := env.cas().BatchUpdateBlobs(ctx, &repb.BatchUpdateBlobsRequest{Requests: []*repb.BatchUpdateBlobsRequest_Request{
		{Digest: sha(out).Proto(), Data: out},
		{Digest: sha(stdout).Proto(), Data: stdout},
	}}); err != nil {
		t.Fatal(err)
	}
	action := sha([]byte("action"))
	result := &repb.ActionResult{
		OutputFiles:  []*repb.OutputFile{{Path: "bin/out", Digest: sha(out).Proto()}},
		StdoutDigest: sha(stdout).Proto(),
	}
	if _, err := env.ac().UpdateActionResult(ctx, &repb.UpdateActionResultRequest{InstanceName: "linux", ActionDigest: action.Proto(), ActionResult: result}); err != nil {
		t.Fatal(err)
	}

	got, err := env.ac().GetActionResult(ctx, &repb.GetActionResultRequest{
		InstanceName: "linux", ActionDigest: action.Proto(), InlineStdout: true, InlineOutputFiles: []string{"bin/out"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if string(got.StdoutRaw) != string(stdout) || string(got.OutputFiles[0].Contents) != string(out) {
		t.Errorf("inlining: stdout %q, contents %q", got.StdoutRaw, got.OutputFiles[0].Contents)
	}
	// Results are per instance name.
	if _, err := env.ac().GetActionResult(ctx, &repb.GetActionResultRequest{InstanceName: "mac", ActionDigest: action.Proto()}); status.Code(err) != codes.NotFound {
		t.Errorf("other instance: want NOT_FOUND, got %v", err)
	}

	// Remove a referenced blob: the entry is no longer a hit.
	if err := env.s.storage.backend.Delete(ctx, cas.Key{Partition: cas.Partition(env.defaultOrg()), Kind: cas.KindCAS, Digest: sha(out)}); err != nil {
		t.Fatal(err)
	}
	_, err = env.ac().GetActionResult(ctx, &repb.GetActionResultRequest{InstanceName: "linux", ActionDigest: action.Proto()})
	if status.Code(err) != codes.NotFound {
		t.Fatalf("entry with a missing output: want NOT_FOUND, got %v", err)
	}
}

func TestUpdateActionResultValidates(t *testing.T) {
	env := startServer(t)
	ctx := context.Background()
	action := sha([]byte("action"))
	for name, r := range map[string]*repb.ActionResult{
		"file without digest": {OutputFiles: []*repb.OutputFile{{Path: "a"}}},
		"bad digest":          {OutputFiles: []*repb.OutputFile{{Path: "a", Digest: &repb.Digest{Hash: "zz"}}}},
		"dir without tree":    {OutputDirectories: []*repb.OutputDirectory{{Path: "d"}}},
	} {
		_, err := env.ac().UpdateActionResult(ctx, &repb.UpdateActionResultRequest{ActionDigest: action.Proto(), ActionResult: r})
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("%s: want INVALID_ARGUMENT, got %v", name, err)
		}
	}
	if _, err := env.ac().UpdateActionResult(ctx, &repb.UpdateActionResultRequest{ActionDigest: action.Proto()}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("missing result: %v", err)
	}
}
