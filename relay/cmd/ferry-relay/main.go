// Command ferry-relay is the relay ferry agents connect to.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/ferrytunnel/ferry/relay/cli"
)

// version is stamped by the linker: -X main.version=...
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args, cli.Env{Stdout: os.Stdout, Stderr: os.Stderr, Version: version})
	stop()
	os.Exit(code)
}
