package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/sealcache/sealcache/cas"
	"github.com/sealcache/sealcache/server/credentials"
)

// httpCache serves Bazel's HTTP cache protocol: GET, HEAD and PUT on
// /cas/HASH and /ac/HASH, optionally below an instance prefix
// (/INSTANCE/ac/HASH). The protocol names blobs by SHA-256 hash alone, so
// its blobs are keyed with cas.SizeUnknown and live beside, not inside, the
// gRPC namespace.
type httpCache struct{ s *Server }

// parseCachePath splits "/a/b/ac/HASH" into instance "a/b", kind and hash.
func parseCachePath(path string) (instance string, kind cas.Kind, hash string, ok bool) {
	segs := strings.Split(strings.Trim(path, "/"), "/")
	if len(segs) < 2 {
		return "", 0, "", false
	}
	switch segs[len(segs)-2] {
	case "ac":
		kind = cas.KindAC
	case "cas":
		kind = cas.KindCAS
	default:
		return "", 0, "", false
	}
	return strings.Join(segs[:len(segs)-2], "/"), kind, segs[len(segs)-1], true
}

func (h *httpCache) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	code := h.serve(w, r)
	kind := "other"
	if _, k, _, ok := parseCachePath(r.URL.Path); ok {
		kind = k.String()
	}
	h.s.metrics.requests.WithLabelValues("http", kind, r.Method, strconv.Itoa(code)).Inc()
}

// serve handles one request and returns the HTTP status it sent.
func (h *httpCache) serve(w http.ResponseWriter, r *http.Request) int {
	instance, kind, hash, ok := parseCachePath(r.URL.Path)
	if !ok {
		return httpError(w, status.Error(codes.NotFound, "no such path: the cache protocol uses /cas/SHA256 and /ac/SHA256"))
	}
	need := accessRead
	switch r.Method {
	case http.MethodGet, http.MethodHead:
	case http.MethodPut:
		need = accessWrite
	default:
		w.Header().Set("Allow", "GET, HEAD, PUT")
		return httpError(w, status.Errorf(codes.Unimplemented, "method %s is not allowed; use GET, HEAD or PUT", r.Method))
	}
	p, err := h.s.authenticate(r.Context(), credentials.FromHTTP(r))
	if err == nil {
		err = authorize(p, need, r.Method+" /"+kind.String())
	}
	if err != nil {
		if status.Code(err) == codes.Unauthenticated {
			w.Header().Set("WWW-Authenticate", `Basic realm="sealcache", charset="UTF-8"`)
		}
		return httpError(w, err)
	}
	ctx := withPrincipal(r.Context(), p)
	digest, err := cas.NewDigest(cas.InferDigestFunction(repb.DigestFunction_UNKNOWN, hash), hash, 0)
	if err != nil {
		return httpError(w, status.Errorf(codes.InvalidArgument, "%v", err))
	}
	digest.Size = cas.SizeUnknown
	key := h.s.casKey(ctx, digest)
	if kind == cas.KindAC {
		key = h.s.acKey(ctx, instance, digest)
	}

	switch r.Method {
	case http.MethodPut:
		if h.s.cfg.MaxBlobSize > 0 && r.ContentLength > h.s.cfg.MaxBlobSize {
			return httpError(w, status.Errorf(codes.InvalidArgument, "body of %d bytes is larger than the server's --max_blob_size of %d bytes", r.ContentLength, h.s.cfg.MaxBlobSize))
		}
		var body io.Reader = r.Body
		if kind == cas.KindAC {
			data, err := io.ReadAll(io.LimitReader(r.Body, maxActionResultSize+1))
			if err != nil {
				return httpError(w, status.Errorf(codes.Canceled, "reading body: %v", err))
			}
			result := &repb.ActionResult{}
			if len(data) > maxActionResultSize {
				return httpError(w, status.Errorf(codes.InvalidArgument, "action result is larger than %d bytes", maxActionResultSize))
			}
			if err := proto.Unmarshal(data, result); err != nil {
				return httpError(w, status.Errorf(codes.InvalidArgument, "body is not an ActionResult message: %v", err))
			}
			if err := validateActionResult(digest.Function, result); err != nil {
				return httpError(w, status.Errorf(codes.InvalidArgument, "action result: %v", err))
			}
			body = bytes.NewReader(data)
		}
		counted := &countingReader{r: body}
		if err := h.s.store.Put(ctx, key, counted); err != nil {
			return httpError(w, storeError(err))
		}
		h.s.metrics.bytesIn("http", counted.n)
		w.WriteHeader(http.StatusOK)
		return http.StatusOK

	default: // GET, HEAD
		if kind == cas.KindAC {
			return h.getActionResult(w, r, ctx, key)
		}
		rc, err := h.s.store.Get(ctx, key, 0)
		if err != nil {
			err = storeError(err)
			if status.Code(err) == codes.NotFound {
				h.s.metrics.countLookups(ctx, cas.KindCAS, 0, 1)
			}
			return httpError(w, err)
		}
		defer rc.Close()
		h.s.metrics.countLookups(ctx, cas.KindCAS, 1, 0)
		w.Header().Set("Content-Type", "application/octet-stream")
		if r.Method == http.MethodHead {
			w.WriteHeader(http.StatusOK)
			return http.StatusOK
		}
		n, err := io.Copy(w, rc)
		h.s.metrics.bytesOut("http", n)
		if err != nil {
			// Headers are gone; the broken body tells the client.
			h.s.log.Warn("http cache read failed", "key", key.String(), "err", err)
			panic(http.ErrAbortHandler)
		}
		return http.StatusOK
	}
}

