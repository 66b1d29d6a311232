package server

import (
	"context"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	smpb "github.com/bazelbuild/remote-apis/build/bazel/semver"

	"github.com/sealcache/sealcache/cas"
)

type capabilitiesServer struct {
	repb.UnimplementedCapabilitiesServer
	blobLimit BlobLimit
}

// GetCapabilities tells clients what this cache supports. update_enabled
// follows the caller's role, with one exception: Bazel before 6.0 treats
// update_enabled=false as fatal while --remote_upload_local_results is on
// (its default), so those clients are told true and their writes are
// refused one by one with PERMISSION_DENIED instead.
func (c *capabilitiesServer) GetCapabilities(ctx context.Context, req *repb.GetCapabilitiesRequest) (*repb.ServerCapabilities, error) {
	p := principalFrom(ctx)
	update := p.canWrite() || isOldBazel(ctx)
	return &repb.ServerCapabilities{
		CacheCapabilities: &repb.CacheCapabilities{
			DigestFunctions: cas.SupportedDigestFunctions,
			ActionCacheUpdateCapabilities: &repb.ActionCacheUpdateCapabilities{
				UpdateEnabled: update,
			},
			MaxBatchTotalSizeBytes:      maxBatchTotalSize,
			MaxCasBlobSizeBytes:         c.blobLimit.Bytes,
			SymlinkAbsolutePathStrategy: repb.SymlinkAbsolutePathStrategy_ALLOWED,
			SupportedCompressors:        []repb.Compressor_Value{repb.Compressor_ZSTD},
			SupportedBatchUpdateCompressors: []repb.Compressor_Value{
				repb.Compressor_ZSTD,
			},
		},
		LowApiVersion:  &smpb.SemVer{Major: 2, Minor: 0},
		HighApiVersion: &smpb.SemVer{Major: 2, Minor: 3},
	}, nil
}
