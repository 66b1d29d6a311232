package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	rapb "github.com/bazelbuild/remote-apis/build/bazel/remote/asset/v1"
	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/sealcache/sealcache/cas"
	"github.com/sealcache/sealcache/encryption/kms"
)

// origin is an HTTP server on loopback that the asset tests download from;
// it counts the requests that reach it.
type origin struct {
	*httptest.Server
	requests atomic.Int64
}

const assetContent = "SEALCACHE-ASSET-MARKER: the content of file.txt\n"

func startOrigin(t *testing.T) *origin {
	t.Helper()
	o := &origin{}
	mux := http.NewServeMux()
	mux.HandleFunc("/file.txt", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, assetContent) })
	mux.HandleFunc("/other.txt", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "other content\n") })
	mux.HandleFunc("/redirect-here", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/file.txt", http.StatusFound) })
	mux.HandleFunc("/redirect-away", func(w http.ResponseWriter, r *http.Request) {
		// localhost is the same machine, but not a host the tests allow.
		http.Redirect(w, r, "http://localhost:"+portOf(r.Host)+"/file.txt", http.StatusFound)
	})
	mux.HandleFunc("/private", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer origin-token" {
			http.Error(w, "who are you", http.StatusUnauthorized)
			return
		}
		io.WriteString(w, assetContent)
	})
	mux.HandleFunc("/streamed", func(w http.ResponseWriter, r *http.Request) {
		// No Content-Length: the size limit must hold while streaming.
		w.Header().Set("Content-Type", "application/octet-stream")
		w.(http.Flusher).Flush()
		io.Copy(w, pseudoRandom(7, 64<<10))
	})
	mux.HandleFunc("/large", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "134217728")
		io.Copy(w, pseudoRandom(9, 128<<20))
	})
	mux.HandleFunc("/hang", func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	o.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o.requests.Add(1)
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(o.Close)
	return o
}

func sriOf(data []byte) string {
	sum := sha256.Sum256(data)
	return "sha256-" + base64.StdEncoding.EncodeToString(sum[:])
}

// startAssetServer serves with downloads from loopback allowed, as an
// operator with a local mirror would configure it.
func startAssetServer(t *testing.T, configure ...func(*Config)) *testEnv {
	t.Helper()
	return startServer(t, append([]func(*Config){func(c *Config) { c.AssetFetchAllowedHosts = []string{"127.0.0.1"} }}, configure...)...)
}

func fetchClient(env *testEnv) rapb.FetchClient { return rapb.NewFetchClient(env.conn) }

func fetchBlob(t *testing.T, client rapb.FetchClient, req *rapb.FetchBlobRequest) *rapb.FetchBlobResponse {
	t.Helper()
	resp, err := client.FetchBlob(context.Background(), req)
	if err != nil {
		t.Fatalf("FetchBlob(%v): %v", req.GetUris(), err)
	}
	return resp
}

func q(name, value string) *rapb.Qualifier { return &rapb.Qualifier{Name: name, Value: value} }

// wantFetched checks a FetchBlob response that found content.
func wantFetched(t *testing.T, resp *rapb.FetchBlobResponse, content []byte, uri string) {
	t.Helper()
	if code := codes.Code(resp.GetStatus().GetCode()); code != codes.OK {
		t.Fatalf("FetchBlob: status %s %q; want OK", code, resp.GetStatus().GetMessage())
	}
	if want := sha(content); resp.GetBlobDigest().GetHash() != want.Hash || resp.GetBlobDigest().GetSizeBytes() != want.Size {
		t.Fatalf("FetchBlob digest %v, want %v", resp.GetBlobDigest(), want)
	}
	if resp.GetUri() != uri || resp.GetDigestFunction() != repb.DigestFunction_SHA256 {
		t.Errorf("FetchBlob answered uri %q, digest function %s; want %q, SHA256", resp.GetUri(), resp.GetDigestFunction(), uri)
	}
}

