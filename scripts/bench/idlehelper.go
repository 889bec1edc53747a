//go:build linux

package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The idle connections run from a helper process (this program again, with the hidden
// command below): 10,000 of them hold 10,000 descriptors at the client and as many at the
// upstream, and RLIMIT_NOFILE may not be raisable past 20,000 (a container without
// CAP_SYS_RESOURCE). The helper opens them, says so, and holds them until SIGINT.
const (
	idleHelperCmd   = "idle-helper"
	idleReadyPrefix = "BENCH_IDLE_READY "
	// idleHoldLimit bounds how long the helper holds its connections without being told.
	idleHoldLimit = 30 * time.Minute
)

// idleHelper is the helper's main: idle-helper ADDR N.
func idleHelper(args []string) int {
	if len(args) != 2 {
		fmt.Fprintf(os.Stderr, "usage: %s ADDR N\n", idleHelperCmd)
		return 2
	}
	n, err := strconv.Atoi(args[1])
	if err != nil || n < 1 {
		fmt.Fprintf(os.Stderr, "%s: N %q: want a positive number\n", idleHelperCmd, args[1])
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	conns, err := openIdle(ctx, args[0], n, idleWorkers, 5*time.Minute)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", idleHelperCmd, err)
		return 1
	}
	fmt.Printf("%s%d\n", idleReadyPrefix, len(conns))
	select {
	case <-ctx.Done():
	case <-time.After(idleHoldLimit):
	}
	closeAll(conns)
	return 0
}

// openIdleElsewhere runs the helper holding n idle connections to addr and returns it
// once they are all open; stop the child to close them.
func (b *bench) openIdleElsewhere(addr string, n int) (*child, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	c, err := startChild("idle client", exe, []string{idleHelperCmd, addr, strconv.Itoa(n)}, nil, b.exited)
	if err != nil {
		return nil, err
	}
	b.children = append(b.children, c)
	b.clean.add(func() { b.stopChild(c) })
	_, err = c.waitLine(b.ctx, 6*time.Minute, "that its connections are open", func(l string) string {
		if strings.HasPrefix(l, idleReadyPrefix) {
			return l
		}
		return ""
	})
	if err != nil {
		b.stopChild(c)
		return nil, err
	}
	return c, nil
}
