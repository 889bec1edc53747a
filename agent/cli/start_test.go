package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ferrytunnel/ferry/agent/console"
	"github.com/ferrytunnel/ferry/relay/server/servertest"
)

// startRelay runs a relay in-process and returns its QUIC address, CA file and a token.
func startRelay(t *testing.T) (addr, caFile, token string) {
	t.Helper()
	r := servertest.Start(t, servertest.Options{})
	return r.Srv.QUICAddr().String(), r.CA.WriteFiles(t, t.TempDir()), r.Token
}

func TestStartAllWithExecAndURLFile(t *testing.T) {
	cleanEnv(t)
	addr, caFile, token := startRelay(t)
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	defer ln.Close()
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "ferry.toml")
	os.WriteFile(cfgPath, []byte(fmt.Sprintf(`version = "1"
relay = %q
relay_ca = %q
authtoken = %q

[tunnels.web]
proto = "http"
addr = %q
domain = "web"

[tunnels.db]
proto = "tcp"
addr = %q
`, addr, caFile, token, ln.Addr().String(), ln.Addr().String())), 0o600)
	urlFile := filepath.Join(dir, "urls")
	out := filepath.Join(dir, "exec-saw")
	r := run(t, "start", "--all", "--config", cfgPath, "--api-addr", "false", "--log", "false",
		"--url-file", urlFile, "--exec", `echo "$FERRY_URL $FERRY_URLS" > `+out+`; exit 3`)
	if r.code != 3 {
		t.Fatalf("ferry start --all --exec 'exit 3' = %d (stderr %q), want 3", r.code, r.stderr)
	}
	saw, _ := os.ReadFile(out)
	if !strings.HasPrefix(string(saw), "tcp://ferry.test:") || !strings.Contains(string(saw), `"web":["https://web.ferry.test:`) {
		t.Errorf("command saw %q, want FERRY_URL of db first and FERRY_URLS with web's URLs", saw)
	}
	urls, _ := os.ReadFile(urlFile)
	if n := strings.Count(string(urls), "\n"); n != 3 {
		t.Errorf("--url-file has %d lines %q, want 3 (tcp, https, http)", n, urls)
	}

	r = run(t, "start", "nope", "--config", cfgPath)
	if r.code != ExitUsage || !strings.Contains(r.stderr, `no tunnel "nope"`) || !strings.Contains(r.stderr, "db, web") {
		t.Errorf("ferry start nope = %d %q, want usage error listing db, web", r.code, r.stderr)
	}
	r = run(t, "start", "--config", cfgPath)
	if r.code != ExitUsage || !strings.Contains(r.stderr, "--all") {
		t.Errorf("ferry start = %d %q, want usage error suggesting --all", r.code, r.stderr)
	}
	r = run(t, "http", "80", "--relay", addr, "--relay-ca", caFile, "--authtoken", token, "--api-addr", "false", "--exec", "exit 0")
	if r.code != 0 {
		t.Errorf("ferry http --exec 'exit 0' = %d %q, want 0", r.code, r.stderr)
	}
}

