// Command upstream is the set of small servers and one client that scripts/e2e.sh
// drives ferry with, so the e2e run needs nothing beyond Go, curl and openssl (no python,
// nc or socat). Every server listens on the address given (127.0.0.1:0 picks a free port)
// and prints "listening HOST:PORT" on stdout once it accepts connections.
//
//	upstream http ADDR                 HTTP: GET / echoes the request as JSON
//	                                   (method, path, host, headers)
//	upstream echo ADDR                 TCP: echoes every byte until the client half-closes,
//	                                   then closes
//	upstream lineecho ADDR             TCP: echoes one line, then closes
//	upstream tlsecho ADDR CERT KEY     TLS with CERT/KEY: echoes one line, then closes
//	upstream client ADDR               TCP client: sends stdin, half-closes, copies the
//	                                   answer to stdout until the server closes
//	upstream timeout SECS CMD ARGS...  runs CMD (stdio inherited); after SECS sends it
//	                                   SIGTERM (SIGKILL 2s later) and exits 124, else
//	                                   exits with CMD's code (like coreutils timeout,
//	                                   which macOS lacks)
package main

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func usage() {
	fmt.Fprintln(os.Stderr, "usage: upstream http|echo|lineecho ADDR | tlsecho ADDR CERT KEY | client ADDR")
	os.Exit(2)
}

func main() {
	if len(os.Args) < 3 {
		usage()
	}
	mode, addr := os.Args[1], os.Args[2]
	if mode == "timeout" {
		os.Exit(runTimeout(addr, os.Args[3:]))
	}
	if mode == "client" {
		if err := client(addr); err != nil {
			fmt.Fprintln(os.Stderr, "upstream client:", err)
			os.Exit(1)
		}
		return
	}

	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "upstream:", err)
		os.Exit(1)
	}
	var serve func(net.Conn)
	switch mode {
	case "http":
	case "echo":
		serve = echo
	case "lineecho":
		serve = lineEcho
	case "tlsecho":
		if len(os.Args) != 5 {
			usage()
		}
		cert, err := tls.LoadX509KeyPair(os.Args[3], os.Args[4])
		if err != nil {
			fmt.Fprintln(os.Stderr, "upstream tlsecho:", err)
			os.Exit(1)
		}
		ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
		serve = lineEcho
	default:
		usage()
	}

	// Exit quietly on SIGTERM/SIGINT: the script stops us that way.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
	go func() {
		<-sig
		ln.Close()
		os.Exit(0)
	}()

	fmt.Printf("listening %s\n", ln.Addr())
	if mode == "http" {
		srv := &http.Server{Handler: http.HandlerFunc(echoRequest), ReadHeaderTimeout: 10 * time.Second}
		err = srv.Serve(ln)
	} else {
		for {
			c, aerr := ln.Accept()
			if aerr != nil {
				err = aerr
				break
			}
			go serve(c)
		}
	}
	fmt.Fprintln(os.Stderr, "upstream:", err)
	os.Exit(1)
}

// echoRequest answers with the request as indented JSON, one header per line:
//
//	"X-Forwarded-Proto": "https",
func echoRequest(w http.ResponseWriter, r *http.Request) {
	headers := map[string]string{}
	keys := make([]string, 0, len(r.Header))
	for k := range r.Header {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		headers[k] = strings.Join(r.Header[k], ", ")
	}
	body, _ := json.MarshalIndent(map[string]any{
		"server":  "ferry-e2e-upstream",
		"method":  r.Method,
		"path":    r.URL.Path,
		"host":    r.Host,
		"proto":   r.Proto,
		"headers": headers,
	}, "", "  ")
	w.Header().Set("Content-Type", "application/json")
	w.Write(append(body, '\n')) //nolint:errcheck // the client went away
}

func echo(c net.Conn) {
	defer c.Close()
	io.Copy(c, c) //nolint:errcheck // ends with the client
}

func lineEcho(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil && line == "" {
		return
	}
	io.WriteString(c, line) //nolint:errcheck // the client went away
}

func client(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	done := make(chan error, 1)
	go func() {
		_, err := io.Copy(os.Stdout, c)
		done <- err
	}()
	if _, err := io.Copy(c, os.Stdin); err != nil {
		return fmt.Errorf("send: %w", err)
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		return fmt.Errorf("half-close: %w", err)
	}
	if err := <-done; err != nil {
		return fmt.Errorf("receive: %w", err)
	}
	return nil
}

func runTimeout(secs string, args []string) int {
	n, err := strconv.ParseFloat(secs, 64)
	if err != nil || n <= 0 || len(args) == 0 {
		usage()
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "upstream timeout:", err)
		return 127
	}
	// Pass SIGTERM/SIGINT on, so stopping us stops the command.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	timedOut := false
	deadline := time.After(time.Duration(n * float64(time.Second)))
	var kill <-chan time.Time
	for {
		select {
		case err := <-done:
			if timedOut {
				return 124
			}
			if err == nil {
				return 0
			}
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
					return 128 + int(ws.Signal())
				}
				return ee.ExitCode()
			}
			fmt.Fprintln(os.Stderr, "upstream timeout:", err)
			return 1
		case s := <-sig:
			cmd.Process.Signal(s) //nolint:errcheck // it may have just exited
			kill = time.After(2 * time.Second)
		case <-deadline:
			timedOut = true
			fmt.Fprintf(os.Stderr, "upstream timeout: %s still running after %ss, stopping it\n", args[0], secs)
			cmd.Process.Signal(syscall.SIGTERM) //nolint:errcheck
			kill = time.After(2 * time.Second)
		case <-kill:
			cmd.Process.Kill() //nolint:errcheck
		}
	}
}
