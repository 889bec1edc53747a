//go:build !unix

package cli

import (
	"os/exec"
	"syscall"
)

func ownGroup(*exec.Cmd, bool) {}

func signalGroup(cmd *exec.Cmd, sig syscall.Signal) error {
	if sig == syscall.SIGKILL {
		return cmd.Process.Kill()
	}
	return cmd.Process.Signal(sig)
}
