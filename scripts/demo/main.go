// Command demo is `make demo`: the whole of ferry on one machine, on loopback.
//
// It starts a dev relay (bin/ferry-relay --dev --data .demo/data), a tiny HTTP server in
// this process as the "local service", and an agent (bin/ferry http PORT) with the relay
// address, CA and authtoken the relay prints. Once the agent's local API lists the public
// URL, it makes a real HTTPS request through the tunnel (trusting .demo/data/ca.pem, the
// dev relay's throwaway CA), prints what came back and the curl command to try, and then
// relays the children's output, prefixed [relay] and [agent], until Ctrl-C.
//
// Run it from the repository root after `make build` (`make demo` does both). Flags move the
// ports, e.g. to run beside another dev relay:
//
//	go run ./scripts/demo -relay-port 5443 -http-port 5080 -api-port 5040
package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

const (
	relayBin = "bin/ferry-relay"
	agentBin = "bin/ferry"
	dataDir  = ".demo/data"

	// startTimeout bounds each startup step (relay banner, public URL).
	startTimeout = 20 * time.Second
	// stopTimeout is how long a child gets to exit after SIGINT before it is killed.
	stopTimeout = 5 * time.Second
)

func init() {
	// Children are started from the main goroutine; keeping it on the main thread makes
	// the Linux parent-death signal (see procattr_linux.go) fire only when the process dies.
	runtime.LockOSThread()
}

func main() {
	relayPort := flag.Int("relay-port", 4443, "relay port: QUIC (udp) for agents and public TLS (tcp)")
	httpPort := flag.Int("http-port", 4080, "relay's public plain HTTP port")
	apiPort := flag.Int("api-port", 4040, "agent's local API port")
	mgmtPort := flag.Int("mgmt-port", 4041, "relay's management API port")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	d := &demo{relayPort: *relayPort, httpPort: *httpPort, apiPort: *apiPort, mgmtPort: *mgmtPort, out: &console{w: os.Stdout, held: true}}
	os.Exit(d.run(ctx))
}

type demo struct {
	relayPort, httpPort, apiPort, mgmtPort int
	out                                    *console
}

// run returns the exit code: 0 after Ctrl-C, 1 if anything failed.
func (d *demo) run(ctx context.Context) int {
	if err := chdirRoot(); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		return 1
	}
	if err := d.checkPorts(); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		return 1
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		return 1
	}

	// The local service: a tiny page on a free port.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo: sample upstream:", err)
		return 1
	}
	upPort := ln.Addr().(*net.TCPAddr).Port
	upstream := &http.Server{Handler: d.helloHandler(), ReadHeaderTimeout: 10 * time.Second}
	go upstream.Serve(ln) //nolint:errcheck // ends with Close
	defer upstream.Close()

	fmt.Printf("Starting the ferry demo (relay, a sample web server on 127.0.0.1:%d, agent)...\n", upPort)

	relayArgs := []string{"--dev", "--data", dataDir, "--api-addr", hostPort(d.mgmtPort)}
	if d.relayPort != 4443 || d.httpPort != 4080 {
		relayArgs = append(relayArgs,
			"--quic-addr", hostPort(d.relayPort), "--https-addr", hostPort(d.relayPort), "--http-addr", hostPort(d.httpPort))
	}
	relay, err := d.start(ctx, "relay", relayBin, relayArgs...)
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		return 1
	}
	children := []*child{relay}
	defer func() { stopAll(children) }()

	var agentCmd string
	select {
	case agentCmd = <-relay.banner:
	case <-relay.done:
		return d.died(relay)
	case <-ctx.Done():
		return d.interrupted(children)
	case <-time.After(startTimeout):
		return d.failed(children, fmt.Sprintf("the relay did not print its agent command within %s", startTimeout))
	}
	relayAddr, relayCA, token := flagValue(agentCmd, "--relay"), flagValue(agentCmd, "--relay-ca"), flagValue(agentCmd, "--authtoken")
	if relayAddr == "" || relayCA == "" || token == "" {
		return d.failed(children, fmt.Sprintf("could not read --relay, --relay-ca and --authtoken from the relay's line %q", agentCmd))
	}

	apiAddr := hostPort(d.apiPort)
	agentArgs := []string{"http", strconv.Itoa(upPort), "--relay", relayAddr, "--relay-ca", relayCA, "--authtoken", token,
		"--api-addr", apiAddr, "--log", "stdout", "--log-format", "logfmt"}
	agent, err := d.start(ctx, "agent", agentBin, agentArgs...)
	if err != nil {
		return d.failed(children, err.Error())
	}
	children = append(children, agent)

	urls, err := d.waitForURLs(ctx, apiAddr, children)
	switch {
	case ctx.Err() != nil:
		return d.interrupted(children)
	case errors.Is(err, errChildDied):
		for _, c := range children {
			if c.exited() {
				return d.died(c)
			}
		}
	case err != nil:
		return d.failed(children, err.Error())
	}
	publicURL := ""
	for _, u := range urls {
		if strings.HasPrefix(u, "https://") {
			publicURL = u
		}
	}
	if publicURL == "" {
		return d.failed(children, fmt.Sprintf("the agent's API lists no https URL (got %v)", urls))
	}

	// A real request through the tunnel, before showing anything.
	report, err := fetch(ctx, publicURL+"/", relayCA)
	if err != nil {
		return d.failed(children, fmt.Sprintf("request through the tunnel failed: %v", err))
	}

	d.out.release() // startup logs first, then the summary
	d.printSummary(urls, publicURL, relayCA, upPort, apiAddr, relayArgs, agentArgs, report)

	select {
	case <-ctx.Done():
		return d.interrupted(children)
	case <-relay.done:
		return d.died(relay)
	case <-agent.done:
		return d.died(agent)
	}
}

