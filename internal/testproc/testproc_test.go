package testproc

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestWaitReadyReportsAnExitWithTheLog(t *testing.T) {
	p, err := Start("sh", exec.Command("sh", "-c", "echo address already in use; exit 3"), filepath.Join(t.TempDir(), "log"))
	if err != nil {
		t.Fatal(err)
	}
	err = p.WaitReady(time.Minute, func() error { return errors.New("not yet") })
	var exited *ExitedError
	if !errors.As(err, &exited) || !strings.Contains(exited.Log, "address already in use") {
		t.Fatalf("got %v, want an ExitedError with the log", err)
	}
	p.Stop(syscall.SIGTERM, time.Second)
}

func TestWaitReadyReturnsOnceReadyAndStopEndsTheProcess(t *testing.T) {
	p, err := Start("sleep", exec.Command("sleep", "600"), filepath.Join(t.TempDir(), "log"))
	if err != nil {
		t.Fatal(err)
	}
	calls := 0
	if err := p.WaitReady(time.Minute, func() error {
		if calls++; calls < 3 {
			return errors.New("not yet")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	p.Stop(os.Kill, time.Second)
	select {
	case <-p.exited:
	default:
		t.Fatal("the process still runs after Stop")
	}
}

// TempDir removes the directories of test processes that have exited, and
// keeps those of running ones and of other prefixes.
func TestTempDirRemovesOnlyTheDirsOfExitedProcesses(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	exited := exec.Command("true")
	if err := exited.Run(); err != nil {
		t.Fatal(err)
	}
	mkdir := func(name string) string {
		d := filepath.Join(tmp, name)
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
		return d
	}
	gone := mkdir(fmt.Sprintf("testproc-x-%d-abc", exited.ProcessState.Pid()))
	kept := []string{
		mkdir(fmt.Sprintf("testproc-x-%d-abc", os.Getppid())), // a running process
		mkdir(fmt.Sprintf("testproc-y-%d-abc", exited.ProcessState.Pid())),
		mkdir("testproc-x-notapid"),
	}
	dir, err := TempDir("testproc-x-")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(filepath.Base(dir), fmt.Sprintf("testproc-x-%d-", os.Getpid())) || filepath.Dir(dir) != tmp {
		t.Errorf("TempDir made %s; want %s/testproc-x-%d-...", dir, tmp, os.Getpid())
	}
	if _, err := os.Stat(gone); !os.IsNotExist(err) {
		t.Errorf("the directory of an exited process is still there: %v", err)
	}
	for _, d := range append(kept, dir) {
		if _, err := os.Stat(d); err != nil {
			t.Errorf("%s was removed: %v", d, err)
		}
	}
}
