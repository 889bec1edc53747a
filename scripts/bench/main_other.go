//go:build !linux

// Command bench needs Linux: it reads the relay's and agent's memory and CPU from /proc.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "bench: scripts/bench runs on Linux only (it reads /proc for memory and CPU)")
	os.Exit(1)
}