// ---- the sample upstream ------------------------------------------------------

func (d *demo) helloHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		xff := r.Header.Get("X-Forwarded-For")
		if xff == "" {
			xff = "(none: this request did not come through the relay)"
		}
		d.out.line("upstream", fmt.Sprintf("%s %s from %s (X-Forwarded-For: %s)", r.Method, r.URL.Path, r.RemoteAddr, r.Header.Get("X-Forwarded-For")))
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("X-Demo", "served by the sample upstream in scripts/demo")
		fmt.Fprintf(w, "Hello from the ferry demo!\n\n")
		fmt.Fprintf(w, "  You asked for:     %s\n", r.URL.Path)
		fmt.Fprintf(w, "  Time:              %s\n", time.Now().Format(time.RFC1123))
		fmt.Fprintf(w, "  X-Forwarded-For:   %s\n", xff)
		fmt.Fprintf(w, "  X-Forwarded-Proto: %s\n", r.Header.Get("X-Forwarded-Proto"))
		fmt.Fprintf(w, "\nThis page comes from a web server on %s, reached through the relay and the agent.\n", r.Context().Value(http.LocalAddrContextKey))
	})
}

// ---- the request through the tunnel ------------------------------------------

type response struct {
	url    string
	status string
	header http.Header
	body   string
}

// fetch GETs url trusting the CA in caFile, dialing 127.0.0.1 for localhost names (as
// curl does by itself).
func fetch(ctx context.Context, url, caFile string) (*response, error) {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no certificate found", caFile)
	}
	var dialer net.Dialer
	tr := &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: pool},
		ForceAttemptHTTP2: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			host, port, err := net.SplitHostPort(addr)
			if err == nil && (host == "localhost" || strings.HasSuffix(host, ".localhost")) {
				addr = net.JoinHostPort("127.0.0.1", port)
			}
			return dialer.DialContext(ctx, network, addr)
		},
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return nil, err
	}
	return &response{url: url, status: resp.Proto + " " + resp.Status, header: resp.Header, body: string(body)}, nil
}

// ---- output --------------------------------------------------------------------

