package server

import (
	"bytes"
	"net/http"
	"strconv"
	"strings"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/protobuf/proto"

	"github.com/sealcache/sealcache/encryption/kms"
)

func TestHTTPCacheProtocol(t *testing.T) {
	env := startServer(t)
	key := env.adminKey
	blob := []byte("built by bazel over http")
	hash := sha(blob).Hash

	if code, _ := env.httpDo("GET", "/cas/"+hash, key, nil); code != http.StatusNotFound {
		t.Fatalf("GET before PUT: %d", code)
	}
	if code, body := env.httpDo("PUT", "/cas/"+hash, key, blob); code != http.StatusOK {
		t.Fatalf("PUT: %d %s", code, body)
	}
	if code, body := env.httpDo("GET", "/cas/"+hash, key, nil); code != http.StatusOK || string(body) != string(blob) {
		t.Fatalf("GET: %d %q", code, body)
	}
	if code, _ := env.httpDo("HEAD", "/cas/"+hash, key, nil); code != http.StatusOK {
		t.Fatalf("HEAD: %d", code)
	}
	// A PUT whose body does not hash to the path is refused and not stored.
	wrong := sha([]byte("other")).Hash
	if code, body := env.httpDo("PUT", "/cas/"+wrong, key, blob); code != http.StatusBadRequest || !strings.Contains(string(body), wrong) {
		t.Fatalf("PUT with wrong hash: %d %s", code, body)
	}
	if code, _ := env.httpDo("GET", "/cas/"+wrong, key, nil); code != http.StatusNotFound {
		t.Fatalf("wrong-hash blob is readable: %d", code)
	}

	// /ac stores ActionResult messages, below an instance prefix too.
	action := sha([]byte("http action")).Hash
	result, _ := proto.Marshal(&repb.ActionResult{OutputFiles: []*repb.OutputFile{{Path: "out", Digest: sha(blob).Proto()}}})
	if code, body := env.httpDo("PUT", "/main/ac/"+action, key, result); code != http.StatusOK {
		t.Fatalf("PUT /ac: %d %s", code, body)
	}
	if code, body := env.httpDo("GET", "/main/ac/"+action, key, nil); code != http.StatusOK || string(body) != string(result) {
		t.Fatalf("GET /ac: %d", code)
	}
	if code, _ := env.httpDo("GET", "/ac/"+action, key, nil); code != http.StatusNotFound {
		t.Fatalf("AC entries are per instance: %d", code)
	}
	if code, _ := env.httpDo("GET", "/cas/not-a-hash", key, nil); code != http.StatusBadRequest {
		t.Fatalf("bad hash: %d", code)
	}
	if code, _ := env.httpDo("DELETE", "/cas/"+hash, key, nil); code != http.StatusMethodNotAllowed {
		t.Fatalf("DELETE: %d", code)
	}
}

// HTTP cache clients other than Bazel (ccache) store their own bytes under
// /ac/: such entries are kept and served as they are, unless the server
// is told to accept ActionResults only.
func TestHTTPOpaqueActionCacheEntries(t *testing.T) {
	opaque := []byte("cCrS\x00\x01 a ccache result, not an ActionResult")
	action := sha([]byte("ccache key")).Hash

	env := startServer(t)
	if code, body := env.httpDo("PUT", "/ac/"+action, env.adminKey, opaque); code != http.StatusOK {
		t.Fatalf("PUT of an opaque /ac/ entry: %d %s", code, body)
	}
	if code, body := env.httpDo("GET", "/ac/"+action, env.adminKey, nil); code != http.StatusOK || string(body) != string(opaque) {
		t.Fatalf("GET of an opaque /ac/ entry: %d %q", code, body)
	}

	strict := startServer(t, func(c *Config) { c.HTTPACStrict = true })
	code, body := strict.httpDo("PUT", "/ac/"+action, strict.adminKey, opaque)
	if code != http.StatusBadRequest || !strings.Contains(string(body), "not an ActionResult") {
		t.Fatalf("PUT of an opaque /ac/ entry with --http_ac_strict: %d %s", code, body)
	}
}

func TestHealthAndMetricsEndpoints(t *testing.T) {
	env := startServer(t)
	for _, path := range []string{"/healthz", "/readyz"} {
		if code, body := env.httpDo("GET", path, "", nil); code != http.StatusOK {
			t.Errorf("%s: %d %s", path, code, body)
		}
	}
	env.httpDo("GET", "/cas/"+sha([]byte("miss")).Hash, env.adminKey, nil)
	code, body := env.httpDo("GET", "/metrics", "", nil)
	for _, want := range []string{"sealcache_requests_total", "sealcache_cache_lookups_total{kind=\"cas\",result=\"miss\"} 1", "sealcache_disk_used_bytes"} {
		if code != http.StatusOK || !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// Reads know their size: HTTP GET and HEAD send Content-Length, so clients
// can show progress and detect a cut-off body.
func TestHTTPGetSendsContentLength(t *testing.T) {
	env := startServer(t)
	blob := bytes.Repeat([]byte("content length "), 1000)
	hash := sha(blob).Hash
	if code, body := env.httpDo("PUT", "/cas/"+hash, env.adminKey, blob); code != http.StatusOK {
		t.Fatalf("PUT: %d %s", code, body)
	}
	for _, method := range []string{"GET", "HEAD"} {
		req, _ := http.NewRequest(method, env.httpURL+"/cas/"+hash, nil)
		req.Header.Set("x-api-key", env.adminKey)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.ContentLength != int64(len(blob)) || resp.Header.Get("Content-Length") != strconv.Itoa(len(blob)) {
			t.Fatalf("%s: Content-Length %q (%d); want %d", method, resp.Header.Get("Content-Length"), resp.ContentLength, len(blob))
		}
	}
}

// A PUT whose body does not hash to its path is refused with both hashes,
// so the client can tell a wrong path from a damaged body; with CMEK on
// too, where the check runs while the body is sealed.
func TestHTTPPutWithTheWrongHashNamesExpectedAndActual(t *testing.T) {
	env := startServer(t)
	body := []byte("the body that was sent")
	wrong := sha([]byte("the body the path names")).Hash
	check := func(state string) {
		t.Helper()
		code, msg := env.httpDo("PUT", "/cas/"+wrong, env.adminKey, body)
		want := "expected " + wrong + ", received 22 bytes hashing to " + sha(body).Hash
		if code != http.StatusBadRequest || !strings.Contains(string(msg), want) {
			t.Errorf("%s: PUT with the wrong hash: %d %q; want 400 saying %q", state, code, msg, want)
		}
	}
	check("CMEK off")
	if err := kms.CreateLocalKey(env.s.cfg.LocalKMSDir, "customer-put"); err != nil {
		t.Fatal(err)
	}
	if err := setCMEK(t, env, env.adminKey, true, "local-kms://customer-put"); err != nil {
		t.Fatal(err)
	}
	check("CMEK on")
}
