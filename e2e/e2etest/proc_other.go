//go:build !linux

package e2etest

import "os/exec"

// setParentDeathSignal has no portable equivalent outside Linux; the cleanup
// registered by StartServer still stops the server.
func setParentDeathSignal(*exec.Cmd) {}
