package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sealcache/sealcache/cas"
	"github.com/sealcache/sealcache/cas/completeness"
	"github.com/sealcache/sealcache/server/credentials"
)

// httpCache serves Bazel's HTTP cache protocol: GET, HEAD and PUT on
// /cas/HASH and /ac/HASH, optionally below an instance prefix
// (/INSTANCE/ac/HASH). The protocol names blobs by SHA-256 hash alone, so
// its blobs are keyed with cas.SizeUnknown and live beside, not inside, the
// gRPC namespace.
//
// An /ac/ entry that is an ActionResult message gets the same completeness
// check as over gRPC (in the store); any other body is an opaque entry of
// another HTTP cache client (ccache stores its own results there) and is
// stored and served as it is, unless acStrict refuses it.
type httpCache struct {
	blobs        cas.BlobStore
	authenticate func(ctx context.Context, secret string) (principal, error)
	metrics      *metrics
	log          *slog.Logger
	blobLimit    BlobLimit
	acStrict     bool          // refuse /ac/ bodies that are not ActionResults
	idleTimeout  time.Duration // a PUT body that sends nothing this long is ended
	refusals     *refusalLog
}

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
	rec := &errorRecorder{ResponseWriter: w}
	code := h.serve(rec, r)
	kind := "other"
	if _, k, _, ok := parseCachePath(r.URL.Path); ok {
		kind = k.String()
	}
	h.metrics.requests.WithLabelValues("http", kind, r.Method, strconv.Itoa(code)).Inc()
	h.refusals.observeHTTP(r.Method+" /"+kind, code, rec.message())
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
	p, err := h.authenticate(r.Context(), credentials.FromHTTP(r))
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
	if err := checkInstanceName(instance); err != nil {
		return httpError(w, err)
	}
	digest, err := cas.NewDigest(cas.InferDigestFunction(repb.DigestFunction_UNKNOWN, hash), hash, 0)
	if err != nil {
		return httpError(w, status.Errorf(codes.InvalidArgument, "%v", err))
	}
	digest.Size = cas.SizeUnknown
	key := casKey(ctx, digest)
	if kind == cas.KindAC {
		key = acKey(ctx, instance, digest)
	}
	if r.Method == http.MethodPut {
		return h.put(w, r, ctx, key)
	}
	return h.get(w, r, ctx, key)
}

func (h *httpCache) put(w http.ResponseWriter, r *http.Request, ctx context.Context, key cas.Key) int {
	if err := h.blobLimit.Check("the body", r.ContentLength); err != nil {
		return httpError(w, err)
	}
	size := r.ContentLength // -1 (cas.SizeUnknown) when the client streams without a length
	idle := newIdleBody(w, r.Body, h.idleTimeout)
	var body io.Reader = idle
	if key.Kind == cas.KindAC && h.acStrict {
		data, err := io.ReadAll(io.LimitReader(idle, completeness.MaxActionResultSize+1))
		if idle.idle {
			return h.stalled(w, r, int64(len(data)))
		}
		if err != nil {
			return httpError(w, status.Errorf(codes.Canceled, "reading body: %v", err))
		}
		if _, err := completeness.ParseActionResult(key.Digest.Function, data); err != nil {
			return httpError(w, status.Errorf(codes.InvalidArgument, "body is not an ActionResult message (%v); this server stores only ActionResults under /ac/ (--http_ac_strict)", err))
		}
		body, size = bytes.NewReader(data), int64(len(data))
	}
	counted := &countingReader{r: body}
	// A body sent without Content-Length is held to the limit too.
	limited := &maxBlobReader{r: counted, left: h.blobLimit.Bytes, limit: h.blobLimit}
	if err := h.blobs.Put(ctx, key, size, limited); err != nil {
		if idle.idle {
			return h.stalled(w, r, counted.n)
		}
		return httpError(w, storeError(err))
	}
	h.metrics.bytesIn("http", counted.n)
	w.WriteHeader(http.StatusOK)
	return http.StatusOK
}

// stalled answers a PUT whose body sent nothing for the idle timeout after
// received bytes: 408, the client was too slow, not the server.
func (h *httpCache) stalled(w http.ResponseWriter, r *http.Request, received int64) int {
	h.log.Info("ended an HTTP PUT whose body stalled", "path", r.URL.Path, "received", received, "idle", h.idleTimeout.String())
	return httpErrorText(w, http.StatusRequestTimeout, fmt.Sprintf("the request body sent nothing for %s (--upload_idle_timeout) after %d bytes; nothing was stored: send the PUT again", h.idleTimeout, received))
}

func (h *httpCache) get(w http.ResponseWriter, r *http.Request, ctx context.Context, key cas.Key) int {
	rc, size, err := h.blobs.Get(ctx, key, 0)
	if err != nil {
		return httpError(w, storeError(err))
	}
	defer rc.Close()
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return http.StatusOK
	}
	n, err := io.Copy(w, rc)
	h.metrics.bytesOut("http", n)
	if err != nil {
		// Headers are gone; the broken body tells the client.
		h.log.Warn("http cache read failed", "key", key.String(), "err", err)
		panic(http.ErrAbortHandler)
	}
	return http.StatusOK
}

// httpError writes a status error as text with the matching HTTP status.
func httpError(w http.ResponseWriter, err error) int {
	st := status.Convert(err)
	return httpErrorText(w, httpStatus(st.Code()), st.Message())
}

// httpErrorText writes message as text with HTTP status code.
func httpErrorText(w http.ResponseWriter, code int, message string) int {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(code)
	fmt.Fprintln(w, message)
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
