package cli

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferrytunnel/ferry/relay/cert/certtest"
	"github.com/ferrytunnel/ferry/relay/config"
	"github.com/ferrytunnel/ferry/relay/server"
	"github.com/ferrytunnel/ferry/relay/store"
)

// startRelay runs a relay in-process and returns its QUIC address, CA file and a token.
func startRelay(t *testing.T) (addr, caFile, token string) {
	t.Helper()
	ca := certtest.NewCA(t, "CLI Test CA")
	leaf := ca.Server(t, "ferry.test", "*.ferry.test", "127.0.0.1")
	dir := t.TempDir()
	tokens, err := store.OpenTokens(dir)
	if err != nil {
		t.Fatal(err)
	}
	token, _ = tokens.Create("cli")
	cfg := config.Config{QUICAddr: "127.0.0.1:0", HTTPSAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
		TCPPorts: "47000-47099", Domain: "ferry.test", Data: dir, LogFormat: "logfmt", LogLevel: "info"}
	srv, err := server.New(server.Options{Config: cfg, Certificate: &leaf, Auth: tokens})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { srv.Serve(ctx); close(done) }() //nolint:errcheck
	t.Cleanup(func() { cancel(); <-done })
	return srv.QUICAddr().String(), ca.WriteFiles(t, dir), token
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
