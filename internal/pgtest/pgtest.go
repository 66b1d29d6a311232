// Package pgtest starts a real PostgreSQL server (Debian's postgresql
// package) for tests, on 127.0.0.1 with a data directory of its own.
//
// One server is shared by the whole test binary and started on first use;
// every NewDatabase call gets a fresh, empty database on it, dropped when
// the test ends. A test that must stop or kill the server itself starts a
// private one with Start. Servers die with the test binary (parent-death
// signal), so none outlives a crashed run.
//
// When PostgreSQL is not installed the tests are skipped with a message,
// except under CI=true, where they fail: `make test` installs it.
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sealcache/sealcache/internal/testproc"
)

// startTimeout bounds how long the server may take to accept connections:
// a safety net for a hung start, not synchronisation.
const startTimeout = 60 * time.Second

// Server is a running PostgreSQL server.
type Server struct {
	Port    int
	dataDir string
	proc    *testproc.Process
	dbs     atomic.Int64
}

// shared is the server of the whole test binary, started on first use.
var shared = sync.OnceValues(start)

// NewDatabase returns the URL of a fresh, empty database on the shared
// server, dropped when t ends.
func NewDatabase(t testing.TB) string {
	t.Helper()
	s, err := shared()
	if err != nil {
		unavailable(t, err)
	}
	return s.NewDatabase(t)
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
	testproc.Unavailable(t, "PostgreSQL", err, errNotInstalled)
}

var errNotInstalled = errors.New("PostgreSQL is not installed: apt-get install postgresql")

// URL is a connection URL for database db on s.
func (s *Server) URL(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", s.Port, db)
}

// NewDatabase creates a fresh, empty database on s, dropped when t ends.
func (s *Server) NewDatabase(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("test_%d_%d", os.Getpid(), s.dbs.Add(1))
	if err := s.exec(context.Background(), "CREATE DATABASE "+name); err != nil {
		t.Fatalf("creating test database: %v", err)
	}
	t.Cleanup(func() {
		// FORCE ends sessions a test left open, such as LISTEN connections.
		if err := s.exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Logf("dropping test database %s: %v", name, err)
		}
	})
	return s.URL(name)
}

func (s *Server) exec(ctx context.Context, sql string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.URL("postgres"))
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, sql)
	return err
}

// Stop kills the server at once (as a crash would) and removes its files.
func (s *Server) Stop() {
	s.proc.Stop(syscall.SIGQUIT, 30*time.Second) // SIGQUIT: immediate shutdown
	os.RemoveAll(s.dataDir)
}

// binDir finds Debian's PostgreSQL binaries, newest version first.
func binDir() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Sort(sort.Reverse(sort.StringSlice(dirs)))
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "postgres")); err == nil {
			return d, nil
		}
	}
	if p, err := exec.LookPath("postgres"); err == nil {
		return filepath.Dir(p), nil
	}
	return "", errNotInstalled
}

// start runs initdb and the server. PostgreSQL refuses to run as root, so
// as root both run as the postgres user, in a directory it owns.
func start() (*Server, error) {
	bin, err := binDir()
	if err != nil {
		return nil, err
	}
	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("running as root needs the postgres user: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	}
	dir, err := testproc.TempDir("sealcache-pg-")
	if err != nil {
		return nil, err
	}
	s, err := startIn(dir, bin, cred)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return s, nil
}

// startIn runs initdb and the server in dir, as cred's user when cred is
// not nil. A server that started but did not get ready is stopped.
func startIn(dir, bin string, cred *syscall.Credential) (*Server, error) {
	dataDir, sockDir := filepath.Join(dir, "data"), filepath.Join(dir, "sock")
	for _, d := range []string{dataDir, sockDir} {
		if err := os.Mkdir(d, 0o700); err != nil {
			return nil, err
		}
	}
	if cred != nil {
		for _, d := range []string{dir, dataDir, sockDir} {
			if err := os.Chown(d, int(cred.Uid), int(cred.Gid)); err != nil {
				return nil, err
			}
		}
	}
	initdb := exec.Command(filepath.Join(bin, "initdb"), "-D", dataDir, "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8", "--locale=C")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := initdb.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("initdb: %v\n%s", err, out)
	}
	port, err := testproc.FreePort()
	if err != nil {
		return nil, err
	}
	s := &Server{Port: port, dataDir: dir}
	// Durability settings are off: test data need not survive a machine crash.
	cmd := exec.Command(filepath.Join(bin, "postgres"), "-D", dataDir, "-p", strconv.Itoa(port), "-k", sockDir,
		"-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "synchronous_commit=off",
		"-c", "full_page_writes=off", "-c", "max_connections=300")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGQUIT}
	if s.proc, err = testproc.Start("postgres", cmd, filepath.Join(dir, "server.log")); err != nil {
		return nil, err
	}
	// Polls until the server accepts a query.
	if err := s.proc.WaitReady(startTimeout, func() error { return s.exec(context.Background(), "SELECT 1") }); err != nil {
		s.Stop()
		return nil, err
	}
	return s, nil
}