// wantStatus checks a FetchBlob response whose inline status is not OK.
func wantStatus(t *testing.T, resp *rapb.FetchBlobResponse, code codes.Code, contains ...string) {
	t.Helper()
	got := codes.Code(resp.GetStatus().GetCode())
	if got != code {
		t.Fatalf("FetchBlob: status %s %q; want %s", got, resp.GetStatus().GetMessage(), code)
	}
	for _, s := range contains {
		if !strings.Contains(resp.GetStatus().GetMessage(), s) {
			t.Errorf("FetchBlob status message %q does not say %q", resp.GetStatus().GetMessage(), s)
		}
	}
	if resp.GetBlobDigest() != nil {
		t.Errorf("FetchBlob with status %s also names a blob %v", got, resp.GetBlobDigest())
	}
}

// A writer's FetchBlob downloads the URI once, checks the checksum, and
// stores the blob in the org's CAS; later fetches with the same URI and
// qualifiers are answered from the cache without asking the origin.
func TestFetchBlobDownloadsOnceThenServesFromTheCache(t *testing.T) {
	o := startOrigin(t)
	env := startAssetServer(t)
	content := []byte(assetContent)
	uri := o.URL + "/file.txt"
	req := &rapb.FetchBlobRequest{Uris: []string{uri}, Qualifiers: []*rapb.Qualifier{q("checksum.sri", sriOf(content)), q("bazel.canonical_id", "file-v1")}}

	wantFetched(t, fetchBlob(t, fetchClient(env), req), content, uri)
	if n := o.requests.Load(); n != 1 {
		t.Fatalf("the origin got %d requests for one fetch", n)
	}
	got, err := readBlob(context.Background(), env.bs(), readName("", sha(content)), 0, 0)
	if err != nil || !bytes.Equal(got, content) {
		t.Fatalf("the fetched blob over ByteStream: %q, %v", got, err)
	}

	// Qualifiers in another order are the same asset.
	req.Qualifiers = []*rapb.Qualifier{req.Qualifiers[1], req.Qualifiers[0]}
	wantFetched(t, fetchBlob(t, fetchClient(env), req), content, uri)
	if n := o.requests.Load(); n != 1 {
		t.Errorf("a second fetch asked the origin again (%d requests)", n)
	}

	// Other qualifiers are another asset: downloaded again.
	wantFetched(t, fetchBlob(t, fetchClient(env), &rapb.FetchBlobRequest{Uris: []string{uri}}), content, uri)
	if n := o.requests.Load(); n != 2 {
		t.Errorf("a fetch without qualifiers: the origin got %d requests in all, want 2", n)
	}

	// Mirrors: the first URI that works wins, and the response names it.
	mirrors := &rapb.FetchBlobRequest{Uris: []string{o.URL + "/missing", o.URL + "/redirect-here"}, Qualifiers: []*rapb.Qualifier{q("checksum.sri", sriOf(content))}}
	wantFetched(t, fetchBlob(t, fetchClient(env), mirrors), content, o.URL+"/redirect-here")
}

// The checksum is checked before anything is stored: on a mismatch the
// response says ABORTED (the API's code for a failed consistency check)
// with both checksums, and neither the blob nor a mapping is stored.
func TestFetchBlobChecksumMismatchStoresNothing(t *testing.T) {
	o := startOrigin(t)
	env := startAssetServer(t)
	wrong := sriOf([]byte("what the client expected"))
	uri := o.URL + "/file.txt"

	resp := fetchBlob(t, fetchClient(env), &rapb.FetchBlobRequest{Uris: []string{uri}, Qualifiers: []*rapb.Qualifier{q("checksum.sri", wrong)}})
	wantStatus(t, resp, codes.Aborted, "checksum mismatch", sriOf([]byte(assetContent)), wrong, "nothing was stored")
	if resp.GetUri() != uri {
		t.Errorf("the failed response names uri %q, want %q", resp.GetUri(), uri)
	}
	missing, err := env.cas().FindMissingBlobs(context.Background(), &repb.FindMissingBlobsRequest{BlobDigests: []*repb.Digest{sha([]byte(assetContent)).Proto()}})
	if err != nil || len(missing.GetMissingBlobDigests()) != 1 {
		t.Errorf("after a checksum mismatch the blob is in the CAS (%v, %v)", missing, err)
	}
	// Several checksums: one that matches is enough (as SRI says).
	either := wrong + " " + sriOf([]byte(assetContent))
	wantFetched(t, fetchBlob(t, fetchClient(env), &rapb.FetchBlobRequest{Uris: []string{uri}, Qualifiers: []*rapb.Qualifier{q("checksum.sri", either)}}), []byte(assetContent), uri)
}

