package e2e_test

import (
	"strings"
	"testing"

	"github.com/sealcache/sealcache/e2e/e2etest"
	adminv1 "github.com/sealcache/sealcache/proto/sealcache/admin/v1"
)

// badKey is shaped like a Sealcache API key but was never issued.
const badKey = "sck_kaaaaaaaaaaaa_NotAKeyThisServerEverIssued0000000000000000"

// An org admin hands out a writer key to CI and a reader key to developers.
// The reader's build works from an empty cache, but its uploads are refused
// and Bazel says so; CI's writer key fills the cache so that a rebuild is all
// remote hits; the reader then gets those hits too; a key the server never
// issued stops Bazel with an authentication error.
func TestBazelWithWriterReaderAndBadKeysOverGRPC(t *testing.T) {
	server := e2etest.StartServer(t)
	writer := createAPIKey(t, server, server.AdminKey(), "writer", "ci")
	reader := createAPIKey(t, server, server.AdminKey(), "reader", "laptops")
	laptop := e2etest.NewBazel(t)

	cold := laptop.Build(append(server.GRPCFlags(reader), e2etest.Targets)...)
	if hits := cold.Processes.RemoteCacheHits(); hits != 0 {
		t.Errorf("reader against an empty cache: %q, want no remote cache hits", cold.Processes.Line)
	}
	checkUploadsRefused(t, cold)

	bad := laptop.Run("build", append(server.GRPCFlags(badKey), e2etest.Targets)...)
	if bad.ExitCode == 0 {
		t.Errorf("bazel build with a key the server never issued succeeded, want it to fail:\n%s", bad.RedactedOutput())
	}
	if !strings.Contains(bad.Output(), "UNAUTHENTICATED") {
		t.Errorf("bazel build with a bad key: output does not name UNAUTHENTICATED:\n%s", bad.RedactedOutput())
	}

	// The reader's refused uploads left the cache empty, so CI's first build
	// runs everything and its rebuild comes from the cache.
	checkRebuildComesFromCache(t, server.GRPCFlags(writer))

	laptop.CleanExpunge()
	warm := laptop.Build(append(server.GRPCFlags(reader), e2etest.Targets)...)
	if warm.Processes.RemoteCacheHits() == 0 || warm.Processes.RemoteCacheHits() != warm.Processes.Cacheable() {
		t.Errorf("reader after CI filled the cache: %q, want every process to be a remote cache hit\n%s", warm.Processes.Line, warm.Output())
	}
}

// The same roles through Bazel's HTTP cache protocol, key as the basic-auth
// password.
func TestBazelWithReaderAndBadKeysOverHTTP(t *testing.T) {
	server := e2etest.StartServer(t)
	reader := createAPIKey(t, server, server.AdminKey(), "reader", "laptops")
	laptop := e2etest.NewBazel(t)

	cold := laptop.Build(append(server.HTTPFlags(reader), e2etest.Targets)...)
	if hits := cold.Processes.RemoteCacheHits(); hits != 0 {
		t.Errorf("reader against an empty cache: %q, want no remote cache hits", cold.Processes.Line)
	}
	t.Logf("reader over HTTP:\n%s", cold.RedactedOutput())

	laptop.CleanExpunge()
	bad := laptop.Run("build", append(server.HTTPFlags(badKey), e2etest.Targets)...)
	t.Logf("bad key over HTTP: exit %d\n%s", bad.ExitCode, bad.RedactedOutput())
}

// checkUploadsRefused checks that Bazel told its user that the cache refused
// its uploads because of the key's role.
func checkUploadsRefused(t *testing.T, r *e2etest.Result) {
	t.Helper()
	t.Logf("uploads refused:\n%s", r.RedactedOutput())
	if !strings.Contains(r.Output(), "PERMISSION_DENIED") {
		t.Errorf("build with a reader key: Bazel's output does not mention PERMISSION_DENIED for its refused uploads:\n%s", r.RedactedOutput())
	}
}

// createAPIKey creates an API key of role in the org of adminKey with the
// CLI, as an org admin would, and returns its secret.
func createAPIKey(t *testing.T, server *e2etest.Server, adminKey, role, label string) string {
	t.Helper()
	var created adminv1.CreateApiKeyResponse
	server.Admin(adminKey, &created, "keys", "create", "--role", role, "--label", label)
	if created.GetSecret() == "" || created.GetKey().GetId() == "" {
		t.Fatalf("keys create --role %s printed no key id or secret", role)
	}
	if got := created.GetKey().GetLabel(); got != label {
		t.Errorf("keys create --label %q: the new key's label is %q", label, got)
	}
	return created.GetSecret()
}
