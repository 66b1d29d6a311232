package e2etest

import "time"

// Kill ends the server with SIGKILL, as a crash, the OOM killer or a power
// cut of the process would: no shutdown code runs, uploads in flight stop
// mid-write. It returns once the process is gone; the data directory can
// then be given to StartServerIn. A killed server is not stopped again
// when the test ends.
func (s *Server) Kill() {
	s.t.Helper()
	s.stopOnce.Do(func() {
		_ = s.cmd.Process.Kill()
		timeout := time.NewTimer(stopTimeout)
		defer timeout.Stop()
		select {
		case <-s.exited:
		case <-timeout.C:
			s.t.Fatalf("sealcache did not exit within %v of SIGKILL", stopTimeout)
		}
		s.waitErr = s.cmd.Wait() // "signal: killed", as intended
	})
}