func (d *demo) printSummary(urls []string, publicURL, relayCA string, upPort int, apiAddr string, relayArgs, agentArgs []string, r *response) {
	var b strings.Builder
	rule := strings.Repeat("=", 72)
	fmt.Fprintf(&b, "\n%s\n  ferry demo: your local web server is on the internet (well, on loopback)\n%s\n\n", rule, rule)
	fmt.Fprintf(&b, "  Public URL:     %s\n", publicURL)
	for _, u := range urls {
		if u != publicURL {
			fmt.Fprintf(&b, "                  %s\n", u)
		}
	}
	fmt.Fprintf(&b, "  Local service:  http://127.0.0.1:%d (the sample page in this program)\n", upPort)
	fmt.Fprintf(&b, "  Relay:          %s %s\n", relayBin, strings.Join(relayArgs, " "))
	fmt.Fprintf(&b, "  Agent:          %s %s\n", agentBin, strings.Join(redact(agentArgs), " "))
	fmt.Fprintf(&b, "  Inspect:        http://%s/ (every request through the tunnel, with replay)\n", apiAddr)
	fmt.Fprintf(&b, "  Local API:      http://%s/api/tunnels\n\n", apiAddr)

	fmt.Fprintf(&b, "A real HTTPS request through the tunnel (trusting %s):\n\n", relayCA)
	fmt.Fprintf(&b, "  GET %s\n", r.url)
	fmt.Fprintf(&b, "  %s\n", r.status)
	keys := make([]string, 0, len(r.header))
	for k := range r.header {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, "  %s: %s\n", k, strings.Join(r.header[k], ", "))
	}
	b.WriteString("\n")
	for _, l := range strings.Split(strings.TrimRight(r.body, "\n"), "\n") {
		fmt.Fprintf(&b, "  | %s\n", l)
	}

	fmt.Fprintf(&b, "\nTry it yourself in another terminal:\n\n")
	fmt.Fprintf(&b, "  curl --cacert %s %s/\n", relayCA, publicURL)
	for _, u := range urls {
		if strings.HasPrefix(u, "http://") {
			fmt.Fprintf(&b, "  curl %s/\n", u)
		}
	}
	fmt.Fprintf(&b, "  curl http://%s/api/tunnels\n", apiAddr)
	fmt.Fprintf(&b, "\n(A browser shows a certificate warning unless it trusts %s.)\n", relayCA)
	fmt.Fprintf(&b, "\nLogs of the relay, the agent and the sample server follow. Press Ctrl-C to stop.\n%s\n", rule)
	d.out.write(b.String())
}

// redact shortens the authtoken in a printed command line.
func redact(args []string) []string {
	out := append([]string(nil), args...)
	for i := range out {
		if out[i] == "--authtoken" && i+1 < len(out) && len(out[i+1]) > 10 {
			out[i+1] = out[i+1][:10] + "..."
		}
	}
	return out
}

// console writes prefixed lines to w; while held (during startup) it keeps them so the
// summary is not lost in the logs, and prints them on release.
type console struct {
	mu   sync.Mutex
	w    io.Writer
	held bool
	buf  []string
	mute bool // after a failure report: the children's shutdown noise is dropped
}

func (c *console) line(prefix, text string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	l := fmt.Sprintf("[%s] %s\n", prefix, text)
	if c.mute {
		return
	}
	if c.held {
		c.buf = append(c.buf, l)
		return
	}
	io.WriteString(c.w, l) //nolint:errcheck // nowhere to report it
}

func (c *console) write(s string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	io.WriteString(c.w, s) //nolint:errcheck
}

func (c *console) release() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, l := range c.buf {
		io.WriteString(c.w, l) //nolint:errcheck
	}
	c.buf, c.held = nil, false
}

// died reports a child that exited on its own, with its output, and stops the others.
func (d *demo) died(c *child) int {
	d.out.mu.Lock()
	held := d.out.held
	d.out.held, d.out.buf, d.out.mute = false, nil, true // its output is printed below
	d.out.mu.Unlock()
	fmt.Fprintf(os.Stderr, "\ndemo: %s (%s) exited unexpectedly: %v\n", c.name, c.path, c.err)
	if held {
		fmt.Fprintf(os.Stderr, "Its output:\n")
	} else {
		fmt.Fprintf(os.Stderr, "Its last output:\n")
	}
	for _, l := range c.output() {
		fmt.Fprintf(os.Stderr, "  [%s] %s\n", c.name, l)
	}
	return 1
}

