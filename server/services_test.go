package server

import (
	"context"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sealcache/sealcache/cas"
	"github.com/sealcache/sealcache/cas/memory"
	"github.com/sealcache/sealcache/orgs"
)

// The gRPC services depend on the store they are given, not on a running
// server: here the CAS and AC services work over the in-memory fake, and
// what they store lands in the caller's org partition.
func TestServicesWorkOverTheFake(t *testing.T) {
	mem := memory.New()
	m := newMetrics(prometheus.NewRegistry())
	casSvc, acSvc := newCASServer(mem, BlobLimit{}, m), newACServer(mem)
	ctx := withPrincipal(context.Background(), principal{KeyID: "k1", OrgID: "acme", Role: orgs.RoleWriter})

	data := []byte("a blob")
	d := cas.DigestOf(repb.DigestFunction_SHA256, data)
	resp, err := casSvc.BatchUpdateBlobs(ctx, &repb.BatchUpdateBlobsRequest{Requests: []*repb.BatchUpdateBlobsRequest_Request{{Digest: d.Proto(), Data: data}}})
	if err != nil || resp.Responses[0].Status.GetCode() != 0 {
		t.Fatalf("BatchUpdateBlobs: %v %v", resp, err)
	}
	if got := mem.Raw(cas.Key{Partition: "acme", Kind: cas.KindCAS, Digest: d}); string(got) != string(data) {
		t.Fatalf("the fake holds %q under acme; want the blob", got)
	}
	action := cas.DigestOf(repb.DigestFunction_SHA256, []byte("action"))
	result := &repb.ActionResult{OutputFiles: []*repb.OutputFile{{Path: "out", Digest: d.Proto()}}}
	if _, err := acSvc.UpdateActionResult(ctx, &repb.UpdateActionResultRequest{ActionDigest: action.Proto(), ActionResult: result}); err != nil {
		t.Fatal(err)
	}
	got, err := acSvc.GetActionResult(ctx, &repb.GetActionResultRequest{ActionDigest: action.Proto()})
	if err != nil || got.OutputFiles[0].Path != "out" {
		t.Fatalf("GetActionResult over the fake: %v %v", got, err)
	}
}