func TestAPIStartStopTunnels(t *testing.T) {
	cleanEnv(t)
	addr, caFile, token := startRelay(t)
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	apiAddr := ln.Addr().String()
	ln.Close()
	up, _ := net.Listen("tcp", "127.0.0.1:0")
	defer up.Close()
	go func() {
		for {
			c, err := up.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }() //nolint:errcheck
		}
	}()

	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan int, 1)
	var stderr bytes.Buffer
	go func() {
		done <- Main(ctx, []string{"ferry", "tcp", up.Addr().String(), "--relay", addr, "--relay-ca", caFile,
			"--authtoken", token, "--api-addr", apiAddr, "--log", "false"}, Env{Stdout: io.Discard, Stderr: &stderr, Version: "t"})
	}()
	api := "http://" + apiAddr + "/api/tunnels"
	waitAPI := func(cond func([]map[string]any) bool) []map[string]any {
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			var out struct{ Tunnels []map[string]any }
			if resp, err := http.Get(api); err == nil {
				json.NewDecoder(resp.Body).Decode(&out) //nolint:errcheck
				resp.Body.Close()
				if cond(out.Tunnels) {
					return out.Tunnels
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Fatalf("local API never showed the expected tunnels (stderr %q)", stderr.String())
		return nil
	}
	waitAPI(func(ts []map[string]any) bool { return len(ts) == 1 })
	var status struct {
		Session struct {
			Connected      bool   `json:"connected"`
			Relay          string `json:"relay"`
			Transport      string `json:"transport"`
			SessionID      string `json:"session_id"`
			ConnectedSince string `json:"connected_since"`
		} `json:"session"`
	}
	if resp, err := http.Get("http://" + apiAddr + "/api/status"); err != nil {
		t.Fatal(err)
	} else {
		json.NewDecoder(resp.Body).Decode(&status) //nolint:errcheck
		resp.Body.Close()
	}
	if s := status.Session; !s.Connected || s.Relay != addr || s.Transport == "" || s.SessionID == "" || s.ConnectedSince == "" {
		t.Errorf("GET /api/status = %+v, want a connected session to %s", s, addr)
	}

	resp, err := http.Post(api, "application/json", strings.NewReader(fmt.Sprintf(`{"name":"extra","proto":"tcp","addr":%q}`, up.Addr().String())))
	if err != nil {
		t.Fatal(err)
	}
	var created struct{ Tunnels []map[string]any }
	json.NewDecoder(resp.Body).Decode(&created) //nolint:errcheck
	resp.Body.Close()
	if resp.StatusCode != 201 || len(created.Tunnels) != 1 {
		t.Fatalf("POST /api/tunnels = %d %v, want 201 with the new tunnel", resp.StatusCode, created)
	}
	public := created.Tunnels[0]["public_url"].(string)
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(public, "tcp://"))
	c, err := net.Dial("tcp", "127.0.0.1:"+port)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(c, "runtime") //nolint:errcheck
	buf := make([]byte, 7)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "runtime" {
		t.Fatalf("echo through the runtime tunnel = %q, %v", buf, err)
	}
	c.Close()

	resp, _ = http.Post(api, "application/json", strings.NewReader(fmt.Sprintf(`{"name":"extra","proto":"tcp","addr":%q}`, up.Addr().String())))
	resp.Body.Close()
	if resp.StatusCode != http.StatusConflict {
		t.Errorf("POST of a duplicate name = %d, want 409", resp.StatusCode)
	}
	// A name the relay already has bound (here by this agent's other tunnel) is a conflict too.
	for i, want := range []int{201, 409} {
		resp, err := http.Post(api, "application/json", strings.NewReader(fmt.Sprintf(`{"name":"web%d","proto":"http","addr":%q,"domain":"api-conflict"}`, i, up.Addr().String())))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("POST of http tunnel %d on one domain = %d %s, want %d", i, resp.StatusCode, body, want)
		}
	}
	// An http tunnel's second entry, "web0 (http)", names the tunnel too.
	del, _ := http.NewRequest("DELETE", api+"/"+url.PathEscape("web0 (http)"), nil)
	if resp, err := http.DefaultClient.Do(del); err != nil || resp.StatusCode != 204 {
		t.Fatalf("DELETE /api/tunnels/web0 (http) = %v %v, want 204", resp, err)
	} else {
		resp.Body.Close()
	}
	req, _ := http.NewRequest("DELETE", api+"/extra", nil)
	resp, err = http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 204 {
		t.Fatalf("DELETE /api/tunnels/extra = %v %v, want 204", resp, err)
	}
	resp.Body.Close()
	waitAPI(func(ts []map[string]any) bool { return len(ts) == 1 })
	// The relay freed the port: nothing answers there any more.
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+port, time.Second)
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatalf("port %s still open after DELETE", port)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if code := <-done; code != 0 {
		t.Errorf("agent exit = %d after cancel, want 0 (stderr %q)", code, stderr.String())
	}
}

