package main

import (
	"os"
	"syscall"
)

// sysProcAttr puts a child in its own process group, so a Ctrl-C in the terminal reaches
// only the demo, which then stops the agent before the relay; and has the kernel kill the
// child if the demo itself dies without cleaning up.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

func interrupt(p *os.Process) error { return p.Signal(os.Interrupt) }
