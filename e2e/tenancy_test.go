package e2e_test

import (
	"slices"
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

	// Bazel 4 prints only "N errors during bulk transfer" for refused
	// uploads; --verbose_failures makes it print each error's gRPC status.
	cold := laptop.Build(append(server.GRPCFlags(reader), "--verbose_failures", e2etest.Targets)...)
	if hits := cold.Processes.RemoteCacheHits(); hits != 0 {
		t.Errorf("reader against an empty cache: %q, want no remote cache hits", cold.Processes.Line)
	}
	checkOutputSays(t, cold, "a build with a reader key",
		"WARNING: Writing to Remote Cache:",
		"PERMISSION_DENIED: API key ",
		"has role reader, which may not write to the cache")

	bad := laptop.Run("build", append(server.GRPCFlags(badKey), e2etest.Targets)...)
	if bad.ExitCode == 0 {
		t.Errorf("bazel build with a key the server never issued succeeded, want it to fail:\n%s", bad.RedactedOutput())
	}
	checkOutputSays(t, bad, "a build with a bad key",
		"ERROR: Failed to query remote execution capabilities: UNAUTHENTICATED: API key is not valid")

	// The reader's refused uploads left the cache empty, so CI's first build
	// runs everything and its rebuild comes from the cache.
	checkRebuildComesFromCache(t, server.GRPCFlags(writer))

	laptop.CleanExpunge()
	warm := laptop.Build(append(server.GRPCFlags(reader), e2etest.Targets)...)
	if warm.Processes.RemoteCacheHits() == 0 || warm.Processes.RemoteCacheHits() != warm.Processes.Cacheable() {
		t.Errorf("reader after CI filled the cache: %q, want every process to be a remote cache hit\n%s", warm.Processes.Line, warm.Output())
	}
}

// The same roles through Bazel's HTTP cache protocol, with the key as the
// basic-auth password. Bazel's HTTP cache has no capabilities call, so a bad
// key cannot stop the build: Bazel builds locally and warns on every read.
func TestBazelWithReaderAndBadKeysOverHTTP(t *testing.T) {
	server := e2etest.StartServer(t)
	reader := createAPIKey(t, server, server.AdminKey(), "reader", "laptops")
	laptop := e2etest.NewBazel(t)

	cold := laptop.Build(append(server.HTTPFlags(reader), "--verbose_failures", e2etest.Targets)...)
	if hits := cold.Processes.RemoteCacheHits(); hits != 0 {
		t.Errorf("reader against an empty cache: %q, want no remote cache hits", cold.Processes.Line)
	}
	checkOutputSays(t, cold, "a build with a reader key",
		"WARNING: Writing to Remote Cache:",
		"403 Forbidden",
		"has role reader, which may not write to the cache (PUT /cas)")

	laptop.CleanExpunge()
	bad := laptop.Run("build", append(server.HTTPFlags(badKey), e2etest.Targets)...)
	checkOutputSays(t, bad, "a build with a bad key",
		"WARNING: Reading from Remote Cache:",
		"401 Unauthorized",
		"API key is not valid")
}

// The Bazel flags printed with a new key are meant to be pasted into
// .bazelrc as they are, so they must name this server's gRPC port.
func TestNewKeyBazelFlagsNameThisServersGRPCPort(t *testing.T) {
	server := e2etest.StartServer(t)
	var created adminv1.CreateApiKeyResponse
	server.Admin(server.AdminKey(), &created, "keys", "create", "--role", "writer", "--label", "ci")
	want := "--remote_cache=grpc://" + server.GRPCAddr
	if !slices.Contains(created.GetBazelFlags(), want) {
		var remoteCache []string
		for _, f := range created.GetBazelFlags() {
			if strings.HasPrefix(f, "--remote_cache=") {
				remoteCache = append(remoteCache, f)
			}
		}
		t.Errorf("keys create printed the Bazel flags %q, want %q", remoteCache, want)
	}
}

// checkOutputSays checks that Bazel printed every one of wants.
func checkOutputSays(t *testing.T, r *e2etest.Result, what string, wants ...string) {
	t.Helper()
	for _, want := range wants {
		if !strings.Contains(r.Output(), want) {
			t.Errorf("%s: Bazel's output does not say %q:\n%s", what, want, r.RedactedOutput())
			return
		}
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