// A mismatch names what the content has under each algorithm the request
// used, once per algorithm, in the order the request first used it.
func TestFetchBlobChecksumMismatchNamesEachAlgorithmOnce(t *testing.T) {
	o := startOrigin(t)
	env := startAssetServer(t)
	sum512 := sha512.Sum512([]byte("not the content"))
	wrong512 := "sha512-" + base64.StdEncoding.EncodeToString(sum512[:])
	value := sriOf([]byte("one guess")) + " " + wrong512 + " " + sriOf([]byte("another guess"))
	resp := fetchBlob(t, fetchClient(env), &rapb.FetchBlobRequest{Uris: []string{o.URL + "/file.txt"}, Qualifiers: []*rapb.Qualifier{q("checksum.sri", value)}})
	has512 := sha512.Sum512([]byte(assetContent))
	want := "has " + sriOf([]byte(assetContent)) + " sha512-" + base64.StdEncoding.EncodeToString(has512[:]) + ", the request wants " + value + ";"
	wantStatus(t, resp, codes.Aborted, want)
}

// What goes wrong at the origin, or against the operator's policy, is in
// the response's status with a message that says what happened.
func TestFetchBlobOriginErrorsAreInlineStatuses(t *testing.T) {
	o := startOrigin(t)
	env := startAssetServer(t, func(c *Config) { c.MaxBlobSize = 32 << 10 })
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedURL := "http://" + closed.Addr().String() + "/file.txt"
	closed.Close()

	for _, c := range []struct {
		name    string
		req     *rapb.FetchBlobRequest
		code    codes.Code
		message []string
	}{
		{"404", &rapb.FetchBlobRequest{Uris: []string{o.URL + "/missing"}}, codes.NotFound, []string{"/missing answered 404 Not Found"}},
		{"401", &rapb.FetchBlobRequest{Uris: []string{o.URL + "/private"}}, codes.PermissionDenied, []string{"401 Unauthorized"}},
		{"unreachable", &rapb.FetchBlobRequest{Uris: []string{closedURL}}, codes.Unavailable, []string{"cannot download " + closedURL, "connection refused"}},
		{"host not allowed", &rapb.FetchBlobRequest{Uris: []string{"http://localhost:1/file.txt"}}, codes.PermissionDenied, []string{"host localhost is not one this server downloads from", "--asset_fetch_allowed_hosts"}},
		{"redirect to a host not allowed", &rapb.FetchBlobRequest{Uris: []string{o.URL + "/redirect-away"}}, codes.PermissionDenied, []string{"redirected to http://localhost:", "--asset_fetch_allowed_hosts"}},
		{"not http", &rapb.FetchBlobRequest{Uris: []string{"ftp://127.0.0.1/file.txt"}}, codes.NotFound, []string{"only http and https URLs are downloaded"}},
		{"larger than --max_blob_size, streamed", &rapb.FetchBlobRequest{Uris: []string{o.URL + "/streamed"}}, codes.InvalidArgument, []string{"more than 32768 bytes", "--max_blob_size"}},
		{"larger than --max_blob_size, announced", &rapb.FetchBlobRequest{Uris: []string{o.URL + "/large"}}, codes.InvalidArgument, []string{"has 134217728 bytes", "--max_blob_size=32768"}},
		{"timeout", &rapb.FetchBlobRequest{Uris: []string{o.URL + "/hang"}, Timeout: durationpb.New(100 * time.Millisecond)}, codes.DeadlineExceeded, []string{"did not finish within 100ms"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			wantStatus(t, fetchBlob(t, fetchClient(env), c.req), c.code, c.message...)
		})
	}
}

