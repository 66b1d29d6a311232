package server

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"unicode/utf8"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"golang.org/x/sync/errgroup"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/sealcache/sealcache/cas"
)

// GetTree pages hold at most page_size directories (default and maximum
// below) and at most maxTreePageBytes (limits.go).
const (
	defaultTreePageSize = 1000
	maxTreePageSize     = 10000
)

// casServer serves the ContentAddressableStorage service over blobs.
type casServer struct {
	repb.UnimplementedContentAddressableStorageServer
	blobs     cas.BlobStore
	blobLimit BlobLimit
	metrics   *metrics
}

func newCASServer(blobs cas.BlobStore, blobLimit BlobLimit, m *metrics) *casServer {
	return &casServer{blobs: blobs, blobLimit: blobLimit, metrics: m}
}

func (c *casServer) FindMissingBlobs(ctx context.Context, req *repb.FindMissingBlobsRequest) (*repb.FindMissingBlobsResponse, error) {
	if err := checkInstanceName(req.InstanceName); err != nil {
		return nil, err
	}
	if len(req.BlobDigests) > maxFindMissingDigests {
		return nil, status.Errorf(codes.InvalidArgument, "blob_digests has %d digests; ask about at most %d per call", len(req.BlobDigests), maxFindMissingDigests)
	}
	keys := make([]cas.Key, 0, len(req.BlobDigests))
	partition := casKey(ctx, cas.Digest{}).Partition // once: a context lookup per digest adds up over 10,000
	for _, d := range req.BlobDigests {
		digest, err := cas.FromProto(req.DigestFunction, d)
		if err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "blob_digests: %v", err)
		}
		keys = append(keys, cas.Key{Partition: partition, Kind: cas.KindCAS, Digest: digest})
	}
	missing, err := c.blobs.FindMissing(ctx, keys)
	if err != nil {
		return nil, storeError(err)
	}
	// Answer with the request's own digest messages: no new message per
	// missing digest, and the client gets back exactly what it sent.
	resp := &repb.FindMissingBlobsResponse{MissingBlobDigests: make([]*repb.Digest, 0, len(missing))}
	cas.MarkMissing(keys, missing, func(i int) {
		resp.MissingBlobDigests = append(resp.MissingBlobDigests, req.BlobDigests[i])
	})
	return resp, nil
}

// BatchUpdateBlobs stores each blob and reports each one's outcome. A bad
// digest fails its own entry; a request over the batch limits (counted in
// declared, uncompressed sizes, so that zstd cannot multiply them) fails
// as a whole before anything is stored.
func (c *casServer) BatchUpdateBlobs(ctx context.Context, req *repb.BatchUpdateBlobsRequest) (*repb.BatchUpdateBlobsResponse, error) {
	if err := checkInstanceName(req.InstanceName); err != nil {
		return nil, err
	}
	if err := checkBatchCount(len(req.Requests)); err != nil {
		return nil, err
	}
	var total batchTotal
	for i, r := range req.Requests {
		if d, err := cas.FromProto(req.DigestFunction, r.Digest); err == nil {
			if err := total.add(d, i); err != nil {
				return nil, err
			}
		}
	}
	resp := &repb.BatchUpdateBlobsResponse{Responses: make([]*repb.BatchUpdateBlobsResponse_Response, len(req.Requests))}
	forEachEntry(len(req.Requests), func(i int) {
		r := req.Requests[i]
		resp.Responses[i] = &repb.BatchUpdateBlobsResponse_Response{
			Digest: r.Digest,
			Status: batchStatus(c.updateOne(ctx, req.DigestFunction, r)),
		}
	})
	return resp, nil
}

// batchConcurrency bounds how many entries of one batch are stored or read
// at a time. Entries are independent, so a batch costs about its slowest
// entries rather than the sum of all: that matters most when the store is
// remote (each entry a round trip to an object store), and on a local disk
// it lets the commits of several entries share one log write. The bound
// keeps one batch from taking every goroutine and file handle; zstd work
// is bounded apart from it (batchZstd).
const batchConcurrency = 16

// forEachEntry calls fn(i) for i in [0, n), up to batchConcurrency at once,
// and returns when all have returned.
func forEachEntry(n int, fn func(i int)) {
	if n == 1 {
		fn(0)
		return
	}
	var g errgroup.Group
	g.SetLimit(batchConcurrency)
	for i := range n {
		g.Go(func() error { fn(i); return nil })
	}
	g.Wait()
}

// checkBatchCount refuses batches of more than maxBatchBlobs entries.
func checkBatchCount(n int) error {
	if n > maxBatchBlobs {
		return status.Errorf(codes.InvalidArgument, "the batch has %d blobs; send at most %d per call", n, maxBatchBlobs)
	}
	return nil
}

