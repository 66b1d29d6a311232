package e2etest

import (
	"bufio"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The server writes these files into its data directory on first start.
const (
	AdminKeyFile    = "initial-admin-api-key"
	OperatorKeyFile = "initial-operator-api-key"
)

// startTimeout bounds how long a server may take to log that it is serving,
// and stopTimeout how long it may take to exit after SIGTERM. Both are safety
// nets for a hung server, not synchronisation.
const (
	startTimeout = 60 * time.Second
	stopTimeout  = 30 * time.Second
)

// Server is a running sealcache process on loopback ports.
type Server struct {
	GRPCAddr string // host:port of the REAPI gRPC listener
	HTTPAddr string // host:port of the HTTP listener
	DataDir  string

	t        testing.TB
	cmd      *exec.Cmd
	log      *syncBuffer
	exited   chan struct{} // closed once stderr reaches EOF, i.e. the process is gone
	stopOnce sync.Once
	waitErr  error
}

// StartServer starts sealcache with a fresh data directory. extraFlags are
// appended to the command line. The server is stopped with SIGTERM when the
// test ends, and its log is printed if the test failed.
func StartServer(t testing.TB, extraFlags ...string) *Server {
	t.Helper()
	return StartServerIn(t, t.TempDir(), extraFlags...)
}

// StartServerIn starts sealcache on an existing data directory, for instance
// the one of a server that was stopped earlier in the test.
func StartServerIn(t testing.TB, dataDir string, extraFlags ...string) *Server {
	t.Helper()
	bin := Binary(t)
	args := append([]string{
		"--data_dir", dataDir,
		"--grpc_address", "127.0.0.1:0",
		"--http_address", "127.0.0.1:0",
	}, extraFlags...)

	s := &Server{DataDir: dataDir, t: t, log: &syncBuffer{}, exited: make(chan struct{})}
	s.cmd = exec.Command(bin, args...)
	s.cmd.Stdout = s.log
	setParentDeathSignal(s.cmd)
	stderr, err := s.cmd.StderrPipe()
	if err != nil {
		t.Fatalf("sealcache stderr pipe: %v", err)
	}
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", bin, err)
	}
	t.Cleanup(func() {
		s.Stop()
		if t.Failed() {
			t.Logf("sealcache log (%s):\n%s", redact(strings.Join(args, " "), flagSecrets(args)...), s.redactedLog())
		}
	})

	ready := make(chan servingLine, 1)
	go s.drain(stderr, ready)

	timeout := time.NewTimer(startTimeout)
	defer timeout.Stop()
	select {
	case addrs := <-ready:
		s.GRPCAddr, s.HTTPAddr = addrs.grpc, addrs.http
		return s
	case <-s.exited:
		s.Stop()
		t.Fatalf("sealcache exited before it was serving (%v); its log:\n%s", s.waitErr, s.redactedLog())
	case <-timeout.C:
		t.Fatalf("sealcache did not log %q within %v; its log:\n%s", "msg=serving", startTimeout, s.redactedLog())
	}
	return nil
}

// drain copies the server's stderr into its log until EOF, and reports the
// first "serving" line on ready. Reading to the end keeps the server from
// blocking on a full pipe.
func (s *Server) drain(stderr io.Reader, ready chan<- servingLine) {
	defer close(s.exited)
	r := bufio.NewReader(stderr)
	announced := false
	for {
		line, err := r.ReadString('\n')
		s.log.WriteString(line)
		if !announced {
			if addrs, ok := parseServingLine(line); ok {
				ready <- addrs
				announced = true
			}
		}
		if err != nil {
			return
		}
	}
}