// Requests that are wrong in themselves are the RPC's error.
func TestFetchBlobBadRequests(t *testing.T) {
	o := startOrigin(t)
	env := startAssetServer(t)
	uri := o.URL + "/file.txt"
	for _, c := range []struct {
		name string
		req  *rapb.FetchBlobRequest
		want string
	}{
		{"no uri", &rapb.FetchBlobRequest{}, "give at least one URI"},
		{"twice the same qualifier", &rapb.FetchBlobRequest{Uris: []string{uri}, Qualifiers: []*rapb.Qualifier{q("a", "1"), q("a", "2")}}, `"a" appears twice`},
		{"bad checksum", &rapb.FetchBlobRequest{Uris: []string{uri}, Qualifiers: []*rapb.Qualifier{q("checksum.sri", "sha256-nope")}}, "not a base64 sha256 hash"},
		{"only unknown checksum algorithms", &rapb.FetchBlobRequest{Uris: []string{uri}, Qualifiers: []*rapb.Qualifier{q("checksum.sri", "md5-AAAA")}}, "no sha256, sha384 or sha512 hash"},
		{"bad digest function", &rapb.FetchBlobRequest{Uris: []string{uri}, DigestFunction: repb.DigestFunction_MD5}, "digest_function"},
		{"negative timeout", &rapb.FetchBlobRequest{Uris: []string{uri}, Timeout: durationpb.New(-time.Second)}, "timeout is negative"},
	} {
		_, err := fetchClient(env).FetchBlob(context.Background(), c.req)
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v; want INVALID_ARGUMENT saying %q", c.name, err, c.want)
		}
	}

	// A qualifier the server cannot make a download match is refused, with
	// the BadRequest detail the API asks for; nothing is downloaded.
	_, err := fetchClient(env).FetchBlob(context.Background(), &rapb.FetchBlobRequest{Uris: []string{uri}, Qualifiers: []*rapb.Qualifier{q("vcs.commit", "abc")}})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), `"vcs.commit" not supported`) {
		t.Fatalf("unsupported qualifier: %v", err)
	}
	var violations []*errdetails.BadRequest_FieldViolation
	for _, d := range status.Convert(err).Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			violations = br.GetFieldViolations()
		}
	}
	if len(violations) != 1 || violations[0].GetField() != "qualifiers.name" || violations[0].GetDescription() != `"vcs.commit" not supported` {
		t.Errorf("BadRequest detail: %v", violations)
	}
	if n := o.requests.Load(); n != 0 {
		t.Errorf("bad requests reached the origin %d times", n)
	}
}

// Without an allow list the server downloads only from public addresses,
// so no tenant can make it reach the machine's own network; with
// --asset_fetch=off it downloads nothing at all.
func TestFetchBlobDownloadPolicy(t *testing.T) {
	o := startOrigin(t)
	public := startServer(t)
	wantStatus(t, fetchBlob(t, fetchClient(public), &rapb.FetchBlobRequest{Uris: []string{o.URL + "/file.txt"}}),
		codes.PermissionDenied, "address 127.0.0.1 is not a public address", "--asset_fetch_allowed_hosts")

	off := startAssetServer(t, func(c *Config) { c.AssetFetch = AssetFetchOff })
	wantStatus(t, fetchBlob(t, fetchClient(off), &rapb.FetchBlobRequest{Uris: []string{o.URL + "/file.txt"}}),
		codes.NotFound, "--asset_fetch=off")
	if n := o.requests.Load(); n != 0 {
		t.Errorf("the origin got %d requests; want none", n)
	}
}

