//go:build linux

package main

import "syscall"

// sysProcAttr puts a child in its own process group (so the bench can signal it and
// everything it started, and a Ctrl-C in the terminal reaches only the bench), and has
// the kernel kill the child if the bench dies without cleaning up (a panic in a
// goroutine, SIGKILL).
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
