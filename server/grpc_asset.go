package server

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	rapb "github.com/bazelbuild/remote-apis/build/bazel/remote/asset/v1"
	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/sealcache/sealcache/cas"
	"github.com/sealcache/sealcache/cas/completeness"
)

// assetServer serves the Remote Asset API (build.bazel.remote.asset.v1):
// Fetch and Push. It maps a URI and its qualifiers to a blob (or a root
// Directory) in the caller's org's CAS. Bazel uses it with
// --experimental_remote_downloader, so http_archive and http_file downloads
// come from the cache.
//
// How a mapping is stored: as an action cache entry of the caller's org and
// instance name, keyed by the hash (under the request's digest function) of
// assetKey's canonical encoding of ("sealcache-asset-v1", kind, URI, sorted
// qualifiers), whose value is an ActionResult naming the blob as its one
// output file. So the storage stack's rules apply unchanged:
//   - completeness: once the blob leaves the CAS, the entry is a miss, and a
//     fetch downloads it again;
//   - CMEK: the entry and the blob are sealed like every other object;
//   - isolation: entries live in the org's partition, per instance name.
//
// The entry's execution_metadata says when the content was fetched or
// pushed (worker_start_timestamp, compared with oldest_content_accepted)
// and, for pushes with expire_at, carries that time as its one
// auxiliary_metadata entry (a google.protobuf.Timestamp).
//
// On a miss, FetchBlob downloads the first URI that works (asset_fetch.go)
// when the caller may write and --asset_fetch=on, checks checksum.sri
// before storing, and stores blob and mapping. FetchDirectory finds only
// pushed directories: this server does not unpack archives.
type assetServer struct {
	rapb.UnimplementedFetchServer
	rapb.UnimplementedPushServer
	blobs      cas.BlobStore
	downloader *assetDownloader // nil: --asset_fetch=off
	log        *slog.Logger
}

func newAssetServer(blobs cas.BlobStore, downloader *assetDownloader, log *slog.Logger) *assetServer {
	return &assetServer{blobs: blobs, downloader: downloader, log: log}
}

// Asset kinds: a blob and a directory pushed under the same URI are
// different mappings.
const (
	assetKindBlob      = "blob"
	assetKindDirectory = "directory"
)

// assetKeyTag starts every encoded asset key, so no encoding of an asset
// can be the bytes of a REAPI Action (which is what other AC keys hash).
const assetKeyTag = "sealcache-asset-v1"

// Qualifiers the server understands when it downloads. Any qualifier may be
// pushed and found again; a download with another qualifier is refused, as
// the API requires, since the server could not make the content match it.
const (
	qualifierChecksumSRI   = "checksum.sri"       // verified before storing
	qualifierCanonicalID   = "bazel.canonical_id" // names the content; part of the key only
	qualifierResourceType  = "resource_type"      // a media type; part of the key only
	qualifierHeaderPrefix  = "http_header:"       // a request header for every URI
	qualifierHeaderURLPref = "http_header_url:"   // "http_header_url:INDEX:NAME", a header for uris[INDEX]
)

// keyExcluded reports whether a qualifier says how to download rather than
// what the content is. Such qualifiers carry credentials that change over
// time; they are left out of the key so a new token still finds the asset.
func keyExcluded(name string) bool {
	return strings.HasPrefix(name, qualifierHeaderPrefix) || strings.HasPrefix(name, qualifierHeaderURLPref) || name == "bazel.auth_headers"
}

