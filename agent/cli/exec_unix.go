//go:build unix

package cli

import (
	"os/exec"
	"syscall"
)

// ownGroup runs cmd in a process group of its own, so that stopping it reaches what it
// started too (a shell's children, a test runner's workers). Not when stdin is a terminal:
// the command must stay in the terminal's foreground group to read from it, and Ctrl-C
// reaches that whole group anyway.
func ownGroup(cmd *exec.Cmd, interactive bool) {
	if !interactive {
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	}
}

// signalGroup sends sig to cmd's process group (its own, see ownGroup), else to cmd.
func signalGroup(cmd *exec.Cmd, sig syscall.Signal) error {
	if cmd.SysProcAttr != nil && cmd.SysProcAttr.Setpgid {
		return syscall.Kill(-cmd.Process.Pid, sig)
	}
	return cmd.Process.Signal(sig)
}