// failed reports a startup problem with every child's output so far.
func (d *demo) failed(children []*child, msg string) int {
	d.out.mu.Lock()
	d.out.held, d.out.buf, d.out.mute = false, nil, true
	d.out.mu.Unlock()
	fmt.Fprintf(os.Stderr, "\ndemo: %s\n", msg)
	for _, c := range children {
		fmt.Fprintf(os.Stderr, "Output of %s:\n", c.name)
		for _, l := range c.output() {
			fmt.Fprintf(os.Stderr, "  [%s] %s\n", c.name, l)
		}
	}
	return 1
}

// interrupted stops the children (agent first) after Ctrl-C and returns 0.
func (d *demo) interrupted(children []*child) int {
	d.out.release()
	d.out.write("\ndemo: stopping the agent and the relay...\n")
	if err := stopAll(children); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		return 1
	}
	d.out.write("demo: stopped.\n")
	return 0
}

// ---- children -----------------------------------------------------------------------

type child struct {
	name, path string
	cmd        *exec.Cmd
	done       chan struct{} // closed when the process has exited
	err        error         // its exit status, set before done is closed
	banner     chan string   // the relay's "ferry http ..." line, once

	mu      sync.Mutex
	lines   []string // the last maxKeep lines of output
	stopped bool     // we asked it to stop
	once    sync.Once
}

const maxKeep = 500

func (d *demo) start(ctx context.Context, name, path string, args ...string) (*child, error) {
	c := &child{name: name, path: path, done: make(chan struct{}), banner: make(chan string, 1)}
	c.cmd = exec.Command(path, args...)
	c.cmd.SysProcAttr = sysProcAttr()
	c.cmd.Stdout = &lineWriter{fn: func(l string) { c.add(l); d.out.line(name, l) }}
	c.cmd.Stderr = &lineWriter{fn: func(l string) { c.add(l); d.out.line(name, l) }}
	c.cmd.Env = append(os.Environ(), "NO_COLOR=1")
	if err := c.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", path, err)
	}
	go func() {
		c.err = c.cmd.Wait()
		if c.err == nil {
			c.err = errors.New("exit status 0")
		}
		close(c.done)
	}()
	return c, nil
}

func (c *child) add(l string) {
	c.mu.Lock()
	c.lines = append(c.lines, l)
	if len(c.lines) > maxKeep {
		c.lines = c.lines[len(c.lines)-maxKeep:]
	}
	c.mu.Unlock()
	if t := strings.TrimSpace(l); strings.HasPrefix(t, "ferry http ") && strings.Contains(t, "--authtoken") {
		c.once.Do(func() { c.banner <- t })
	}
}

func (c *child) output() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.lines...)
}

func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// stopAll stops children in reverse start order (agent, then relay): SIGINT, then SIGKILL
// after stopTimeout.
func stopAll(children []*child) error {
	var errs []error
	for i := len(children) - 1; i >= 0; i-- {
		c := children[i]
		c.mu.Lock()
		already := c.stopped
		c.stopped = true
		c.mu.Unlock()
		if already || c.exited() {
			continue
		}
		if err := interrupt(c.cmd.Process); err != nil {
			c.cmd.Process.Kill() //nolint:errcheck // it may have exited meanwhile
		}
		select {
		case <-c.done:
		case <-time.After(stopTimeout):
			c.cmd.Process.Kill() //nolint:errcheck
			<-c.done
			errs = append(errs, fmt.Errorf("%s did not stop within %s of SIGINT; killed it", c.name, stopTimeout))
		}
	}
	return errors.Join(errs...)
}