func (h *httpCache) getActionResult(w http.ResponseWriter, r *http.Request, ctx context.Context, key cas.Key) int {
	data, err := cas.ReadAll(ctx, h.s.store, key)
	if err != nil {
		err = storeError(err)
		if status.Code(err) == codes.NotFound {
			h.s.metrics.countLookups(ctx, cas.KindAC, 0, 1)
		}
		return httpError(w, err)
	}
	result := &repb.ActionResult{}
	if err := proto.Unmarshal(data, result); err != nil {
		_ = h.s.store.Delete(ctx, key)
		return httpError(w, status.Error(codes.NotFound, "action result was unreadable and has been removed"))
	}
	// Completeness: every output must be in this protocol's CAS namespace.
	var keys []cas.Key
	for _, d := range outputDigests(result) {
		if d.GetSizeBytes() == 0 {
			continue // the empty blob is always present; Bazel never uploads it
		}
		keys = append(keys, h.s.casKey(ctx, cas.Digest{Function: key.Digest.Function, Hash: d.GetHash(), Size: cas.SizeUnknown}))
	}
	missing, err := h.s.store.FindMissing(ctx, keys)
	if err != nil {
		return httpError(w, storeError(err))
	}
	if len(missing) > 0 {
		h.s.metrics.countLookups(ctx, cas.KindAC, 0, 1)
		return httpError(w, status.Errorf(codes.NotFound, "action result refers to blob %s, which is no longer in the cache", missing[0].Digest.Hash))
	}
	h.s.metrics.countLookups(ctx, cas.KindAC, 1, 0)
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.Itoa(len(data)))
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		n, _ := w.Write(data)
		h.s.metrics.bytesOut("http", int64(n))
	}
	return http.StatusOK
}

// httpError writes a status error as text with the matching HTTP status.
func httpError(w http.ResponseWriter, err error) int {
	st := status.Convert(err)
	code := httpStatus(st.Code())
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(code)
	fmt.Fprintln(w, st.Message())
	return code
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if err != nil && !errors.Is(err, io.EOF) {
		return n, status.Errorf(codes.Canceled, "reading request body: %v", err)
	}
	return n, err
}
