// Package testproc runs the servers that tests start as child processes
// (PostgreSQL in internal/pgtest, versitygw in internal/s3test): output to
// a log file, a channel closed when the process exits, a readiness poll
// that fails with the log when the process dies, a free port, and a
// temporary directory that a later run removes if this one could not.
package testproc

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// pollInterval is how often WaitReady asks again.
const pollInterval = 50 * time.Millisecond

// Process is a started child process.
type Process struct {
	name    string
	cmd     *exec.Cmd
	logFile *os.File
	exited  chan struct{}
}

// ExitedError is WaitReady's error when the process exited before it was
// ready; Log is what it wrote.
type ExitedError struct {
	Name string
	Log  string
}

func (e *ExitedError) Error() string { return fmt.Sprintf("%s exited during start: %s", e.Name, e.Log) }

// Start starts cmd with its output going to the file logPath (created);
// name is how errors call the program.
func Start(name string, cmd *exec.Cmd, logPath string) (*Process, error) {
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &Process{name: name, cmd: cmd, logFile: logFile, exited: make(chan struct{})}
	go func() { cmd.Wait(); close(p.exited) }()
	return p, nil
}

// WaitReady calls ready until it succeeds. It fails with an *ExitedError
// when the process exits first, and with ready's last error once timeout
// has passed (a safety net for a hung start, not synchronisation).
func (p *Process) WaitReady(timeout time.Duration, ready func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := ready()
		if err == nil {
			return nil
		}
		select {
		case <-p.exited:
			return &ExitedError{Name: p.name, Log: p.Log()}
		case <-time.After(pollInterval):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s was not ready within %v: %w", p.name, timeout, err)
		}
	}
}

// Pid is the process's id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Log is what the process has written so far.
func (p *Process) Log() string {
	data, _ := os.ReadFile(p.logFile.Name())
	return strings.TrimSpace(string(data))
}

// Stop sends sig, waits up to grace for the process to exit, then kills
// it; it closes the log file.
func (p *Process) Stop(sig os.Signal, grace time.Duration) {
	if err := p.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		p.cmd.Process.Kill()
	}
	select {
	case <-p.exited:
	case <-time.After(grace):
		p.cmd.Process.Kill()
		<-p.exited
	}
	p.logFile.Close()
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// TempDir creates a fresh temporary directory for a server, named prefix,
// then the test process's id, then a random part. A server shared by a
// test binary dies with it and cannot remove its own directory, so TempDir
// first removes the directories under prefix of test processes that have
// exited.
func TempDir(prefix string) (string, error) {
	removeDirsOfExitedProcesses(prefix)
	return os.MkdirTemp("", fmt.Sprintf("%s%d-*", prefix, os.Getpid()))
}

func removeDirsOfExitedProcesses(prefix string) {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), prefix+"*"))
	for _, d := range dirs {
		pidText, _, ok := strings.Cut(strings.TrimPrefix(filepath.Base(d), prefix), "-")
		pid, err := strconv.Atoi(pidText)
		if !ok || err != nil || pid <= 0 || pid == os.Getpid() {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			os.RemoveAll(d)
		}
	}
}

// Unavailable ends t when a server it needs could not start. Outside CI a
// program that is not installed (err wraps notInstalled) skips the test
// and says how to get it; anything else, and everything on CI, fails it.
func Unavailable(t testing.TB, what string, err, notInstalled error) {
	t.Helper()
	if OnCI() || !errors.Is(err, notInstalled) {
		t.Fatalf("%s for tests: %v", what, err)
	}
	t.Skipf("%s for tests: %v (run `make test`, which installs it)", what, err)
}

// OnCI reports whether the tests run on CI ($CI set, and not "false"),
// where `make test` has installed every program they need: a missing one
// fails the test there instead of skipping it.
func OnCI() bool {
	ci := os.Getenv("CI")
	return ci != "" && ci != "false"
}