// lineWriter calls fn for each complete line written to it (and the rest on Close).
type lineWriter struct {
	fn  func(string)
	buf []byte
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		w.fn(strings.TrimRight(string(w.buf[:i]), "\r"))
		w.buf = w.buf[i+1:]
	}
	if len(w.buf) > 64<<10 { // a very long line without a newline
		w.fn(string(w.buf))
		w.buf = nil
	}
	return len(p), nil
}

// ---- startup checks -------------------------------------------------------------------

// errChildDied means a child exited while we waited for it.
var errChildDied = errors.New("a child process exited")

// waitForURLs polls the agent's local API until it lists the tunnel's public URLs.
func (d *demo) waitForURLs(ctx context.Context, apiAddr string, children []*child) ([]string, error) {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(startTimeout)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	lastErr := errors.New("no answer yet")
	for {
		for _, c := range children {
			if c.exited() {
				return nil, errChildDied
			}
		}
		if urls, err := listURLs(ctx, client, "http://"+apiAddr+"/api/tunnels"); err != nil {
			lastErr = err
		} else if len(urls) > 0 {
			return urls, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("the agent's API on %s listed no tunnel within %s (last: %v)", apiAddr, startTimeout, lastErr)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-tick.C:
		}
	}
}

func listURLs(ctx context.Context, client *http.Client, url string) ([]string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	var v struct {
		Tunnels []struct {
			PublicURL string `json:"public_url"`
		} `json:"tunnels"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		return nil, fmt.Errorf("GET %s: %w", url, err)
	}
	var urls []string
	for _, t := range v.Tunnels {
		if t.PublicURL != "" {
			urls = append(urls, t.PublicURL)
		}
	}
	return urls, nil
}

// checkPorts fails with a clear message if a port the demo needs is taken.
func (d *demo) checkPorts() error {
	checks := []struct {
		network string
		port    int
		what    string
		who     string
	}{
		{"udp", d.relayPort, "the relay's QUIC port (agents connect here)", "ferry-relay"},
		{"tcp", d.relayPort, "the relay's public TLS port", "ferry-relay"},
		{"tcp", d.httpPort, "the relay's public HTTP port", "ferry-relay"},
		{"tcp", d.apiPort, "the agent's local API port", "ferry agent"},
		{"tcp", d.mgmtPort, "the relay's management API port", "ferry-relay"},
	}
	for _, c := range checks {
		addr := hostPort(c.port)
		var err error
		if c.network == "udp" {
			var pc net.PacketConn
			if pc, err = net.ListenPacket("udp", addr); err == nil {
				pc.Close()
			}
		} else {
			var ln net.Listener
			if ln, err = net.Listen("tcp", addr); err == nil {
				ln.Close()
			}
		}
		if err != nil {
			return fmt.Errorf("port %s/%s, %s, is already in use (%v); "+
				"is another %s running (an earlier `make demo`, or `%s --dev`)? Stop it and run `make demo` again",
				addr, c.network, c.what, unwrapSyscall(err), c.who, map[string]string{"ferry-relay": relayBin, "ferry agent": agentBin + " http"}[c.who])
		}
	}
	return nil
}

func unwrapSyscall(err error) error {
	var se *os.SyscallError
	if errors.As(err, &se) {
		return se.Err
	}
	return err
}

// chdirRoot moves to the repository root (where bin/ is) and checks the binaries are built.
func chdirRoot() error {
	dir, err := os.Getwd()
	if err != nil {
		return err
	}
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			if err := os.Chdir(d); err != nil {
				return err
			}
			break
		}
		if filepath.Dir(d) == d {
			return fmt.Errorf("run the demo from the ferry repository (no go.mod above %s)", dir)
		}
	}
	for _, b := range []string{relayBin, agentBin} {
		if _, err := os.Stat(b); err != nil {
			return fmt.Errorf("%s not found: run `make demo` (it builds the binaries first), or `make build`", b)
		}
	}
	return nil
}

// flagValue returns the value after flag in a command line, or "".
func flagValue(cmdline, flag string) string {
	f := strings.Fields(cmdline)
	for i := 0; i+1 < len(f); i++ {
		if f[i] == flag {
			return f[i+1]
		}
	}
	return ""
}

func hostPort(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }
