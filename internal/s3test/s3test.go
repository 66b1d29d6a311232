// Package s3test starts a real S3-compatible server for tests: versitygw
// (github.com/versity/versitygw) serving a temporary directory through its
// posix backend, on 127.0.0.1 only.
//
// One server is shared by the whole test binary and started on first use;
// every NewBucket call gets a fresh, empty bucket on it, removed when the
// test ends. A test that must stop the server itself (to see what a client
// does when the endpoint goes away) starts a private one with Start.
// Servers die with the test binary (parent-death signal), so none outlives
// a crashed run; the next start removes what their directories held.
//
// The binary is looked up in $SEALCACHE_VERSITYGW, then
// <repo root>/.tools/bin/versitygw (where `make tools` installs the pinned
// version), then PATH. When it is missing the tests are skipped with a
// message, except under CI=true, where they fail.
//
// The server is started with a scrubbed environment, so no VGW_* variable
// of the caller's can turn on a listener or a network sink (admin API,
// WebUI, metrics, event notifications, audit webhooks): none of those runs
// unless a flag names it, and this package names none of them.
package s3test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/sealcache/sealcache/internal/testproc"
)

// Region is the region the servers announce and clients sign for.
const Region = "us-east-1"

// startTimeout bounds how long the server may take to answer its first
// request: a safety net for a hung start, not synchronisation.
const startTimeout = 60 * time.Second

// startAttempts is how often a start is tried with a fresh port, since a
// port found free can be taken by another process before the server binds it.
const startAttempts = 3

// binaryEnv names the variable that may point at the versitygw binary.
const binaryEnv = "SEALCACHE_VERSITYGW"

// Server is a running versitygw. Clients reach it at Endpoint with
// path-style addressing, signing with AccessKeyID and SecretAccessKey for
// Region.
type Server struct {
	Endpoint        string // "http://127.0.0.1:PORT"
	AccessKeyID     string
	SecretAccessKey string

	tmpDir     string // everything of this server's: removed by Stop
	bucketsDir string // the posix backend's root: one directory per bucket
	proc       *testproc.Process
	buckets    atomic.Int64
	client     *s3.Client
}

// shared is the server of the whole test binary, started on first use.
var shared = sync.OnceValues(start)

// NewBucket returns the shared server and the name of a fresh, empty
// bucket on it, removed when t ends.
func NewBucket(t testing.TB) (*Server, string) {
	t.Helper()
	s, err := shared()
	if err != nil {
		unavailable(t, err)
	}
	return s, s.NewBucket(t)
}

// Start starts a private server for t, stopped when t ends.
func Start(t testing.TB) *Server {
	t.Helper()
	s, err := start()
	if err != nil {
		unavailable(t, err)
	}
	t.Cleanup(s.Stop)
	return s
}

func unavailable(t testing.TB, err error) {
	t.Helper()
	testproc.Unavailable(t, "S3 server", err, errNotInstalled)
}

var errNotInstalled = errors.New("versitygw is not installed in .tools/bin, $" + binaryEnv + " or PATH")

// Client is an S3 client for s, signed as its root user: for setting up
// buckets and for checking from outside what a store left behind.
func (s *Server) Client() *s3.Client { return s.client }

// NewBucket creates a fresh, empty bucket on s, removed when t ends.
func (s *Server) NewBucket(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("test-%d-%d", os.Getpid(), s.buckets.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := s.client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(name)}); err != nil {
		t.Fatalf("creating test bucket %s: %v", name, err)
	}
	t.Cleanup(func() {
		// The posix backend keeps a bucket, its objects and its unfinished
		// multipart uploads in one directory, so removing that directory is
		// the whole cleanup, however much a test left in it.
		if err := os.RemoveAll(filepath.Join(s.bucketsDir, name)); err != nil {
			t.Logf("removing test bucket %s: %v", name, err)
		}
	})
	return name
}

// Stop kills the server at once (as a crash would) and removes its files.
// Clients see "connection refused" from then on.
func (s *Server) Stop() {
	s.proc.Stop(os.Kill, 0)
	os.RemoveAll(s.tmpDir)
}

// binary finds the versitygw executable.
func binary() (string, error) {
	if p := os.Getenv(binaryEnv); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("$%s names %s: %w", binaryEnv, p, err)
		}
		return p, nil
	}
	if root, ok := repoRoot(); ok {
		p := filepath.Join(root, ".tools", "bin", "versitygw")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p, nil
	}
	return "", errNotInstalled
}

// repoRoot walks up from the working directory (a test's package
// directory) to the directory holding go.mod.
func repoRoot() (string, bool) {
	dir, err := os.Getwd()
	if err != nil {
		return "", false
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, true
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", false
		}
		dir = parent
	}
}

// start runs versitygw on a fresh directory and a fresh loopback port,
// trying another port if the chosen one was taken meanwhile.
func start() (*Server, error) {
	bin, err := binary()
	if err != nil {
		return nil, err
	}
	for attempt := 1; ; attempt++ {
		s, err := startOnce(bin)
		if err == nil || !errors.Is(err, errPortTaken) || attempt == startAttempts {
			return s, err
		}
	}
}

var errPortTaken = errors.New("port already in use")

// dirPrefix starts the name of every server's temporary directory (see
// testproc.TempDir).
const dirPrefix = "sealcache-s3test-"

func startOnce(bin string) (*Server, error) {
	dir, err := testproc.TempDir(dirPrefix)
	if err != nil {
		return nil, err
	}
	root := filepath.Join(dir, "buckets")
	if err := os.Mkdir(root, 0o700); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	port, err := testproc.FreePort()
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	s := &Server{
		Endpoint:        "http://" + addr,
		AccessKeyID:     "test" + randomHex(8),
		SecretAccessKey: randomHex(20),
		tmpDir:          dir,
		bucketsDir:      root,
	}
	s.client = s3.New(s3.Options{
		BaseEndpoint: aws.String(s.Endpoint),
		Region:       Region,
		Credentials:  credentials.NewStaticCredentialsProvider(s.AccessKeyID, s.SecretAccessKey, ""),
		UsePathStyle: true,
	})
	// Global flags first, then the backend and its directory. Only --port
	// opens a listener; the admin API, WebUI, website endpoint, pprof,
	// metrics and event sinks all stay off because no flag names them.
	cmd := exec.Command(bin,
		"--access", s.AccessKeyID,
		"--secret", s.SecretAccessKey,
		"--port", addr,
		"--region", Region,
		"--quiet",
		"posix", root)
	// A scrubbed environment: nothing of the caller's VGW_* or ROOT_*
	// variables reaches the server.
	cmd.Env = []string{"HOME=" + dir, "TMPDIR=" + dir}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if s.proc, err = testproc.Start("versitygw", cmd, filepath.Join(dir, "server.log")); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	// Polls with a real signed request (ListBuckets).
	err = s.proc.WaitReady(startTimeout, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := s.client.ListBuckets(ctx, &s3.ListBucketsInput{}, func(o *s3.Options) { o.RetryMaxAttempts = 1 })
		return err
	})
	var exited *testproc.ExitedError
	if errors.As(err, &exited) && strings.Contains(exited.Log, "address already in use") {
		err = errPortTaken
	}
	if err != nil {
		s.Stop()
		return nil, err
	}
	return s, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
