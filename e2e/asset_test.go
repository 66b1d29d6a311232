package e2e_test

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/sealcache/sealcache/e2e/e2etest"
)

// assetContent is the file the workspace's http_file downloads.
const assetContent = "SEALCACHE-E2E-ASSET: downloaded once, then served from the cache\n"

// A Bazel user points --experimental_remote_downloader at Sealcache. The
// first build's http_file download goes through the server, which fetches
// the URL from the origin, checks the sha256 and keeps the file in the
// org's CAS. After `bazel clean --expunge` (and with Bazel's own repository
// cache off), the second build gets the file from Sealcache again: the
// origin sees no second request.
func TestRemoteAssetServesBazelDownloadsFromTheCache(t *testing.T) {
	origin := newCountingOrigin(t, "/files/asset.txt", assetContent)
	server := e2etest.StartServer(t, "--asset_fetch_allowed_hosts=127.0.0.1")
	workspace := assetWorkspace(t, origin.URL+"/files/asset.txt", assetContent)
	bazel := e2etest.NewBazelIn(t, workspace)
	key := server.AdminKey()
	build := append(server.GRPCFlags(key),
		"--experimental_remote_downloader=grpc://"+server.GRPCAddr,
		"--repository_cache=", // no local copy: every download must go to the remote downloader
		"//:uses_asset")

	bazel.Build(build...)
	if got := origin.requestCount(); got != 1 {
		t.Fatalf("the first build made %d requests to the origin, want 1", got)
	}
	if ua := origin.userAgents(); !strings.HasPrefix(ua[0], "Sealcache-remote-asset/") {
		t.Errorf("the origin was asked by %q, want Sealcache's downloader (not Bazel itself)", ua[0])
	}
	checkAssetCopy(t, bazel)

	bazel.CleanExpunge()
	bazel.Build(build...)
	if got := origin.requestCount(); got != 1 {
		t.Errorf("after clean --expunge the second build made the origin answer %d requests in all, want still 1 (the file comes from Sealcache)", got)
	}
	checkAssetCopy(t, bazel)
	if !strings.Contains(server.Log(), "fetched asset") {
		t.Errorf("the server's log does not record the download:\n%s", server.Log())
	}
}

func checkAssetCopy(t *testing.T, bazel *e2etest.Bazel) {
	t.Helper()
	got, err := os.ReadFile(bazel.BinFile("asset_copy.txt"))
	if err != nil || string(got) != assetContent {
		t.Errorf("the genrule's copy of the downloaded file: %q, %v; want %q", got, err, assetContent)
	}
}

// assetWorkspace writes e2e/testdata/remote_asset's workspace into a
// temporary directory, with the file's URL and SHA-256 filled in.
func assetWorkspace(t *testing.T, url, content string) string {
	t.Helper()
	root, err := e2etest.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(content))
	dir := t.TempDir()
	for in, out := range map[string]string{"WORKSPACE.in": "WORKSPACE", "BUILD.in": "BUILD"} {
		tmpl, err := os.ReadFile(filepath.Join(root, "e2e", "testdata", "remote_asset", in))
		if err != nil {
			t.Fatal(err)
		}
		text := strings.NewReplacer("@URL@", url, "@SHA256@", hex.EncodeToString(sum[:])).Replace(string(tmpl))
		if err := os.WriteFile(filepath.Join(dir, out), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// countingOrigin is an HTTP server on loopback that serves one file and
// remembers who asked for it.
type countingOrigin struct {
	*httptest.Server
	mu     sync.Mutex
	agents []string
}

func newCountingOrigin(t *testing.T, path, content string) *countingOrigin {
	t.Helper()
	o := &countingOrigin{}
	o.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o.mu.Lock()
		o.agents = append(o.agents, r.UserAgent())
		o.mu.Unlock()
		if r.URL.Path != path {
			http.NotFound(w, r)
			return
		}
		io.WriteString(w, content)
	}))
	t.Cleanup(o.Close)
	return o
}

func (o *countingOrigin) requestCount() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.agents)
}

func (o *countingOrigin) userAgents() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]string(nil), o.agents...)
}

// When the origin's file does not match the WORKSPACE's sha256, the server
// stores nothing and Bazel's error says why, with both checksums. The
// origin is asked once: the refusal is not one Bazel retries.
func TestRemoteAssetChecksumMismatchFailsTheBuildWithTheReason(t *testing.T) {
	origin := newCountingOrigin(t, "/files/asset.txt", assetContent)
	server := e2etest.StartServer(t, "--asset_fetch_allowed_hosts=127.0.0.1")
	workspace := assetWorkspace(t, origin.URL+"/files/asset.txt", "what the WORKSPACE expects instead")
	bazel := e2etest.NewBazelIn(t, workspace)
	build := append(server.GRPCFlags(server.AdminKey()),
		"--experimental_remote_downloader=grpc://"+server.GRPCAddr, "--repository_cache=", "//:uses_asset")

	r := bazel.Run("build", build...)
	if r.ExitCode == 0 {
		t.Fatalf("the build succeeded with a file that does not match its sha256:\n%s", r.RedactedOutput())
	}
	checkOutputSays(t, r, "a download whose checksum does not match",
		"FAILED_PRECONDITION: checksum mismatch: "+origin.URL+"/files/asset.txt has sha256-",
		"nothing was stored")
	if got := origin.requestCount(); got != 1 {
		t.Errorf("the origin answered %d requests, want 1 (no retries of a checksum mismatch)", got)
	}
}
