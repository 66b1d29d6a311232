package e2etest

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sealcache/sealcache/internal/testproc"
)

// BazelEnv names an environment variable that, when set, is the bazel binary
// to run instead of the one on PATH.
const BazelEnv = "SEALCACHE_E2E_BAZEL"

// commandTimeout bounds one Bazel command when the test has no deadline of
// its own: a safety net against a hung build, not a performance check.
const commandTimeout = 10 * time.Minute

// Bazel runs Bazel commands in the repository root with an output root of its
// own, so tests never share or leave behind Bazel state.
type Bazel struct {
	t              testing.TB
	bin            string
	workspace      string // the repository root, which holds WORKSPACE
	outputUserRoot string
}

// NewBazel returns a Bazel client with a fresh output root. Its server is shut
// down when the test ends. The test is skipped when bazel is not installed,
// unless $CI is set, where a missing bazel fails it.
func NewBazel(t testing.TB) *Bazel {
	t.Helper()
	bin := findBazel(t)
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	b := &Bazel{t: t, bin: bin, workspace: root, outputUserRoot: t.TempDir()}
	// Registered after t.TempDir, so it runs before the directory is removed.
	t.Cleanup(b.shutdown)
	return b
}

// NewBazelIn is NewBazel for another workspace than the repository's, such
// as a temporary one a test wrote (see e2e/testdata/remote_asset).
func NewBazelIn(t testing.TB, workspace string) *Bazel {
	t.Helper()
	b := NewBazel(t)
	b.workspace = workspace
	return b
}

func findBazel(t testing.TB) string {
	t.Helper()
	if bin := os.Getenv(BazelEnv); bin != "" {
		return bin
	}
	bin, err := exec.LookPath("bazel")
	if err == nil {
		return bin
	}
	if testproc.OnCI() {
		t.Fatalf("bazel is not on PATH and $CI is set, so the Bazel end-to-end tests cannot be skipped: run `make test`, which installs Debian's bazel-bootstrap, or set $%s", BazelEnv)
	}
	t.Skipf("bazel is not on PATH: skipping the Bazel end-to-end tests (`make test` installs Debian's bazel-bootstrap; or set $%s)", BazelEnv)
	return ""
}

// startupFlags go before the command. The home rc file of whoever runs the
// tests, and any .bazelrc in the repository, are ignored so that tests see only
// the flags they pass; the system rc file stays, because Debian's bazel needs
// the install base and JDK it names.
func (b *Bazel) startupFlags() []string {
	return []string{
		"--output_user_root=" + b.outputUserRoot,
		"--max_idle_secs=60", // a leaked server exits on its own
		"--nohome_rc",
		"--noworkspace_rc",
	}
}

// commonFlags go after commands that build (and so accept build options).
func (b *Bazel) commonFlags() []string {
	root, err := RepoRoot()
	if err != nil {
		b.t.Fatal(err)
	}
	stubs := filepath.Join(root, "e2e", "testdata", "stubs")
	return []string{
		"--symlink_prefix=/", // no bazel-* symlinks in the checkout
		"--noshow_progress",
		"--color=no",
		"--curses=no",
		"--nosandbox_debug", // Debian's system rc turns it on; it floods the output
		// Bazel 4.2.3 fetches these for C++ rules and tests; the stubs keep it offline.
		"--override_repository=rules_cc=" + filepath.Join(stubs, "rules_cc"),
		"--override_repository=rules_java=" + filepath.Join(stubs, "rules_java"),
		"--override_repository=remote_coverage_tools=" + filepath.Join(stubs, "remote_coverage_tools"),
	}
}

// commandsWithBuildOptions are the Bazel commands that take commonFlags.
var commandsWithBuildOptions = map[string]bool{
	"build": true, "test": true, "run": true, "coverage": true,
	"clean": true, "info": true, "cquery": true, "aquery": true, "fetch": true,
}

