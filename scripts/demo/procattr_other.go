//go:build !unix

package main

import (
	"os"
	"syscall"
)

func sysProcAttr() *syscall.SysProcAttr { return nil }

// interrupt cannot send SIGINT here; the caller kills the process instead.
func interrupt(p *os.Process) error { return p.Kill() }