// assetKey is the canonical encoding of a mapping's identity: the tag, the
// kind, the URI and the content qualifiers sorted by name, each field
// length-prefixed so that no two identities encode alike.
func assetKey(kind, uri string, qualifiers []*rapb.Qualifier) []byte {
	var q []*rapb.Qualifier
	for _, x := range qualifiers {
		if !keyExcluded(x.GetName()) {
			q = append(q, x)
		}
	}
	slices.SortFunc(q, func(a, b *rapb.Qualifier) int { return strings.Compare(a.GetName(), b.GetName()) })
	var b []byte
	field := func(s string) {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	field(assetKeyTag)
	field(kind)
	field(uri)
	b = binary.AppendUvarint(b, uint64(len(q)))
	for _, x := range q {
		field(x.GetName())
		field(x.GetValue())
	}
	return b
}

// mappingKey is the AC key under which the mapping of (kind, uri,
// qualifiers) is stored for the caller's org and instance. fn must be
// supported: every caller has had checkAssetRequest check it.
func mappingKey(ctx context.Context, instance string, fn cas.DigestFunction, kind, uri string, qualifiers []*rapb.Qualifier) cas.Key {
	return acKey(ctx, instance, cas.DigestOf(fn, assetKey(kind, uri, qualifiers)))
}

// assetMapping is what a stored mapping says.
type assetMapping struct {
	digest   cas.Digest
	storedAt time.Time // when fetched (the download's start) or pushed
	expireAt time.Time // zero: no expiry
}

const (
	assetOutputPath = "asset"
	assetWorker     = "sealcache remote asset"
)

func (m assetMapping) actionResult(references []cas.Digest) *repb.ActionResult {
	r := &repb.ActionResult{
		OutputFiles: []*repb.OutputFile{{Path: assetOutputPath, Digest: m.digest.Proto()}},
		ExecutionMetadata: &repb.ExecutedActionMetadata{
			Worker:               assetWorker,
			WorkerStartTimestamp: timestamppb.New(m.storedAt),
		},
	}
	// Referenced blobs are output files too, so the mapping is a miss once
	// one of them leaves the CAS (PushBlob's references_* fields).
	for i, ref := range references {
		r.OutputFiles = append(r.OutputFiles, &repb.OutputFile{Path: "reference/" + strconv.Itoa(i), Digest: ref.Proto()})
	}
	if !m.expireAt.IsZero() {
		if expire, err := anypb.New(timestamppb.New(m.expireAt)); err == nil {
			r.ExecutionMetadata.AuxiliaryMetadata = []*anypb.Any{expire}
		}
	}
	return r
}

// readMapping returns the mapping stored under key; ok is false for a miss
// (none stored, or its blob has left the CAS).
func (a *assetServer) readMapping(ctx context.Context, key cas.Key) (assetMapping, bool, error) {
	data, err := cas.ReadAll(ctx, a.blobs, key, completeness.MaxActionResultSize)
	if errors.Is(err, cas.ErrNotFound) {
		return assetMapping{}, false, nil
	}
	if err != nil {
		return assetMapping{}, false, storeError(err)
	}
	r, err := completeness.ParseActionResult(key.Digest.Function, data)
	if err != nil || len(r.OutputFiles) == 0 || r.OutputFiles[0].Path != assetOutputPath || r.GetExecutionMetadata().GetWorker() != assetWorker {
		return assetMapping{}, false, nil // not a mapping: treat as a miss, a fetch overwrites it
	}
	d, err := cas.FromProto(key.Digest.Function, r.OutputFiles[0].Digest)
	if err != nil {
		return assetMapping{}, false, nil
	}
	m := assetMapping{digest: d, storedAt: r.ExecutionMetadata.GetWorkerStartTimestamp().AsTime()}
	for _, aux := range r.ExecutionMetadata.GetAuxiliaryMetadata() {
		ts := &timestamppb.Timestamp{}
		if aux.UnmarshalTo(ts) == nil {
			m.expireAt = ts.AsTime()
		}
	}
	return m, true, nil
}

func (a *assetServer) writeMapping(ctx context.Context, key cas.Key, m assetMapping, references []cas.Digest) error {
	data, err := proto.Marshal(m.actionResult(references))
	if err != nil {
		return status.Errorf(codes.Internal, "encoding the asset mapping: %v", err)
	}
	return storeError(a.blobs.Put(ctx, key, int64(len(data)), bytes.NewReader(data)))
}

// assetRequest is what FetchBlob and FetchDirectory have in common, checked.
type assetRequest struct {
	instance   string
	uris       []string
	qualifiers []*rapb.Qualifier
	fn         cas.DigestFunction
	oldest     time.Time // zero: any age
	timeout    time.Duration
}

// newAssetRequest checks the fields FetchBlob and FetchDirectory share and
// returns them as an assetRequest.
func newAssetRequest(instance string, uris []string, qualifiers []*rapb.Qualifier, named repb.DigestFunction_Value, oldest *timestamppb.Timestamp) (assetRequest, error) {
	fn := requestFunction(named)
	if err := checkAssetRequest(instance, uris, qualifiers, fn); err != nil {
		return assetRequest{}, err
	}
	req := assetRequest{instance: instance, uris: uris, qualifiers: qualifiers, fn: fn}
	if oldest != nil {
		req.oldest = oldest.AsTime()
	}
	return req, nil
}

func checkAssetRequest(instance string, uris []string, qualifiers []*rapb.Qualifier, fn cas.DigestFunction) error {
	if err := checkInstanceName(instance); err != nil {
		return err
	}
	if len(uris) == 0 {
		return status.Error(codes.InvalidArgument, "uris: give at least one URI")
	}
	for i, u := range uris {
		if u == "" {
			return status.Errorf(codes.InvalidArgument, "uris[%d] is empty", i)
		}
	}
	seen := map[string]bool{}
	for _, q := range qualifiers {
		if q.GetName() == "" {
			return status.Error(codes.InvalidArgument, "qualifiers: a qualifier has no name")
		}
		if seen[q.GetName()] {
			return status.Errorf(codes.InvalidArgument, "qualifiers: %q appears twice; qualifier names must be unique", q.GetName())
		}
		seen[q.GetName()] = true
	}
	if _, err := cas.NewHasher(fn); err != nil {
		return status.Errorf(codes.InvalidArgument, "digest_function: %v", err)
	}
	return nil
}

// requestFunction is the digest function a request names, SHA-256 when unset.
func requestFunction(fn repb.DigestFunction_Value) cas.DigestFunction {
	if fn == repb.DigestFunction_UNKNOWN {
		return repb.DigestFunction_SHA256
	}
	return fn
}

// lookup finds a usable mapping for any of the request's URIs, in order.
func (a *assetServer) lookup(ctx context.Context, kind string, req assetRequest) (string, assetMapping, bool, error) {
	now := time.Now()
	for _, uri := range req.uris {
		m, ok, err := a.readMapping(ctx, mappingKey(ctx, req.instance, req.fn, kind, uri, req.qualifiers))
		if err != nil {
			return "", assetMapping{}, false, err
		}
		if !ok || !m.expireAt.IsZero() && now.After(m.expireAt) || m.storedAt.Before(req.oldest) {
			continue
		}
		return uri, m, true, nil
	}
	return "", assetMapping{}, false, nil
}

func (a *assetServer) FetchBlob(ctx context.Context, pbReq *rapb.FetchBlobRequest) (*rapb.FetchBlobResponse, error) {
	resp, err := a.fetchBlob(ctx, pbReq)
	if err == nil && resp.GetStatus().GetCode() != int32(codes.OK) && ignoresInlineStatus(ctx) {
		return nil, inlineStatusAsError(resp.GetStatus())
	}
	return resp, err
}

func (a *assetServer) fetchBlob(ctx context.Context, pbReq *rapb.FetchBlobRequest) (*rapb.FetchBlobResponse, error) {
	req, err := newAssetRequest(pbReq.GetInstanceName(), pbReq.GetUris(), pbReq.GetQualifiers(), pbReq.GetDigestFunction(), pbReq.GetOldestContentAccepted())
	if err != nil {
		return nil, err
	}
	if pbReq.GetTimeout() != nil {
		if req.timeout = pbReq.GetTimeout().AsDuration(); req.timeout < 0 {
			return nil, status.Error(codes.InvalidArgument, "timeout is negative")
		}
	}
	resp := &rapb.FetchBlobResponse{Qualifiers: pbReq.GetQualifiers(), DigestFunction: req.fn}
	uri, m, ok, err := a.lookup(ctx, assetKindBlob, req)
	if err != nil {
		return nil, err
	}
	if ok {
		resp.Status, resp.Uri, resp.BlobDigest = &spb.Status{}, uri, m.digest.Proto()
		if !m.expireAt.IsZero() {
			resp.ExpiresAt = timestamppb.New(m.expireAt)
		}
		return resp, nil
	}

	switch {
	case a.downloader == nil:
		return notFoundResponse(resp, req.uris[0], "no blob was pushed or fetched for %s with these qualifiers, and this server does not download (--asset_fetch=off)", req.uris[0]), nil
	case !principalFrom(ctx).canWrite():
		return notFoundResponse(resp, req.uris[0], "no blob was pushed or fetched for %s with these qualifiers in this org; downloading it needs a writer key (this key has role %s)", req.uris[0], principalFrom(ctx).Role), nil
	}
	return a.fetchFromOrigin(ctx, req, resp)
}

// ignoresInlineStatus reports whether the client may be a Bazel that does
// not read FetchBlobResponse.status: Bazel 4.2.3 takes blob_digest as it is,
// so told "checksum mismatch" inline, it downloads the empty blob and
// reports the empty file's checksum instead (seen in the e2e test). Newer
// Bazel reads the status; the cut-off is isOldBazel's (before 6.0).
func ignoresInlineStatus(ctx context.Context) bool { return isOldBazel(ctx) }

// inlineStatusAsError returns a fetch's inline failure as the RPC's error,
// for clients that ignore the inline status. ABORTED (a
// checksum mismatch) becomes FAILED_PRECONDITION because those clients
// retry ABORTED, and each retry would download the wrong file again.
func inlineStatusAsError(st *spb.Status) error {
	switch codes.Code(st.GetCode()) {
	case codes.Aborted:
		return status.Error(codes.FailedPrecondition, st.GetMessage())
	}
	return status.ErrorProto(st)
}

func notFoundResponse(resp *rapb.FetchBlobResponse, uri, format string, args ...any) *rapb.FetchBlobResponse {
	resp.Status = statusProto(codes.NotFound, format, args...)
	resp.Uri = uri
	return resp
}

// fetchFromOrigin downloads the first URI that works, stores the blob and
// the mapping, and answers with the digest. Failures of every URI end up
// in the response's status: the last one, with its URI.
func (a *assetServer) fetchFromOrigin(ctx context.Context, req assetRequest, resp *rapb.FetchBlobResponse) (*rapb.FetchBlobResponse, error) {
	sums, headers, err := downloadQualifiers(req)
	if err != nil {
		return nil, err
	}
	var last *originError
	for i, raw := range req.uris {
		u, err := url.Parse(raw)
		if err != nil {
			last = originErrorf(codes.InvalidArgument, "uris[%d] is not a URL: %v", i, err)
			resp.Uri = raw
			continue
		}
		started := time.Now()
		blob, err := a.downloader.download(ctx, u, headers[i], req.fn, sums, req.timeout)
		var oe *originError
		if errors.As(err, &oe) {
			a.log.Info("asset download failed", "uri", redactURL(u), "code", oe.code.String(), "err", oe.msg)
			last, resp.Uri = oe, raw
			continue
		}
		if err != nil {
			return nil, storeError(err)
		}
		digest, err := a.store(ctx, req, raw, blob, started)
		if err != nil {
			return nil, err
		}
		a.log.Info("fetched asset", "uri", redactURL(u), "digest", digest.String(), "org", principalFrom(ctx).OrgID)
		resp.Status, resp.Uri, resp.BlobDigest = &spb.Status{}, raw, digest.Proto()
		return resp, nil
	}
	resp.Status = statusProto(last.code, "%s", last.msg)
	return resp, nil
}

// store puts a downloaded blob into the org's CAS and records the mapping.
func (a *assetServer) store(ctx context.Context, req assetRequest, uri string, blob *spooled, started time.Time) (cas.Digest, error) {
	defer blob.Close()
	if err := a.blobs.Put(ctx, casKey(ctx, blob.digest), blob.digest.Size, blob.file); err != nil {
		return cas.Digest{}, storeError(err)
	}
	key := mappingKey(ctx, req.instance, req.fn, assetKindBlob, uri, req.qualifiers)
	if err := a.writeMapping(ctx, key, assetMapping{digest: blob.digest, storedAt: started}, nil); err != nil {
		return cas.Digest{}, err
	}
	return blob.digest, nil
}

// downloadQualifiers reads the qualifiers that shape a download: the
// checksums to verify and the request headers for each URI. Any other
// qualifier the server cannot honour is refused with the BadRequest detail
// the API asks for.
func downloadQualifiers(req assetRequest) ([]sriChecksum, []http.Header, error) {
	headers := make([]http.Header, len(req.uris))
	for i := range headers {
		headers[i] = http.Header{}
	}
	var sums []sriChecksum
	var unsupported []*errdetails.BadRequest_FieldViolation
	// Headers for one URI win over headers for all: apply those last.
	var perURI []*rapb.Qualifier
	for _, q := range req.qualifiers {
		name, value := q.GetName(), q.GetValue()
		switch {
		case name == qualifierChecksumSRI:
			s, err := parseSRI(value)
			if err != nil {
				return nil, nil, status.Errorf(codes.InvalidArgument, "qualifier checksum.sri: %v", err)
			}
			sums = s
		case name == qualifierCanonicalID, name == qualifierResourceType:
		case strings.HasPrefix(name, qualifierHeaderPrefix):
			header := strings.TrimPrefix(name, qualifierHeaderPrefix)
			if header == "" {
				return nil, nil, status.Errorf(codes.InvalidArgument, "qualifier %q names no header", name)
			}
			for _, h := range headers {
				h.Set(header, value)
			}
		case strings.HasPrefix(name, qualifierHeaderURLPref):
			perURI = append(perURI, q)
		default:
			unsupported = append(unsupported, &errdetails.BadRequest_FieldViolation{Field: "qualifiers.name", Description: fmt.Sprintf("%q not supported", name)})
		}
	}
	for _, q := range perURI {
		index, header, ok := strings.Cut(strings.TrimPrefix(q.GetName(), qualifierHeaderURLPref), ":")
		i, err := strconv.Atoi(index)
		if !ok || err != nil || i < 0 || i >= len(req.uris) || header == "" {
			return nil, nil, status.Errorf(codes.InvalidArgument, "qualifier %q: use http_header_url:INDEX:NAME with INDEX below the number of uris (%d)", q.GetName(), len(req.uris))
		}
		headers[i].Set(header, q.GetValue())
	}
	if len(unsupported) > 0 {
		names := make([]string, len(unsupported))
		for i, v := range unsupported {
			names[i] = v.Description
		}
		st := status.Newf(codes.InvalidArgument, "qualifiers the server cannot honour when it downloads: %s; it understands checksum.sri, bazel.canonical_id, resource_type, http_header:NAME and http_header_url:INDEX:NAME (any qualifier works for pushed assets)",
			strings.Join(names, ", "))
		if detailed, err := st.WithDetails(&errdetails.BadRequest{FieldViolations: unsupported}); err == nil {
			st = detailed
		}
		return nil, nil, st.Err()
	}
	return sums, headers, nil
}

func (a *assetServer) FetchDirectory(ctx context.Context, pbReq *rapb.FetchDirectoryRequest) (*rapb.FetchDirectoryResponse, error) {
	req, err := newAssetRequest(pbReq.GetInstanceName(), pbReq.GetUris(), pbReq.GetQualifiers(), pbReq.GetDigestFunction(), pbReq.GetOldestContentAccepted())
	if err != nil {
		return nil, err
	}
	resp := &rapb.FetchDirectoryResponse{Qualifiers: pbReq.GetQualifiers(), DigestFunction: req.fn}
	uri, m, ok, err := a.lookup(ctx, assetKindDirectory, req)
	if err != nil {
		return nil, err
	}
	if !ok {
		resp.Status = statusProto(codes.NotFound, "no directory was pushed for %s with these qualifiers; this server does not download or unpack directories, only finds those pushed with PushDirectory", req.uris[0])
		resp.Uri = req.uris[0]
		return resp, nil
	}
	resp.Status, resp.Uri, resp.RootDirectoryDigest = &spb.Status{}, uri, m.digest.Proto()
	if !m.expireAt.IsZero() {
		resp.ExpiresAt = timestamppb.New(m.expireAt)
	}
	return resp, nil
}

func (a *assetServer) PushBlob(ctx context.Context, req *rapb.PushBlobRequest) (*rapb.PushBlobResponse, error) {
	err := a.push(ctx, assetKindBlob, req.GetInstanceName(), req.GetUris(), req.GetQualifiers(), req.GetDigestFunction(),
		"blob_digest", req.GetBlobDigest(), req.GetExpireAt(), req.GetReferencesBlobs(), req.GetReferencesDirectories())
	if err != nil {
		return nil, err
	}
	return &rapb.PushBlobResponse{}, nil
}

func (a *assetServer) PushDirectory(ctx context.Context, req *rapb.PushDirectoryRequest) (*rapb.PushDirectoryResponse, error) {
	err := a.push(ctx, assetKindDirectory, req.GetInstanceName(), req.GetUris(), req.GetQualifiers(), req.GetDigestFunction(),
		"root_directory_digest", req.GetRootDirectoryDigest(), req.GetExpireAt(), req.GetReferencesBlobs(), req.GetReferencesDirectories())
	if err != nil {
		return nil, err
	}
	return &rapb.PushDirectoryResponse{}, nil
}

// push stores a mapping to content the client uploaded first. The client
// vouches for the qualifiers (the API lets servers trust pushers); the
// server checks that the content and every referenced blob are in the CAS.
func (a *assetServer) push(ctx context.Context, kind, instance string, uris []string, qualifiers []*rapb.Qualifier, named repb.DigestFunction_Value,
	field string, content *repb.Digest, expireAt *timestamppb.Timestamp, refBlobs, refDirs []*repb.Digest) error {
	if content == nil {
		return status.Errorf(codes.InvalidArgument, "%s is missing", field)
	}
	fn := cas.InferDigestFunction(named, content.GetHash())
	if err := checkAssetRequest(instance, uris, qualifiers, fn); err != nil {
		return err
	}
	digest, err := cas.FromProto(fn, content)
	if err != nil {
		return status.Errorf(codes.InvalidArgument, "%s: %v", field, err)
	}
	var refs []cas.Digest
	for i, r := range append(slices.Clone(refBlobs), refDirs...) {
		d, err := cas.FromProto(fn, r)
		if err != nil {
			return status.Errorf(codes.InvalidArgument, "references[%d]: %v", i, err)
		}
		refs = append(refs, d)
	}
	keys := []cas.Key{casKey(ctx, digest)}
	for _, r := range refs {
		keys = append(keys, casKey(ctx, r))
	}
	missing, err := a.blobs.FindMissing(ctx, keys)
	if err != nil {
		return storeError(err)
	}
	if len(missing) > 0 {
		return status.Errorf(codes.FailedPrecondition, "%s is not in the CAS: upload it (and every referenced blob) before pushing", missing[0].Digest)
	}
	m := assetMapping{digest: digest, storedAt: time.Now()}
	if expireAt != nil {
		m.expireAt = expireAt.AsTime()
	}
	for _, uri := range uris {
		if err := a.writeMapping(ctx, mappingKey(ctx, instance, fn, kind, uri, qualifiers), m, refs); err != nil {
			return err
		}
	}
	return nil
}

// registerAssetServices registers Fetch and Push on the gRPC server.
func (s *Server) registerAssetServices(g *grpc.Server) {
	var downloader *assetDownloader
	if s.cfg.AssetFetch == AssetFetchOn {
		downloader = newAssetDownloader(s.cfg, s.log)
		// Downloads a crash interrupted left their temporary files.
		if err := os.RemoveAll(downloader.spoolDir); err != nil {
			s.log.Warn("removing unfinished asset downloads failed", "dir", downloader.spoolDir, "err", err)
		}
	}
	assets := newAssetServer(s.storage.blobs, downloader, s.log)
	rapb.RegisterFetchServer(g, assets)
	rapb.RegisterPushServer(g, assets)
}
