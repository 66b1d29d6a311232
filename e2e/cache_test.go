package e2e_test

import (
	"os"
	"strings"
	"testing"

	"github.com/sealcache/sealcache/e2e/e2etest"
)

// A user builds and tests with Sealcache as a gRPC remote cache, throws away
// everything Bazel has locally, and builds again: every action comes from the
// cache, the test result too, and the outputs are there on disk.
func TestBazelRebuildsEverythingFromTheGRPCCache(t *testing.T) {
	server := e2etest.StartServer(t)
	checkRebuildComesFromCache(t, server.GRPCFlags(server.AdminKey()))
}

// The same through Bazel's HTTP cache protocol.
func TestBazelRebuildsEverythingFromTheHTTPCache(t *testing.T) {
	server := e2etest.StartServer(t)
	checkRebuildComesFromCache(t, server.HTTPFlags(server.AdminKey()))
}

func checkRebuildComesFromCache(t *testing.T, cacheFlags []string) {
	t.Helper()
	bazel := e2etest.NewBazel(t)
	args := append(cacheFlags, e2etest.Targets)

	cold := bazel.Test(args...)
	if got := cold.TestStatus(e2etest.HelloTest); got != "PASSED" {
		t.Fatalf("cold run: %s status %q, want PASSED\n%s", e2etest.HelloTest, got, cold.Output())
	}
	if hits := cold.Processes.RemoteCacheHits(); hits != 0 {
		t.Errorf("cold run against an empty cache: %d remote cache hits (%q), want 0", hits, cold.Processes.Line)
	}
	if cold.Processes.Cacheable() < 8 {
		t.Fatalf("cold run: %d cacheable processes (%q), want at least 8", cold.Processes.Cacheable(), cold.Processes.Line)
	}

	bazel.CleanExpunge()
	warm := bazel.Test(args...)

	hits := warm.Processes.RemoteCacheHits()
	if hits != warm.Processes.Cacheable() || hits != cold.Processes.Cacheable() {
		t.Errorf("warm run after clean --expunge: %q; want every one of the %d processes the cold run executed (%q) to be a remote cache hit\n%s",
			warm.Processes.Line, cold.Processes.Cacheable(), cold.Processes.Line, warm.Output())
	}
	if got := warm.TestStatus(e2etest.HelloTest); got != "(cached) PASSED" {
		t.Errorf("warm run: %s status %q, want (cached) PASSED\n%s", e2etest.HelloTest, got, warm.Output())
	}

	// Bazel downloaded the outputs from the cache: the 200 KB marker file
	// arrived whole.
	marker, err := os.ReadFile(bazel.BinFile(e2etest.MarkerFile))
	if err != nil {
		t.Fatalf("the marker genrule's output is not on disk after the warm run: %v", err)
	}
	if n := strings.Count(string(marker), e2etest.Marker+" line "); n != e2etest.MarkerLines {
		t.Errorf("marker.txt from the cache has %d marker lines, want %d", n, e2etest.MarkerLines)
	}
}
