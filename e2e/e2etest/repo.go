package e2etest

import (
	"fmt"
	"os"
	"path/filepath"
)

// Marker is written many times into the output of the genrule
// //e2e/testdata/workspace:marker_txt. Tests of sealed storage check that it
// never appears in plain text under the server's data directory. Keep it in
// sync with e2e/testdata/workspace/BUILD.
const Marker = "SEALCACHE-E2E-MARKER"

// MarkerLines is how many lines of marker.txt carry Marker.
const MarkerLines = 5000

// Targets is the Bazel target pattern of the e2e workspace: two genrules, a
// cc_library, a cc_binary and an sh_test that runs the binary.
const Targets = "//e2e/testdata/workspace/..."

// HelloTest is the label of the sh_test in Targets.
const HelloTest = "//e2e/testdata/workspace:hello_test"

// MarkerFile is the path of the marker genrule's output below bazel-bin.
const MarkerFile = "e2e/testdata/workspace/marker.txt"

// RepoRoot returns the root of the sealcache checkout (the directory holding
// go.mod and WORKSPACE), found by walking up from the working directory, which
// `go test` sets to the package under test.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("finding the repository root: %w", err)
	}
	for {
		if fileExists(filepath.Join(dir, "go.mod")) && fileExists(filepath.Join(dir, "WORKSPACE")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no directory above the working directory holds both go.mod and WORKSPACE; run the tests inside the sealcache checkout")
		}
		dir = parent
	}
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