// Run runs one Bazel command and returns what it printed, whatever its exit
// code. args follow the command and the harness's own flags, so a flag in args
// wins over the harness's.
func (b *Bazel) Run(command string, args ...string) *Result {
	b.t.Helper()
	argv := append(b.startupFlags(), command)
	if commandsWithBuildOptions[command] {
		argv = append(argv, b.commonFlags()...)
		if command == "test" {
			argv = append(argv, "--test_output=errors")
		}
	}
	argv = append(argv, args...)

	ctx, cancel := context.WithTimeout(context.Background(), b.timeout())
	defer cancel()
	cmd := exec.CommandContext(ctx, b.bin, argv...)
	cmd.Dir = b.workspace
	cmd.Env = b.env()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	started := time.Now()
	err := cmd.Run()

	r := newResult(argv, strings.Join(append([]string{command}, args...), " "), stdout.String(), stderr.String())
	r.ExitCode = exitCode(b.t, err, "bazel "+r.Command())
	if ctx.Err() != nil {
		b.t.Fatalf("bazel %s did not finish within %v:\n%s", r.Command(), b.timeout(), r.RedactedOutput())
	}
	b.t.Logf("bazel %s: exit %d after %v; %s", r.Command(), r.ExitCode, time.Since(started).Round(100*time.Millisecond), r.Processes.Line)
	return r
}

// Build runs `bazel build args...` and fails the test unless it succeeds.
func (b *Bazel) Build(args ...string) *Result {
	b.t.Helper()
	return b.mustSucceed(b.Run("build", args...))
}

// Test runs `bazel test args...` and fails the test unless the build succeeds
// and every test passes.
func (b *Bazel) Test(args ...string) *Result {
	b.t.Helper()
	return b.mustSucceed(b.Run("test", args...))
}

// CleanExpunge deletes the whole output base (outputs, action cache, fetched
// repositories) and stops the Bazel server, so the next build must take every
// action result from the remote cache or run it again.
func (b *Bazel) CleanExpunge() {
	b.t.Helper()
	b.mustSucceed(b.Run("clean", "--expunge"))
}

// Info returns the value `bazel info key args...` prints, e.g. "bazel-bin".
func (b *Bazel) Info(key string, args ...string) string {
	b.t.Helper()
	r := b.mustSucceed(b.Run("info", append([]string{key}, args...)...))
	return strings.TrimSpace(r.Stdout)
}

// BinFile returns the absolute path of an output below bazel-bin, such as
// MarkerFile, for the default configuration.
func (b *Bazel) BinFile(rel string) string {
	b.t.Helper()
	return filepath.Join(b.Info("bazel-bin"), rel)
}

func (b *Bazel) mustSucceed(r *Result) *Result {
	b.t.Helper()
	if r.ExitCode != 0 {
		b.t.Fatalf("bazel %s failed with exit code %d:\n%s", r.Command(), r.ExitCode, r.RedactedOutput())
	}
	return r
}

func (b *Bazel) timeout() time.Duration {
	if d, ok := b.t.(interface{ Deadline() (time.Time, bool) }); ok {
		if deadline, ok := d.Deadline(); ok {
			// Leave time for cleanups to shut Bazel down.
			if left := time.Until(deadline) - 30*time.Second; left > 0 && left < commandTimeout {
				return left
			}
		}
	}
	return commandTimeout
}

func (b *Bazel) env() []string {
	env := os.Environ()
	if os.Getenv("HOME") == "" {
		// The Bazel client wants a home directory even with --nohome_rc.
		env = append(env, "HOME="+b.outputUserRoot)
	}
	return env
}

// shutdown stops the Bazel server and makes the output root removable: Bazel
// leaves read-only directories that t.TempDir's cleanup could not delete
// (except as root).
func (b *Bazel) shutdown() {
	cmd := exec.Command(b.bin, append(b.startupFlags(), "shutdown")...)
	cmd.Dir = b.workspace
	cmd.Env = b.env()
	if out, err := cmd.CombinedOutput(); err != nil {
		b.t.Errorf("bazel shutdown: %v\n%s", err, out)
	}
	_ = filepath.WalkDir(b.outputUserRoot, func(path string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			_ = os.Chmod(path, 0o755)
		}
		return nil
	})
}
