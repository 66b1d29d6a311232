package e2e_test

import (
	"testing"

	"github.com/sealcache/sealcache/e2e/e2etest"
)

// The e2e workspace builds and its test passes offline without any cache, so a
// failure in the cache tests is about the cache, not about Bazel's setup here.
func TestWorkspaceBuildsOfflineWithoutACache(t *testing.T) {
	bazel := e2etest.NewBazel(t)

	r := bazel.Test(e2etest.Targets)

	if got := r.TestStatus(e2etest.HelloTest); got != "PASSED" {
		t.Errorf("%s: status %q, want PASSED\n%s", e2etest.HelloTest, got, r.Output())
	}
	if r.Processes.Cacheable() < 8 {
		t.Errorf("the workspace ran %d cacheable processes (%q), want at least 8 so the cache tests cover real work", r.Processes.Cacheable(), r.Processes.Line)
	}
	if r.Processes.RemoteCacheHits() != 0 {
		t.Errorf("a build without --remote_cache reported remote cache hits: %q", r.Processes.Line)
	}
}
