package e2etest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// BinaryEnv names an environment variable that, when set, points at a prebuilt
// sealcache binary to use instead of building cmd/sealcache.
const BinaryEnv = "SEALCACHE_E2E_BINARY"

var (
	buildOnce   sync.Once
	builtBinary string
	buildErr    error
	buildDir    string
)

// Main runs the tests of a package that uses this harness and then removes the
// sealcache binary built for them. Call it from TestMain:
//
//	func TestMain(m *testing.M) { e2etest.Main(m) }
//
// Without it the tests still work; the binary is then left in the system's
// temp directory.
func Main(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// Binary returns the path of a sealcache binary built from this checkout. It
// builds cmd/sealcache once per test binary, or uses $SEALCACHE_E2E_BINARY.
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() { builtBinary, buildErr = buildBinary() })
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtBinary
}

func buildBinary() (string, error) {
	if prebuilt := os.Getenv(BinaryEnv); prebuilt != "" {
		if !fileExists(prebuilt) {
			return "", fmt.Errorf("$%s is %q, which does not exist; unset it to build cmd/sealcache", BinaryEnv, prebuilt)
		}
		return prebuilt, nil
	}
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("the e2e tests build cmd/sealcache with the go tool, which is not on PATH: %w", err)
	}
	buildDir, err = os.MkdirTemp("", "sealcache-e2e-bin-")
	if err != nil {
		return "", fmt.Errorf("making a directory for the sealcache binary: %w", err)
	}
	bin := filepath.Join(buildDir, "sealcache")
	cmd := exec.Command(goTool, "build", "-o", bin, "./cmd/sealcache")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/sealcache failed (%v); fix the build, or set $%s to a prebuilt binary:\n%s", err, BinaryEnv, out)
	}
	return bin, nil
}