// batchTotal adds up the declared sizes of a batch's blobs and fails once
// they exceed maxBatchTotalSize. Sizes are non-negative (cas.FromProto), and
// the check subtracts rather than adds, so no sum can overflow past it.
type batchTotal struct{ bytes int64 }

func (t *batchTotal) add(d cas.Digest, index int) error {
	if d.Size > maxBatchTotalSize-t.bytes {
		return status.Errorf(codes.InvalidArgument, "the blobs of one batch may hold %d bytes together (max_batch_total_size_bytes), and entry %d (%s) goes past that: send large blobs with ByteStream", maxBatchTotalSize, index, d)
	}
	t.bytes += d.Size
	return nil
}

// batchStatus cuts an entry's status message to maxBatchStatusMessage
// bytes, so that entries cannot make a batch response exceed the gRPC
// message limit.
func batchStatus(st *spb.Status) *spb.Status {
	if len(st.Message) > maxBatchStatusMessage {
		cut := maxBatchStatusMessage - len("...")
		for cut > 0 && !utf8.RuneStart(st.Message[cut]) {
			cut--
		}
		st.Message = st.Message[:cut] + "..."
	}
	return st
}

func (c *casServer) updateOne(ctx context.Context, fn cas.DigestFunction, r *repb.BatchUpdateBlobsRequest_Request) *spb.Status {
	digest, err := cas.FromProto(fn, r.Digest)
	if err != nil {
		return statusProto(codes.InvalidArgument, "digest: %v", err)
	}
	if err := c.blobLimit.Check("blob "+digest.String(), digest.Size); err != nil {
		return status.Convert(err).Proto()
	}
	data := r.Data
	switch r.Compressor {
	case repb.Compressor_IDENTITY:
	case repb.Compressor_ZSTD:
		var err error
		if data, err = decodeBatchEntry(r.Data, digest); err != nil {
			return status.Convert(err).Proto()
		}
	default:
		return statusProto(codes.InvalidArgument, "compressor %s is not supported; use IDENTITY or ZSTD", r.Compressor)
	}
	body := bytes.NewReader(data)
	if err := c.blobs.Put(ctx, casKey(ctx, digest), digest.Size, body); err != nil {
		return status.Convert(storeError(err)).Proto()
	}
	c.metrics.bytesIn("grpc", int64(len(r.Data)))
	return &spb.Status{}
}

// BatchReadBlobs validates every digest and the total size before reading
// anything, so one request can never make the server hold more than
// max_batch_total_size_bytes of blobs (twice that with zstd, while each
// blob and its compressed form are both held). Entries are read
// concurrently. With zstd, a blob is sent compressed only when that is
// smaller.
func (c *casServer) BatchReadBlobs(ctx context.Context, req *repb.BatchReadBlobsRequest) (*repb.BatchReadBlobsResponse, error) {
	if err := checkInstanceName(req.InstanceName); err != nil {
		return nil, err
	}
	if err := checkBatchCount(len(req.Digests)); err != nil {
		return nil, err
	}
	digests := make([]cas.Digest, len(req.Digests))
	var total batchTotal
	for i, d := range req.Digests {
		digest, err := cas.FromProto(req.DigestFunction, d)
		if err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "digests[%d]: %v", i, err)
		}
		if err := total.add(digest, i); err != nil {
			return nil, err
		}
		digests[i] = digest
	}
	zstdOK := slices.Contains(req.AcceptableCompressors, repb.Compressor_ZSTD)
	resp := &repb.BatchReadBlobsResponse{Responses: make([]*repb.BatchReadBlobsResponse_Response, len(req.Digests))}
	forEachEntry(len(digests), func(i int) {
		digest := digests[i]
		r := &repb.BatchReadBlobsResponse_Response{Digest: req.Digests[i], Status: &spb.Status{}}
		resp.Responses[i] = r
		var err error
		if !zstdOK {
			r.Data, err = cas.ReadAll(ctx, c.blobs, casKey(ctx, digest), digest.Size)
		} else {
			r.Data, r.Compressor, err = readCompressed(ctx, c.blobs, casKey(ctx, digest), digest.Size)
		}
		if err != nil {
			r.Status = batchStatus(status.Convert(storeError(err)).Proto())
			return
		}
		c.metrics.bytesOut("grpc", int64(len(r.Data)))
	})
	return resp, nil
}

// scratchBufs are reused buffers for batch entries, so that a zstd batch
// allocates only the bytes it answers with.
var scratchBufs = sync.Pool{New: func() any { return new([]byte) }}