// Without an allow list, only public addresses are fetched, including
// the IPv4 address inside a NAT64 or 6to4 address.
func TestIsPublicAddr(t *testing.T) {
	for _, tc := range []struct {
		addr   string
		public bool
	}{
		{"1.1.1.1", true},
		{"2606:4700::1111", true},
		{"127.0.0.1", false},
		{"::1", false},
		{"10.1.2.3", false},
		{"100.64.0.1", false},
		{"169.254.169.254", false},
		{"::ffff:10.1.2.3", false},
		{"fd00::1", false},
		{"64:ff9b::1.1.1.1", true},
		{"64:ff9b::10.1.2.3", false},
		{"64:ff9b::169.254.169.254", false},
		{"64:ff9b::127.0.0.1", false},
		{"2002:101:101::1", true},
		{"2002:a01:203::1", false},
		{"2002:7f00:1::1", false},
	} {
		if got := isPublicAddr(netip.MustParseAddr(tc.addr)); got != tc.public {
			t.Errorf("isPublicAddr(%s) = %t, want %t", tc.addr, got, tc.public)
		}
	}
}

// A reader finds what writers fetched, but its misses never download. Each
// org, and each instance name, has its own assets.
func TestFetchBlobRolesOrgsAndInstances(t *testing.T) {
	o := startOrigin(t)
	env := startAssetServer(t)
	a := newTenant(t, env, "default")
	b := newTenant(t, env, "other")
	uri := o.URL + "/file.txt"
	req := &rapb.FetchBlobRequest{Uris: []string{uri}, Qualifiers: []*rapb.Qualifier{q("checksum.sri", sriOf([]byte(assetContent)))}}
	client := func(key string) rapb.FetchClient { return rapb.NewFetchClient(env.dial(key)) }

	wantStatus(t, fetchBlob(t, client(a.reader), req), codes.NotFound, "needs a writer key", "role reader")
	if n := o.requests.Load(); n != 0 {
		t.Fatalf("a reader's miss made the server download (%d requests)", n)
	}
	wantFetched(t, fetchBlob(t, client(a.writer), req), []byte(assetContent), uri)
	wantFetched(t, fetchBlob(t, client(a.reader), req), []byte(assetContent), uri)

	wantStatus(t, fetchBlob(t, client(b.reader), req), codes.NotFound)
	wantFetched(t, fetchBlob(t, client(b.writer), req), []byte(assetContent), uri)
	if n := o.requests.Load(); n != 2 {
		t.Errorf("org b's writer: %d origin requests in all, want 2 (orgs do not share assets)", n)
	}

	other := proto.Clone(req).(*rapb.FetchBlobRequest)
	other.InstanceName = "linux-arm"
	wantStatus(t, fetchBlob(t, client(a.reader), other), codes.NotFound)
}