// Stop sends SIGTERM and waits for the server to exit. It is safe to call more
// than once; the test fails if the server does not exit cleanly.
func (s *Server) Stop() {
	s.stopOnce.Do(func() {
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		timeout := time.NewTimer(stopTimeout)
		defer timeout.Stop()
		select {
		case <-s.exited:
		case <-timeout.C:
			s.t.Errorf("sealcache did not exit within %v of SIGTERM; killing it", stopTimeout)
			_ = s.cmd.Process.Kill()
			<-s.exited
		}
		s.waitErr = s.cmd.Wait()
		if s.waitErr != nil {
			s.t.Errorf("sealcache did not shut down cleanly on SIGTERM: %v", s.waitErr)
		}
	})
}

// Log returns everything the server has written to stdout and stderr so far.
func (s *Server) Log() string { return s.log.String() }

// redactedLog is the log without the keys the server announces on first
// start, for printing in test output.
func (s *Server) redactedLog() string {
	return redact(s.Log(), s.AdminKey(), s.OperatorKey())
}

// AdminKey returns the API key of the admin of org "default" that the server
// wrote on first start, or "" when the server wrote none.
func (s *Server) AdminKey() string { return s.readKey(AdminKeyFile) }

// OperatorKey returns the operator API key the server wrote on first start, or
// "" when the server wrote none.
func (s *Server) OperatorKey() string { return s.readKey(OperatorKeyFile) }

func (s *Server) readKey(name string) string {
	b, err := os.ReadFile(filepath.Join(s.DataDir, name))
	if errors.Is(err, os.ErrNotExist) {
		return ""
	}
	if err != nil {
		s.t.Fatalf("reading %s: %v", name, err)
	}
	return strings.TrimSpace(string(b))
}

// HTTPURL is the base URL of the HTTP listener, e.g. "http://127.0.0.1:8080".
func (s *Server) HTTPURL() string { return "http://" + s.HTTPAddr }

// GRPCFlags returns the Bazel flags that use this server as a gRPC remote
// cache with apiKey (none when apiKey is "").
func (s *Server) GRPCFlags(apiKey string) []string {
	flags := []string{"--remote_cache=grpc://" + s.GRPCAddr}
	if apiKey != "" {
		flags = append(flags, "--remote_header=x-api-key="+apiKey)
	}
	return flags
}

// HTTPFlags returns the Bazel flags that use this server as an HTTP remote
// cache with apiKey as the basic-auth password (none when apiKey is "").
func (s *Server) HTTPFlags(apiKey string) []string {
	if apiKey == "" {
		return []string{"--remote_cache=http://" + s.HTTPAddr}
	}
	return []string{"--remote_cache=http://sealcache:" + apiKey + "@" + s.HTTPAddr}
}

// servingLine holds the addresses from the server's "serving" log line.
type servingLine struct{ grpc, http string }

// slogField matches one key=value pair of log/slog's text format; values with
// spaces or quotes are quoted Go strings.
var slogField = regexp.MustCompile(`([A-Za-z0-9_.]+)=("(?:[^"\\]|\\.)*"|\S*)`)

// parseServingLine recognises the line the server logs once both listeners
// accept connections:
//
//	time=... level=INFO msg=serving grpc_address=127.0.0.1:PORT http_address=127.0.0.1:PORT
//
// in log/slog's text format.
func parseServingLine(line string) (servingLine, bool) {
	fields := map[string]string{}
	for _, m := range slogField.FindAllStringSubmatch(line, -1) {
		value := m[2]
		if strings.HasPrefix(value, `"`) {
			if unquoted, err := strconv.Unquote(value); err == nil {
				value = unquoted
			}
		}
		fields[m[1]] = value
	}
	// Also accept slog's default handler ("2026/11/22 12:00:00 INFO serving
	// grpc_address=..."), which has no msg= field.
	isServing := fields["msg"] == "serving" || (fields["msg"] == "" && slices.Contains(strings.Fields(line), "serving"))
	if !isServing || fields["grpc_address"] == "" || fields["http_address"] == "" {
		return servingLine{}, false
	}
	return servingLine{grpc: fields["grpc_address"], http: fields["http_address"]}, true
}

// syncBuffer is a strings.Builder safe for one writer and many readers.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) WriteString(s string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.b.WriteString(s)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
