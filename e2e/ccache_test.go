package e2e_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/sealcache/sealcache/e2e/e2etest"
	"github.com/sealcache/sealcache/internal/testproc"
)

// ccacheMarker is compiled into the object file as a string literal, so a
// test can look for the object's bytes on the server's disk.
const ccacheMarker = "SEALCACHE-E2E-CCACHE-OBJECT"

// ccacheSource is the program compiled; org names the org it is compiled
// for, so each org's object file has a marker of its own.
func ccacheSource(org string) string {
	return `#include <stdio.h>
int main(void) { puts("` + ccacheMarker + "-" + org + `"); return 0; }
`
}

// A C developer points ccache at Sealcache's HTTP port with the Bazel
// layout. ccache stores its own result format under /ac/ (not ActionResult
// messages); the server keeps those entries as they are, so a second
// compilation on a machine with an empty local cache is a remote hit and
// gives the same object file. The same works in an org with CMEK on, and
// there the object's bytes appear in no file on the server's disk.
func TestCcacheGetsRemoteHitsInPlainAndSealedOrgs(t *testing.T) {
	ccache := findCcache(t)
	server := e2etest.StartServer(t)

	t.Run("plain org", func(t *testing.T) {
		marker := checkCcacheRemoteHit(t, ccache, server, server.AdminKey(), "plain")
		// Sanity check of the sealed case below: unsealed, the object's
		// bytes are visible on disk.
		if found := e2etest.FilesContaining(t, e2etest.StoredFiles(t, server.StoreDir()), marker); len(found) == 0 {
			t.Fatalf("no file under %s contains the object's marker %q: the check of the sealed org would prove nothing", server.StoreDir(), marker)
		}
	})

	t.Run("CMEK org", func(t *testing.T) {
		created := createOrg(t, server, "ccache-sealed")
		org, admin := created.GetOrg().GetId(), created.GetAdminKeySecret()
		if r := server.CLI("", "kms", "create-local-key", "ccache-sealed", "--data_dir", server.DataDir); r.ExitCode != 0 {
			t.Fatalf("%s: exit %d\n%s", r.Command(), r.ExitCode, r.Output())
		}
		enableCMEK(t, server, admin, "local-kms://ccache-sealed")

		marker := checkCcacheRemoteHit(t, ccache, server, admin, "sealed")

		if report := shredCheck(t, server, org); report.Sealed == 0 || report.Plain != 0 {
			t.Fatalf("the CMEK org after ccache stored its results: %+v; want sealed objects only", report)
		}
		if found := e2etest.FilesContaining(t, e2etest.StoredFiles(t, server.StoreDir()), marker); len(found) != 0 {
			t.Errorf("the store's files contain the CMEK org's object bytes in plain text: %v", found)
		}
	})
}

// checkCcacheRemoteHit compiles one C file twice, each time with a fresh
// local ccache directory: the first compilation is a remote miss and writes
// to the server, the second is a remote hit. It returns the marker string
// the object file holds.
func checkCcacheRemoteHit(t *testing.T, ccache string, server *e2etest.Server, apiKey, org string) string {
	t.Helper()
	marker := ccacheMarker + "-" + org
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "hello.c"), []byte(ccacheSource(org)), 0o644); err != nil {
		t.Fatal(err)
	}
	remote := "http://bazel:" + apiKey + "@" + server.HTTPAddr + "/|layout=bazel"

	cold := compileWithCcache(t, ccache, src, remote, "cold.o")
	if cold.stats["remote_storage_miss"] != 1 || cold.stats["remote_storage_write"] == 0 || cold.stats["remote_storage_error"] != 0 {
		t.Fatalf("first compilation: ccache says remote miss %d, write %d, error %d; want a miss that writes without errors\n%s",
			cold.stats["remote_storage_miss"], cold.stats["remote_storage_write"], cold.stats["remote_storage_error"], cold.summary)
	}
	if !bytes.Contains(cold.object, []byte(marker)) {
		t.Fatalf("the object file does not contain its string literal %q; the disk checks would prove nothing", marker)
	}

	warm := compileWithCcache(t, ccache, src, remote, "warm.o")
	if warm.stats["remote_storage_hit"] != 1 || warm.stats["remote_storage_error"] != 0 {
		t.Fatalf("second compilation with an empty local cache: ccache says remote hit %d, error %d; want one remote hit\n%s",
			warm.stats["remote_storage_hit"], warm.stats["remote_storage_error"], warm.summary)
	}
	if !bytes.Equal(warm.object, cold.object) {
		t.Errorf("the object file from the remote hit (%d bytes) differs from the compiled one (%d bytes)", len(warm.object), len(cold.object))
	}
	t.Logf("ccache -s -v after the remote hit:\n%s", warm.summary)
	return marker
}