// PushBlob maps any URI (a URN too) to a blob the client uploaded; fetches
// with the same qualifiers find it. The server checks the blob is there.
func TestPushBlobThenFetch(t *testing.T) {
	env := startAssetServer(t)
	ctx := context.Background()
	push := rapb.NewPushClient(env.conn)
	blob := []byte("pushed content")
	d := sha(blob)
	uri := "urn:sealcache:test:pushed"
	qualifiers := []*rapb.Qualifier{q("resource_type", "text/plain"), q("vcs.commit", "abc123")}
	pushReq := &rapb.PushBlobRequest{Uris: []string{uri, "https://example.com/pushed.txt"}, Qualifiers: qualifiers, BlobDigest: d.Proto()}

	if _, err := push.PushBlob(ctx, pushReq); status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "upload it") {
		t.Fatalf("PushBlob before the blob is uploaded: %v; want FAILED_PRECONDITION", err)
	}
	if _, err := writeBlob(ctx, env.bs(), "", d, blob); err != nil {
		t.Fatal(err)
	}
	if _, err := push.PushBlob(ctx, pushReq); err != nil {
		t.Fatalf("PushBlob: %v", err)
	}
	for _, u := range pushReq.Uris {
		resp := fetchBlob(t, fetchClient(env), &rapb.FetchBlobRequest{Uris: []string{u}, Qualifiers: []*rapb.Qualifier{qualifiers[1], qualifiers[0]}})
		wantFetched(t, resp, blob, u)
	}
	// Fewer qualifiers: another asset, which a URN cannot be downloaded as.
	wantStatus(t, fetchBlob(t, fetchClient(env), &rapb.FetchBlobRequest{Uris: []string{uri}}), codes.NotFound, "only http and https")

	// An expired push is a miss.
	expired := proto.Clone(pushReq).(*rapb.PushBlobRequest)
	expired.Uris = []string{"urn:sealcache:test:expired"}
	expired.Qualifiers = qualifiers[:1]
	expired.ExpireAt = timestamppb.New(time.Now().Add(-time.Minute))
	if _, err := push.PushBlob(ctx, expired); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, fetchBlob(t, fetchClient(env), &rapb.FetchBlobRequest{Uris: expired.Uris, Qualifiers: expired.Qualifiers}), codes.NotFound, "was not pushed")
	// On a miss, a qualifier the server cannot check makes it refuse to
	// download.
	_, err := fetchClient(env).FetchBlob(ctx, &rapb.FetchBlobRequest{Uris: []string{"https://example.com/unknown"}, Qualifiers: qualifiers})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "any qualifier works for pushed assets") {
		t.Errorf("a miss with vcs.commit: %v; want INVALID_ARGUMENT", err)
	}

	// References must be present too.
	withRef := proto.Clone(pushReq).(*rapb.PushBlobRequest)
	withRef.ReferencesBlobs = []*repb.Digest{sha([]byte("never uploaded")).Proto()}
	if _, err := push.PushBlob(ctx, withRef); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("PushBlob with a missing referenced blob: %v; want FAILED_PRECONDITION", err)
	}

	reader := newTenant(t, env, "default").reader
	if _, err := rapb.NewPushClient(env.dial(reader)).PushBlob(ctx, pushReq); status.Code(err) != codes.PermissionDenied {
		t.Errorf("PushBlob with a reader key: %v; want PERMISSION_DENIED", err)
	}
	if _, err := push.PushBlob(ctx, &rapb.PushBlobRequest{Uris: []string{uri}}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("PushBlob without blob_digest: %v; want INVALID_ARGUMENT", err)
	}
}

// A mapping is a hit only while its blob is in the CAS; once the blob is
// gone (evicted), the next fetch downloads it again. A client that wants
// fresher content than the cache holds (oldest_content_accepted) gets a
// new download too.
func TestFetchBlobDownloadsAgainWhenTheCachedCopyIsGoneOrTooOld(t *testing.T) {
	o := startOrigin(t)
	env := startAssetServer(t)
	content := []byte(assetContent)
	uri := o.URL + "/file.txt"
	req := &rapb.FetchBlobRequest{Uris: []string{uri}}
	wantFetched(t, fetchBlob(t, fetchClient(env), req), content, uri)

	key := cas.Key{Partition: cas.Partition(env.defaultOrg()), Kind: cas.KindCAS, Digest: sha(content)}
	if err := env.s.storage.blobs.Delete(context.Background(), key); err != nil {
		t.Fatal(err)
	}
	wantFetched(t, fetchBlob(t, fetchClient(env), req), content, uri)
	if n := o.requests.Load(); n != 2 {
		t.Fatalf("after the blob left the CAS: %d origin requests in all, want 2", n)
	}

	req.OldestContentAccepted = timestamppb.New(time.Now().Add(time.Hour))
	wantFetched(t, fetchBlob(t, fetchClient(env), req), content, uri)
	if n := o.requests.Load(); n != 3 {
		t.Errorf("with oldest_content_accepted in the future: %d origin requests in all, want 3", n)
	}
}