// TestExecStoppedWithFerry: when ferry is stopped while --exec runs, the command's whole
// process group gets SIGTERM (a shell's background child too, which outlived it before),
// and ferry exits with the command's status.
func TestExecStoppedWithFerry(t *testing.T) {
	if console.IsTerminal(os.Stdin) {
		t.Skip("stdin is a terminal: --exec stays in the terminal's process group")
	}
	cleanEnv(t)
	addr, caFile, token := startRelay(t)
	pidFile := filepath.Join(t.TempDir(), "child.pid")
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan int, 1)
	var stderr bytes.Buffer
	go func() {
		done <- Main(ctx, []string{"ferry", "http", "80", "--relay", addr, "--relay-ca", caFile, "--authtoken", token,
			"--api-addr", "false", "--log", "false", "--exec", "sleep 300 & echo $! > " + pidFile + "; wait"},
			Env{Stdout: io.Discard, Stderr: &stderr, Version: "t"})
	}()
	var pid int
	deadline := time.Now().Add(10 * time.Second)
	for pid == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the command did not start its child; stderr %q", stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
		b, _ := os.ReadFile(pidFile)
		fmt.Sscan(string(b), &pid) //nolint:errcheck
	}
	cancel()
	select {
	case code := <-done:
		if code != 128+int(syscall.SIGTERM) {
			t.Errorf("ferry = %d (stderr %q), want %d: the command's SIGTERM status", code, stderr.String(), 128+int(syscall.SIGTERM))
		}
	case <-time.After(execGrace + 5*time.Second):
		t.Fatal("ferry did not end after its command was stopped")
	}
	deadline = time.Now().Add(5 * time.Second)
	for syscall.Kill(pid, 0) == nil {
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGKILL) //nolint:errcheck
			t.Fatalf("the command's child %d outlived ferry", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestConnectAttempts: --connect-attempts 0 keeps trying an unreachable relay until ferry
// is stopped; connect_attempts in the file sets the count too; a negative count is a usage
// error.
func TestConnectAttempts(t *testing.T) {
	cleanEnv(t)
	_, caFile, token := startRelay(t)
	ln, _ := net.Listen("tcp", "127.0.0.1:0") // a port nothing answers on once closed
	dead := ln.Addr().String()
	ln.Close()
	base := []string{"tcp", "22", "--relay", dead, "--relay-ca", caFile, "--authtoken", token, "--transport", "tcp", "--api-addr", "false", "--log", "false"}
	r := run(t, append(base, "--connect-attempts", "-1")...)
	if r.code != ExitUsage || !strings.Contains(r.stderr, "--connect-attempts -1") {
		t.Errorf("--connect-attempts -1 = %d %q, want a usage error", r.code, r.stderr)
	}
	// The file's count is used: 1 attempt gives up at once (the default 4 take 3.5-7 s).
	cfgPath := filepath.Join(t.TempDir(), "ferry.toml")
	os.WriteFile(cfgPath, []byte("version = \"1\"\nconnect_attempts = 1\n"), 0o600) //nolint:errcheck
	start := time.Now()
	if r := run(t, append(base, "--config", cfgPath)...); r.code != ExitUnreachable || time.Since(start) > 2*time.Second {
		t.Errorf("connect_attempts = 1: exit %d after %v (%q), want %d at once", r.code, time.Since(start), r.stderr, ExitUnreachable)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan int, 1)
	go func() {
		done <- Main(ctx, append([]string{"ferry"}, append(base, "--connect-attempts", "0")...), Env{Stdout: io.Discard, Stderr: io.Discard, Version: "t"})
	}()
	select {
	case code := <-done:
		t.Fatalf("--connect-attempts 0: ferry gave up with %d, want it to keep trying", code)
	case <-time.After(7500 * time.Millisecond): // past the longest 4 attempts can take
	}
	cancel()
	if code := <-done; code != 0 {
		t.Errorf("stopped while retrying = %d, want 0", code)
	}
}
