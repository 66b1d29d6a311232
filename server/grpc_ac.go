package server

import (
	"bytes"
	"context"
	"fmt"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/sealcache/sealcache/cas"
)

const (
	// maxActionResultSize bounds a stored ActionResult message.
	maxActionResultSize = 4 << 20
	// maxInlineBytes bounds what GetActionResult inlines in total, so a
	// response stays well under the gRPC message limit.
	maxInlineBytes = 1 << 20
)

type acServer struct {
	repb.UnimplementedActionCacheServer
	s *Server
}

func (a *acServer) GetActionResult(ctx context.Context, req *repb.GetActionResultRequest) (*repb.ActionResult, error) {
	digest, err := cas.FromProto(req.DigestFunction, req.ActionDigest)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "action_digest: %v", err)
	}
	result, err := a.s.getActionResult(ctx, req.InstanceName, digest)
	if err != nil {
		return nil, err
	}
	a.s.inline(ctx, digest.Function, result, req)
	return result, nil
}

// getActionResult reads an AC entry and checks that every blob it names is
// still in the CAS. An entry with a missing blob is reported as NOT_FOUND:
// a hit that Bazel cannot download would fail the build instead of
// re-running the action.
func (s *Server) getActionResult(ctx context.Context, instance string, digest cas.Digest) (*repb.ActionResult, error) {
	data, err := cas.ReadAll(ctx, s.store, s.acKey(ctx, instance, digest))
	if err != nil {
		err = storeError(err)
		if status.Code(err) == codes.NotFound {
			s.metrics.countLookups(ctx, cas.KindAC, 0, 1)
		}
		return nil, err
	}
	result := &repb.ActionResult{}
	if err := proto.Unmarshal(data, result); err != nil {
		s.log.Warn("dropping unreadable action cache entry", "action", digest.String(), "err", err)
		_ = s.store.Delete(ctx, s.acKey(ctx, instance, digest))
		s.metrics.countLookups(ctx, cas.KindAC, 0, 1)
		return nil, status.Errorf(codes.NotFound, "action result %s was unreadable and has been removed", digest)
	}
	missing, err := s.missingOutputs(ctx, digest.Function, result)
	if err != nil {
		return nil, err
	}
	if missing != nil {
		s.metrics.countLookups(ctx, cas.KindAC, 0, 1)
		return nil, status.Errorf(codes.NotFound, "action result %s refers to blob %s, which is no longer in the CAS", digest, missing.Digest)
	}
	s.metrics.countLookups(ctx, cas.KindAC, 1, 0)
	return result, nil
}

// missingOutputs returns the first blob the result refers to that is not
// in the CAS, or nil when all are present. Output directories are checked
// through their Tree message, file by file.
func (s *Server) missingOutputs(ctx context.Context, fn cas.DigestFunction, r *repb.ActionResult) (*cas.Key, error) {
	var keys []cas.Key
	add := func(d *repb.Digest) {
		if d == nil {
			return
		}
		if digest, err := cas.FromProto(fn, d); err == nil {
			keys = append(keys, s.casKey(ctx, digest))
		}
	}
	for _, d := range outputDigests(r) {
		add(d)
	}
	missing, err := s.store.FindMissing(ctx, keys)
	if err != nil {
		return nil, storeError(err)
	}
	if len(missing) > 0 {
		return &missing[0], nil
	}
	for _, d := range r.OutputDirectories {
		treeDigest, err := cas.FromProto(fn, d.TreeDigest)
		if err != nil {
			continue
		}
		if treeDigest.Size > maxDirectorySize {
			continue
		}
		data, err := cas.ReadAll(ctx, s.store, s.casKey(ctx, treeDigest))
		if err != nil {
			if status.Code(storeError(err)) == codes.NotFound {
				k := s.casKey(ctx, treeDigest)
				return &k, nil
			}
			return nil, storeError(err)
		}
		tree := &repb.Tree{}
		if proto.Unmarshal(data, tree) != nil {
			continue
		}
		keys = keys[:0]
		for _, dir := range append([]*repb.Directory{tree.Root}, tree.Children...) {
			for _, f := range dir.GetFiles() {
				add(f.Digest)
			}
		}
		missing, err := s.store.FindMissing(ctx, keys)
		if err != nil {
			return nil, storeError(err)
		}
		if len(missing) > 0 {
			return &missing[0], nil
		}
	}
	return nil, nil
}

// outputDigests lists the blobs an ActionResult names directly (not the files inside output
// directory Trees); both cache protocols check these for completeness.
func outputDigests(r *repb.ActionResult) []*repb.Digest {
	var ds []*repb.Digest
	for _, f := range r.OutputFiles {
		ds = append(ds, f.Digest)
	}
	for _, d := range r.OutputDirectories {
		ds = append(ds, d.TreeDigest)
	}
	for _, d := range []*repb.Digest{r.StdoutDigest, r.StderrDigest} {
		if d != nil {
			ds = append(ds, d)
		}
	}
	return ds
}

// inline fills stdout_raw, stderr_raw and contents of output files when the
// client asked for them, within maxInlineBytes in total. Inlining is a
// favour: a blob that cannot be read is simply left out.
func (s *Server) inline(ctx context.Context, fn cas.DigestFunction, r *repb.ActionResult, req *repb.GetActionResultRequest) {
	budget := int64(maxInlineBytes)
	read := func(d *repb.Digest) []byte {
		digest, err := cas.FromProto(fn, d)
		if err != nil || digest.Size > budget {
			return nil
		}
		data, err := cas.ReadAll(ctx, s.store, s.casKey(ctx, digest))
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
	digest, err := cas.FromProto(req.DigestFunction, req.ActionDigest)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "action_digest: %v", err)
	}
	if req.ActionResult == nil {
		return nil, status.Error(codes.InvalidArgument, "action_result is missing")
	}
	if err := validateActionResult(digest.Function, req.ActionResult); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "action_result: %v", err)
	}
	data, err := proto.Marshal(req.ActionResult)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "action_result: %v", err)
	}
	if len(data) > maxActionResultSize {
		return nil, status.Errorf(codes.InvalidArgument, "action_result is %d bytes; the limit is %d: store large outputs in the CAS", len(data), maxActionResultSize)
	}
	if err := a.s.store.Put(ctx, a.s.acKey(ctx, req.InstanceName, digest), bytes.NewReader(data)); err != nil {
		return nil, storeError(err)
	}
	return req.ActionResult, nil
}

// validateActionResult checks every digest an ActionResult names, so a
// broken entry is refused when written rather than found when read.
func validateActionResult(fn cas.DigestFunction, r *repb.ActionResult) error {
	check := func(what string, d *repb.Digest) error {
		if d == nil {
			return nil
		}
		if _, err := cas.FromProto(fn, d); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		return nil
	}
	for _, f := range r.OutputFiles {
		if f.Path == "" {
			return fmt.Errorf("an output file has no path")
		}
		if f.Digest == nil {
			return fmt.Errorf("output file %q has no digest", f.Path)
		}
		if err := check("output file "+f.Path, f.Digest); err != nil {
			return err
		}
	}
	for _, d := range r.OutputDirectories {
		if d.TreeDigest == nil {
			return fmt.Errorf("output directory %q has no tree_digest", d.Path)
		}
		if err := check("output directory "+d.Path, d.TreeDigest); err != nil {
			return err
		}
	}
	if err := check("stdout_digest", r.StdoutDigest); err != nil {
		return err
	}
	return check("stderr_digest", r.StderrDigest)
}
