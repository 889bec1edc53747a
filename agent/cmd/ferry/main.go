// Command ferry is the agent: it puts local services on the internet through a ferry relay.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/ferrytunnel/ferry/agent/cli"
	"github.com/ferrytunnel/ferry/agent/console"
)

// version is stamped by the linker: -X main.version=...
var version = "dev"

func main() {
	// SIGHUP (a closed terminal or tmux window) stops the agent cleanly too: its tunnels are
	// released at once instead of staying bound until the relay misses the agent.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	code := cli.Main(ctx, os.Args, cli.Env{
		Stdout: os.Stdout, Stderr: os.Stderr, Terminal: console.IsTerminal(os.Stdout), Version: version,
	})
	stop()
	os.Exit(code)
}