// readCompressed reads a blob into a scratch buffer, compresses it into
// another, and keeps a copy of the smaller form.
func readCompressed(ctx context.Context, blobs cas.BlobStore, key cas.Key, size int64) ([]byte, repb.Compressor_Value, error) {
	raw, packed := scratchBufs.Get().(*[]byte), scratchBufs.Get().(*[]byte)
	defer scratchBufs.Put(raw)
	defer scratchBufs.Put(packed)
	var err error
	if *raw, err = cas.ReadAllInto(ctx, blobs, key, size, *raw); err != nil {
		return nil, 0, err
	}
	*packed = batchZstd().enc.EncodeAll(*raw, (*packed)[:0])
	if len(*packed) < len(*raw) {
		return bytes.Clone(*packed), repb.Compressor_ZSTD, nil
	}
	return bytes.Clone(*raw), repb.Compressor_IDENTITY, nil
}

// GetTree walks a directory tree breadth first. Pages are bounded by
// directory count (page_size) and by bytes, so a page always fits in the
// 4 MiB message gRPC clients accept by default. The page token is the
// number of directories already returned, so a client can resume with any
// server holding the same CAS; each page re-walks the part of the tree it
// skips, which is cheap next to the downloads a client does with the
// result.
func (c *casServer) GetTree(req *repb.GetTreeRequest, stream repb.ContentAddressableStorage_GetTreeServer) error {
	ctx := stream.Context()
	if err := checkInstanceName(req.InstanceName); err != nil {
		return err
	}
	root, err := cas.FromProto(req.DigestFunction, req.RootDigest)
	if err != nil {
		return status.Errorf(codes.InvalidArgument, "root_digest: %v", err)
	}
	pageSize := int(req.PageSize)
	if pageSize <= 0 {
		pageSize = defaultTreePageSize
	}
	pageSize = min(pageSize, maxTreePageSize)
	skip := 0
	if req.PageToken != "" {
		raw, err := base64.RawURLEncoding.DecodeString(req.PageToken)
		if err == nil {
			skip, err = strconv.Atoi(string(raw))
		}
		if err != nil || skip < 0 {
			return status.Errorf(codes.InvalidArgument, "page_token %q was not issued by this server; start again without one", req.PageToken)
		}
	}
	seen := map[string]bool{root.Hash: true}
	queue := []cas.Digest{root}
	var page []*repb.Directory
	pageBytes := 0
	index := 0
	for len(queue) > 0 {
		d := queue[0]
		queue = queue[1:]
		dir, err := c.readDirectory(ctx, d)
		if status.Code(err) == codes.NotFound {
			if d == root {
				return status.Errorf(codes.NotFound, "root directory %s is not in the CAS", d)
			}
			continue // the spec says to return the part of the tree that is present
		}
		if err != nil {
			return err
		}
		for _, sub := range dir.Directories {
			sd, err := cas.FromProto(root.Function, sub.Digest)
			if err != nil {
				return status.Errorf(codes.InvalidArgument, "directory %s has a bad child digest: %v", d, err)
			}
			if !seen[sd.Hash] {
				seen[sd.Hash] = true
				queue = append(queue, sd)
			}
		}
		if index < skip {
			index++
			continue
		}
		size := protowire.SizeTag(1) + protowire.SizeBytes(proto.Size(dir))
		if len(page) > 0 && (len(page) == pageSize || pageBytes+size > maxTreePageBytes) {
			// This directory starts the next page.
			token := base64.RawURLEncoding.EncodeToString([]byte(strconv.Itoa(index)))
			return stream.Send(&repb.GetTreeResponse{Directories: page, NextPageToken: token})
		}
		page = append(page, dir)
		pageBytes += size
		index++
	}
	return stream.Send(&repb.GetTreeResponse{Directories: page})
}

func (c *casServer) readDirectory(ctx context.Context, d cas.Digest) (*repb.Directory, error) {
	if d.Size > maxDirectorySize {
		return nil, status.Errorf(codes.InvalidArgument, "directory %s is larger than the %d bytes a GetTree page can hold; fetch it with ByteStream Read", d, maxDirectorySize)
	}
	data, err := cas.ReadAll(ctx, c.blobs, casKey(ctx, d), d.Size)
	if err != nil {
		return nil, storeError(err)
	}
	dir := &repb.Directory{}
	if err := proto.Unmarshal(data, dir); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "blob %s is not a Directory message: %v", d, err)
	}
	return dir, nil
}

func statusProto(code codes.Code, format string, args ...any) *spb.Status {
	return &spb.Status{Code: int32(code), Message: fmt.Sprintf(format, args...)}
}

var errAborted = errors.New("upload aborted")