// Headers for the origin come as http_header qualifiers (Bazel sends its
// credentials that way); they are not part of the asset's identity, so a
// new token still finds what an old one fetched.
func TestFetchBlobSendsHeaderQualifiersToTheOrigin(t *testing.T) {
	o := startOrigin(t)
	env := startAssetServer(t)
	uri := o.URL + "/private"
	resp := fetchBlob(t, fetchClient(env), &rapb.FetchBlobRequest{Uris: []string{o.URL + "/missing", uri},
		Qualifiers: []*rapb.Qualifier{q("http_header:Authorization", "Bearer wrong"), q("http_header_url:1:Authorization", "Bearer origin-token")}})
	wantFetched(t, resp, []byte(assetContent), uri)
	resp = fetchBlob(t, fetchClient(env), &rapb.FetchBlobRequest{Uris: []string{uri}, Qualifiers: []*rapb.Qualifier{q("http_header:Authorization", "Bearer rotated")}})
	wantFetched(t, resp, []byte(assetContent), uri)
	if n := o.requests.Load(); n != 2 {
		t.Errorf("%d origin requests; want 2 (the third fetch is a hit)", n)
	}
	_, err := fetchClient(env).FetchBlob(context.Background(), &rapb.FetchBlobRequest{Uris: []string{o.URL + "/x"}, Qualifiers: []*rapb.Qualifier{q("http_header_url:3:Authorization", "x")}})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "INDEX below the number of uris") {
		t.Errorf("a header for a URI that is not there: %v", err)
	}
}

