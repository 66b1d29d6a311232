package testproc

import (
	"errors"
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
