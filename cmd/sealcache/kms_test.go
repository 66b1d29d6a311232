package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func runKMSCommand(t *testing.T, args ...string) cliResult {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := runKMS(t.Context(), args, &stdout, &stderr)
	return cliResult{stdout.String(), stderr.String(), code}
}

// An operator who wants to try CMEK makes a local key next to the server's
// data; the command says what the key is for and how to use it, and never
// replaces a key that exists.
func TestKMSCreateLocalKey(t *testing.T) {
	dataDir := t.TempDir()
	t.Setenv("SEALCACHE_DATA_DIR", "")
	t.Setenv("SEALCACHE_LOCAL_KMS_DIR", "")

	created := runKMSCommand(t, "create-local-key", "trial", "--data_dir", dataDir)
	path := filepath.Join(dataDir, "kms", "trial")
	created.want(t, 0, "Created the local key local-kms://trial in "+path, "for trying CMEK",
		"sealcache admin encryption enable --key_uri local-kms://trial")
	key, err := os.ReadFile(path)
	if err != nil || len(key) != 32 {
		t.Fatalf("key file %s: %d bytes, %v; want 32 random bytes", path, len(key), err)
	}
	if info, _ := os.Stat(path); info.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, want 0600", info.Mode().Perm())
	}

	again := runKMSCommand(t, "create-local-key", "--data_dir", dataDir, "trial")
	again.want(t, 1, "already exists", "The key was kept")
	if after, _ := os.ReadFile(path); !bytes.Equal(after, key) {
		t.Error("create-local-key replaced an existing key")
	}

	// --local_kms_dir wins, as it does for the server.
	keyDir := filepath.Join(t.TempDir(), "keys")
	runKMSCommand(t, "create-local-key", "other", "--data_dir", dataDir, "--local_kms_dir", keyDir).want(t, 0, filepath.Join(keyDir, "other"))

	// The server's environment variables work here too.
	t.Setenv("SEALCACHE_DATA_DIR", dataDir)
	runKMSCommand(t, "create-local-key", "from-env").want(t, 0, filepath.Join(dataDir, "kms", "from-env"))
}

func TestKMSUsageErrors(t *testing.T) {
	dir := t.TempDir()
	runKMSCommand(t).want(t, 2, "Usage: sealcache kms", "missing command")
	runKMSCommand(t, "help").want(t, 0, "Usage: sealcache kms create-local-key NAME")
	runKMSCommand(t, "delete-key", "x").want(t, 2, `unknown command "delete-key"`)
	runKMSCommand(t, "create-local-key", "--data_dir", dir).want(t, 2, "takes one key NAME")
	runKMSCommand(t, "create-local-key", "a", "b", "--data_dir", dir).want(t, 2, "takes one key NAME")
	runKMSCommand(t, "create-local-key", "no/slashes", "--data_dir", dir).want(t, 2, "bad key name")
	r := runKMSCommand(t, "create-local-key", "k", "--bogus")
	r.want(t, 2, "flag provided but not defined: -bogus")
	if lines := strings.Split(strings.TrimSpace(r.stderr), "\n"); !strings.Contains(lines[len(lines)-1], "-bogus") {
		t.Errorf("the error is not the last line:\n%s", r.stderr)
	}
}