// Directories are found only when pushed; the server does not unpack
// archives.
func TestFetchDirectoryFindsPushedDirectories(t *testing.T) {
	env := startAssetServer(t)
	ctx := context.Background()
	file := []byte("a file in the tree")
	dir, _ := proto.Marshal(&repb.Directory{Files: []*repb.FileNode{{Name: "a.txt", Digest: sha(file).Proto()}}})
	for _, b := range [][]byte{file, dir} {
		if _, err := writeBlob(ctx, env.bs(), "", sha(b), b); err != nil {
			t.Fatal(err)
		}
	}
	uri := "https://example.com/repo.git"
	qualifiers := []*rapb.Qualifier{q("vcs.commit", "abc123")}
	fetch := func() *rapb.FetchDirectoryResponse {
		resp, err := fetchClient(env).FetchDirectory(ctx, &rapb.FetchDirectoryRequest{Uris: []string{uri}, Qualifiers: qualifiers})
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	if resp := fetch(); codes.Code(resp.GetStatus().GetCode()) != codes.NotFound || !strings.Contains(resp.GetStatus().GetMessage(), "PushDirectory") {
		t.Fatalf("FetchDirectory before a push: %v", resp.GetStatus())
	}
	if _, err := rapb.NewPushClient(env.conn).PushDirectory(ctx, &rapb.PushDirectoryRequest{Uris: []string{uri}, Qualifiers: qualifiers, RootDirectoryDigest: sha(dir).Proto(), ReferencesBlobs: []*repb.Digest{sha(file).Proto()}}); err != nil {
		t.Fatal(err)
	}
	if resp := fetch(); resp.GetStatus().GetCode() != 0 || resp.GetRootDirectoryDigest().GetHash() != sha(dir).Hash {
		t.Errorf("FetchDirectory after a push: %v", resp)
	}
	// The pushed directory is not a blob: FetchBlob misses (and refuses
	// to download with a vcs.commit it cannot check).
	if resp, err := fetchClient(env).FetchBlob(ctx, &rapb.FetchBlobRequest{Uris: []string{uri}, Qualifiers: qualifiers}); err == nil {
		t.Errorf("FetchBlob of a pushed directory's URI: %v", resp)
	}
}

// Under CMEK, the downloaded blob and its mapping are sealed like
// everything else: the content is nowhere on disk in plain text.
func TestFetchBlobUnderCMEKIsSealed(t *testing.T) {
	o := startOrigin(t)
	env := startAssetServer(t)
	ctx := context.Background()
	if err := kms.CreateLocalKey(env.s.cfg.LocalKMSDir, "customer-assets"); err != nil {
		t.Fatal(err)
	}
	if _, err := env.s.storage.manager.Enable(ctx, env.defaultOrg(), "test", "local-kms://customer-assets"); err != nil {
		t.Fatal(err)
	}
	uri := o.URL + "/file.txt"
	wantFetched(t, fetchBlob(t, fetchClient(env), &rapb.FetchBlobRequest{Uris: []string{uri}}), []byte(assetContent), uri)
	wantFetched(t, fetchBlob(t, fetchClient(env), &rapb.FetchBlobRequest{Uris: []string{uri}}), []byte(assetContent), uri)
	if n := o.requests.Load(); n != 1 {
		t.Errorf("%d origin requests; want 1", n)
	}
	if filesContain(t, env.dataDir, []byte("SEALCACHE-ASSET-MARKER")) {
		t.Error("the fetched content is on disk in plain text under CMEK")
	}
	if filesContain(t, filepath.Join(env.dataDir, "cas"), []byte(o.URL)) {
		t.Error("the asset's URI is on disk in plain text under CMEK")
	}
}

// A large download streams to disk: the server's memory does not grow
// with the blob.
func TestFetchBlobOfALargeFileKeepsMemoryFlat(t *testing.T) {
	if testing.Short() {
		t.Skip("downloads 128 MiB")
	}
	o := startOrigin(t)
	env := startAssetServer(t, func(c *Config) { c.MaxSize = 1 << 30 })
	h := sha256.New()
	io.Copy(h, pseudoRandom(9, 128<<20))
	sri := "sha256-" + base64.StdEncoding.EncodeToString(h.Sum(nil))

	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	watch := watchHeap()
	resp := fetchBlob(t, fetchClient(env), &rapb.FetchBlobRequest{Uris: []string{o.URL + "/large"}, Qualifiers: []*rapb.Qualifier{q("checksum.sri", sri)}})
	peak := watch.Stop()
	if codes.Code(resp.GetStatus().GetCode()) != codes.OK || resp.GetBlobDigest().GetSizeBytes() != 128<<20 {
		t.Fatalf("fetching 128 MiB: %v", resp)
	}
	growth := int64(peak) - int64(before.HeapInuse)
	t.Logf("128 MiB fetch: heap in use before %d MiB, peak %d MiB", before.HeapInuse>>20, peak>>20)
	if growth > 48<<20 {
		t.Errorf("heap grew by %d MiB for a 128 MiB download; it must stay flat", growth>>20)
	}
}

func TestParseHostList(t *testing.T) {
	got, err := ParseHostList("GitHub.com, *.example.com 127.0.0.1,[::1]")
	if err != nil || strings.Join(got, " ") != "github.com *.example.com 127.0.0.1 ::1" {
		t.Errorf("ParseHostList: %q, %v", got, err)
	}
	for _, bad := range []string{"https://github.com", "github.com:443", "example.com/path", "a*.example.com", "*"} {
		if _, err := ParseHostList(bad); err == nil {
			t.Errorf("ParseHostList(%q) accepted it", bad)
		}
	}
}

// Bazel 4 and 5 ignore the inline status and would report the checksum of
// an empty file; they get the failure as the RPC's error instead, and a
// checksum mismatch as FAILED_PRECONDITION, which they do not retry.
func TestFetchBlobFailuresAreRPCErrorsForOldBazel(t *testing.T) {
	o := startOrigin(t)
	env := startAssetServer(t)
	rm, _ := proto.Marshal(&repb.RequestMetadata{ToolDetails: &repb.ToolDetails{ToolName: "bazel", ToolVersion: "4.2.3"}})
	oldBazel := metadata.AppendToOutgoingContext(context.Background(), requestMetadataHeader, string(rm))
	uri := o.URL + "/file.txt"

	_, err := fetchClient(env).FetchBlob(oldBazel, &rapb.FetchBlobRequest{Uris: []string{uri}, Qualifiers: []*rapb.Qualifier{q("checksum.sri", sriOf([]byte("expected")))}})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "checksum mismatch") {
		t.Errorf("old Bazel, checksum mismatch: %v; want FAILED_PRECONDITION", err)
	}
	_, err = fetchClient(env).FetchBlob(oldBazel, &rapb.FetchBlobRequest{Uris: []string{o.URL + "/missing"}})
	if status.Code(err) != codes.NotFound || !strings.Contains(err.Error(), "404") {
		t.Errorf("old Bazel, 404 at the origin: %v; want NOT_FOUND", err)
	}
	resp, err := fetchClient(env).FetchBlob(oldBazel, &rapb.FetchBlobRequest{Uris: []string{uri}})
	if err != nil {
		t.Fatal(err)
	}
	wantFetched(t, resp, []byte(assetContent), uri)
}