type ccacheResult struct {
	stats   map[string]int // ccache --print-stats, e.g. remote_storage_hit
	summary string         // ccache -s -v, for people
	object  []byte
}

// compileWithCcache runs `ccache gcc -c hello.c` in dir with a fresh local
// cache directory and the remote storage URL (which carries the API key, so
// it goes in the environment, never on a command line).
func compileWithCcache(t *testing.T, ccache, dir, remote, out string) ccacheResult {
	t.Helper()
	env := append(os.Environ(),
		"CCACHE_DIR="+t.TempDir(),
		"CCACHE_REMOTE_STORAGE="+remote,
		// Uncompressed results, so the tests can find the object's bytes
		// on the server's disk (or make sure they are not there).
		"CCACHE_NOCOMPRESS=1",
	)
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(ccache, args...)
		cmd.Dir, cmd.Env = dir, env
		output, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("ccache %s: %v\n%s", strings.Join(args, " "), err, output)
		}
		return string(output)
	}
	run("gcc", "-c", "hello.c", "-o", out)
	r := ccacheResult{stats: map[string]int{}, summary: run("-s", "-v")}
	for _, line := range strings.Split(run("--print-stats"), "\n") {
		if name, value, ok := strings.Cut(line, "\t"); ok {
			r.stats[name], _ = strconv.Atoi(value)
		}
	}
	object, err := os.ReadFile(filepath.Join(dir, out))
	if err != nil {
		t.Fatalf("ccache wrote no %s: %v", out, err)
	}
	r.object = object
	return r
}

// findCcache returns the ccache binary. Without ccache (and gcc) the test is
// skipped on a workstation and fails in CI, where `make test` installs it.
func findCcache(t *testing.T) string {
	t.Helper()
	ccache, err := exec.LookPath("ccache")
	if err == nil {
		_, err = exec.LookPath("gcc")
	}
	if err != nil {
		if testproc.OnCI() {
			t.Fatalf("ccache or gcc is missing and $CI is set: run `make test`, which installs Debian's ccache (%v)", err)
		}
		t.Skipf("ccache or gcc is missing (%v): skipping; `make test` installs Debian's ccache", err)
	}
	return ccache
}

// An operator who wants only Bazel's ActionResults under /ac/ starts the
// server with --http_ac_strict: ccache's writes are refused, so a second
// compilation finds nothing, and ccache reports the refusals as errors.
func TestCcacheAgainstHTTPACStrictIsRefused(t *testing.T) {
	ccache := findCcache(t)
	server := e2etest.StartServer(t, "--http_ac_strict")
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "hello.c"), []byte(ccacheSource("strict")), 0o644); err != nil {
		t.Fatal(err)
	}
	remote := "http://bazel:" + server.AdminKey() + "@" + server.HTTPAddr + "/|layout=bazel"
	cold := compileWithCcache(t, ccache, src, remote, "cold.o")
	warm := compileWithCcache(t, ccache, src, remote, "warm.o")
	t.Logf("first compilation: %v; second: %v", cold.stats, warm.stats)
	if warm.stats["remote_storage_hit"] != 0 {
		t.Errorf("with --http_ac_strict, ccache got %d remote hits; want none (its entries are refused)", warm.stats["remote_storage_hit"])
	}
	if !strings.Contains(server.Log(), "not an ActionResult") {
		t.Errorf("the server's log does not say why ccache's writes were refused:\n%s", server.Log())
	}
}
