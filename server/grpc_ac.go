package server

import (
	"bytes"
	"context"
	"errors"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/sealcache/sealcache/cas"
	"github.com/sealcache/sealcache/cas/completeness"
)

// maxInlineBytes bounds what GetActionResult inlines in total, so a
// response stays well under the gRPC message limit.
const maxInlineBytes = 1 << 20

// acServer serves the ActionCache service over blobs. The completeness
// check lives in the store (cas/completeness), shared with the HTTP cache.
type acServer struct {
	repb.UnimplementedActionCacheServer
	blobs cas.BlobStore
}

func newACServer(blobs cas.BlobStore) *acServer { return &acServer{blobs: blobs} }

func (a *acServer) GetActionResult(ctx context.Context, req *repb.GetActionResultRequest) (*repb.ActionResult, error) {
	if err := checkInstanceName(req.InstanceName); err != nil {
		return nil, err
	}
	digest, err := cas.FromProto(req.DigestFunction, req.ActionDigest)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "action_digest: %v", err)
	}
	data, err := cas.ReadAll(ctx, a.blobs, acKey(ctx, req.InstanceName, digest), completeness.MaxActionResultSize)
	if errors.Is(err, cas.ErrTooLarge) {
		return nil, status.Errorf(codes.NotFound, "the action cache entry of %s is not an ActionResult (it was stored by an HTTP cache client such as ccache)", digest)
	}
	if err != nil {
		return nil, storeError(err)
	}
	result, err := completeness.ParseActionResult(digest.Function, data)
	if err != nil {
		return nil, status.Errorf(codes.NotFound, "the action cache entry of %s is not an ActionResult (it was stored by an HTTP cache client such as ccache): %v", digest, err)
	}
	a.inline(ctx, digest.Function, result, req)
	return result, nil
}

// inline fills stdout_raw, stderr_raw and contents of output files when the
// client asked for them, within maxInlineBytes in total. Inlining is a
// favour: a blob that cannot be read is simply left out.
func (a *acServer) inline(ctx context.Context, fn cas.DigestFunction, r *repb.ActionResult, req *repb.GetActionResultRequest) {
	budget := int64(maxInlineBytes)
	read := func(d *repb.Digest) []byte {
		digest, err := cas.FromProto(fn, d)
		if err != nil || digest.Size > budget {
			return nil
		}
		data, err := cas.ReadAll(ctx, a.blobs, casKey(ctx, digest), digest.Size)
		if err != nil {
			return nil
		}
		budget -= int64(len(data))
		return data
	}
	if req.InlineStdout && r.StdoutDigest != nil && r.StdoutRaw == nil {
		r.StdoutRaw = read(r.StdoutDigest)
	}
	if req.InlineStderr && r.StderrDigest != nil && r.StderrRaw == nil {
		r.StderrRaw = read(r.StderrDigest)
	}
	wanted := make(map[string]bool, len(req.InlineOutputFiles))
	for _, p := range req.InlineOutputFiles {
		wanted[p] = true
	}
	for _, f := range r.OutputFiles {
		if wanted[f.Path] && f.Contents == nil {
			f.Contents = read(f.Digest)
		}
	}
}

func (a *acServer) UpdateActionResult(ctx context.Context, req *repb.UpdateActionResultRequest) (*repb.ActionResult, error) {
	if err := checkInstanceName(req.InstanceName); err != nil {
		return nil, err
	}
	digest, err := cas.FromProto(req.DigestFunction, req.ActionDigest)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "action_digest: %v", err)
	}
	if req.ActionResult == nil {
		return nil, status.Error(codes.InvalidArgument, "action_result is missing")
	}
	if err := completeness.ValidateActionResult(digest.Function, req.ActionResult); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "action_result: %v", err)
	}
	data, err := marshalKnownFields(req.ActionResult)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "action_result: %v", err)
	}
	if len(data) > completeness.MaxActionResultSize {
		return nil, status.Errorf(codes.InvalidArgument, "action_result is %d bytes; the limit is %d: store large outputs in the CAS", len(data), completeness.MaxActionResultSize)
	}
	if err := a.blobs.Put(ctx, acKey(ctx, req.InstanceName, digest), int64(len(data)), bytes.NewReader(data)); err != nil {
		return nil, storeError(err)
	}
	return req.ActionResult, nil
}

// marshalKnownFields drops fields this server's REAPI version does not
// know before storing: an entry read back must parse as an ActionResult
// without unknown fields (see completeness.ParseActionResult).
func marshalKnownFields(r *repb.ActionResult) ([]byte, error) {
	data, err := proto.Marshal(r)
	if err != nil {
		return nil, err
	}
	known := &repb.ActionResult{}
	if err := (proto.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(data, known); err != nil {
		return nil, err
	}
	return proto.Marshal(known)
}
