package e2etest

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// cliTimeout bounds one CLI command: a safety net against a hung server, not
// a performance check.
const cliTimeout = 2 * time.Minute

// CLIResult is what one run of the sealcache binary's CLI printed.
type CLIResult struct {
	Args     []string // the arguments after the binary; API keys never appear here
	Stdout   string
	Stderr   string
	ExitCode int
}

// Output is stderr followed by stdout.
func (r *CLIResult) Output() string { return r.Stderr + r.Stdout }

// Command is the command line as a user would type it, without the binary.
func (r *CLIResult) Command() string { return "sealcache " + strings.Join(r.Args, " ") }

// CLI runs the sealcache binary with args against this server, passing the
// server's HTTP address in $SEALCACHE_SERVER and apiKey in $SEALCACHE_API_KEY
// (so keys never show on a command line or in the test log). It returns
// whatever the command printed, whatever its exit code.
func (s *Server) CLI(apiKey string, args ...string) *CLIResult {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, Binary(s.t), args...)
	cmd.Env = append(os.Environ(), "SEALCACHE_SERVER="+s.HTTPURL(), "SEALCACHE_API_KEY="+apiKey)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := &CLIResult{Args: args, Stdout: stdout.String(), Stderr: stderr.String()}
	r.ExitCode = exitCode(s.t, err, r.Command())
	if ctx.Err() != nil {
		s.t.Fatalf("%s did not finish within %v:\n%s", r.Command(), cliTimeout, redact(r.Output(), apiKey))
	}
	s.t.Logf("%s: exit %d", r.Command(), r.ExitCode)
	return r
}

// Admin runs `sealcache admin args... --json` with apiKey, fails the test
// unless it exits 0, and decodes its JSON answer into answer (which may be
// nil to ignore it). answer is the admin API's response message, e.g.
// *adminv1.CreateApiKeyResponse for `keys create`.
func (s *Server) Admin(apiKey string, answer proto.Message, args ...string) {
	s.t.Helper()
	r := s.CLI(apiKey, append(append([]string{"admin"}, args...), "--json")...)
	if r.ExitCode != 0 {
		s.t.Fatalf("%s failed with exit code %d:\n%s", r.Command(), r.ExitCode, redact(r.Output(), apiKey))
	}
	if answer == nil {
		return
	}
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal([]byte(r.Stdout), answer); err != nil {
		// The answer may carry a secret: do not print it.
		s.t.Fatalf("%s printed something that is not a %T in JSON: %v", r.Command(), answer, err)
	}
}

// exitCode is the exit status of a command that ran; a command that could
// not run at all fails the test.
func exitCode(t testing.TB, err error, command string) int {
	var exitErr *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &exitErr):
		return exitErr.ExitCode()
	}
	t.Fatalf("running %s: %v", command, err)
	return -1
}
