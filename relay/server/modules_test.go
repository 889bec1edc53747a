package server_test

import (
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ferrytunnel/ferry/agent/forward"
	"github.com/ferrytunnel/ferry/relay/cert/certtest"
)

func TestBasicAuth(t *testing.T) {
	r := newRelay(t)
	up := headerEcho(t)
	a := r.startAgent(&forward.Tunnel{Name: "web", Proto: "http", Addr: up.Listener.Addr().String(),
		BasicAuth: []string{"alice:correct horse", "bob:battery staple"}})
	c := r.httpClient(true)
	do := func(user, pass string) (int, string) {
		req, _ := http.NewRequest("GET", a.url(t, "https")+"/private", nil)
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		io.Copy(io.Discard, resp.Body) //nolint:errcheck
		return resp.StatusCode, resp.Header.Get("WWW-Authenticate")
	}
	if code, challenge := do("", ""); code != 401 || !strings.HasPrefix(challenge, "Basic realm=") {
		t.Errorf("no credentials = %d %q, want 401 with a Basic challenge", code, challenge)
	}
	for _, bad := range [][2]string{{"alice", "wrong password"}, {"mallory", "correct horse"}, {"alice", ""}} {
		if code, _ := do(bad[0], bad[1]); code != 401 {
			t.Errorf("credentials %s/%s = %d, want 401", bad[0], bad[1], code)
		}
	}
	start := time.Now()
	for range 20 { // after the first bcrypt check, verified credentials are cached
		if code, _ := do("bob", "battery staple"); code != 200 {
			t.Fatalf("right credentials = %d, want 200", code)
		}
	}
	t.Logf("20 authenticated requests in %v", time.Since(start).Round(time.Millisecond))

	// Agent-side refusals: short password, basic auth on a tcp tunnel.
	for _, tun := range []*forward.Tunnel{
		{Name: "short", Proto: "http", Addr: up.Listener.Addr().String(), BasicAuth: []string{"u:short"}},
		{Name: "tcp", Proto: "tcp", Addr: up.Listener.Addr().String(), BasicAuth: []string{"u:longenough"}},
	} {
		if _, err := r.tryAgent(r.agentConfig(tun)); err == nil || !strings.Contains(err.Error(), "--basic-auth") {
			t.Errorf("tunnel %s: err = %v, want a --basic-auth refusal", tun.Name, err)
		}
	}
}

func TestCIDRRestrictions(t *testing.T) {
	r := newRelay(t)
	up := headerEcho(t)
	echo := echoServer(t)
	upCA := certtest.NewCA(t, "Upstream CA")
	tlsUp := tlsEchoServer(t, upCA.Server(t, "deny."+domain))

	// Allowed: loopback is in the allow list.
	allowed := r.startAgent(&forward.Tunnel{Name: "ok", Proto: "tcp", Addr: echo, CIDRAllow: []string{"127.0.0.0/8", "::1"}})
	c, err := net.Dial("tcp", tcpAddrOf(t, allowed.url(t, "tcp")))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := echoOnce(c, "allowed"); err != nil || got != "allowed" {
		t.Errorf("allowed client: echo %q, %v", got, err)
	}
	c.Close()

	// Refused tcp: loopback is not in the allow list; the relay closes without reaching the agent.
	refused := r.startAgent(&forward.Tunnel{Name: "no", Proto: "tcp", Addr: echo, CIDRAllow: []string{"10.0.0.0/8"}})
	c, err = net.Dial("tcp", tcpAddrOf(t, refused.url(t, "tcp")))
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "hello") //nolint:errcheck
	if b, _ := io.ReadAll(c); len(b) != 0 {
		t.Errorf("refused tcp client read %q, want the connection closed", b)
	}
	c.Close()

	// Refused http (deny rule wins over allow): 403 over plain HTTP.
	h := r.startAgent(&forward.Tunnel{Name: "web", Proto: "http", Addr: up.Listener.Addr().String(),
		CIDRAllow: []string{"0.0.0.0/0"}, CIDRDeny: []string{"127.0.0.1"}})
	resp, e := get(t, r.httpClient(false), h.url(t, "http"))
	if resp.StatusCode != 403 || !strings.Contains(e.Body, "may not reach") {
		t.Errorf("denied http client = %d %q, want 403", resp.StatusCode, e.Body)
	}
	// Over TLS the refusal is a handshake alert (access denied), before any certificate.
	if _, err := r.dialTLS(&tls.Config{ServerName: strings.Split(strings.TrimPrefix(h.url(t, "https"), "https://"), ":")[0], RootCAs: r.ca.Pool}); err == nil || !strings.Contains(err.Error(), "access denied") {
		t.Errorf("denied https client: err = %v, want alert access denied", err)
	}
	r.startAgent(&forward.Tunnel{Name: "tls", Proto: "tls", Addr: tlsUp, Domain: "deny." + domain, CIDRDeny: []string{"127.0.0.0/8"}})
	if _, err := r.dialTLS(&tls.Config{ServerName: "deny." + domain, RootCAs: upCA.Pool}); err == nil || !strings.Contains(err.Error(), "access denied") {
		t.Errorf("denied tls passthrough client: err = %v, want alert access denied", err)
	}

	// A bad rule is refused by the agent before binding, naming the rule.
	if _, err := r.tryAgent(r.agentConfig(&forward.Tunnel{Name: "bad", Proto: "tcp", Addr: echo, CIDRAllow: []string{"10.0.0.300/8"}})); err == nil || !strings.Contains(err.Error(), "10.0.0.300/8") {
		t.Errorf("bad CIDR: err = %v, want it named", err)
	}
}

func TestHeaderRules(t *testing.T) {
	r := newRelay(t)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		w.Header().Set("X-Powered-By", "secret-framework/1.0")
		w.Header().Set("X-Upstream-Saw-Client", req.Header.Get("X-Client"))
		w.Header().Set("X-Upstream-Saw-UA", req.Header.Get("User-Agent"))
		io.WriteString(w, "ok") //nolint:errcheck
	}))
	defer up.Close()
	a := r.startAgent(&forward.Tunnel{Name: "h", Proto: "http", Addr: up.Listener.Addr().String(),
		RequestHeaderAdd:     []string{"X-Client: ${conn.client_ip} over ${conn.tls.version} to ${conn.tls.sni}"},
		RequestHeaderRemove:  []string{"user-agent"},
		ResponseHeaderAdd:    []string{"X-Served-For: ${req.method} ${req.path}"},
		ResponseHeaderRemove: []string{"X-Powered-By"}})
	u := a.url(t, "https")
	host := strings.Split(strings.TrimPrefix(u, "https://"), ":")[0]
	req, _ := http.NewRequest("GET", u+"/a/b", nil)
	req.Header.Set("User-Agent", "curious-client")
	resp, err := r.httpClient(false).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	h := resp.Header
	if got, want := h.Get("X-Upstream-Saw-Client"), "127.0.0.1 over TLS 1.3 to "+host; got != want {
		t.Errorf("upstream saw X-Client %q, want %q", got, want)
	}
	if got := h.Get("X-Upstream-Saw-UA"); got != "" {
		t.Errorf("upstream saw User-Agent %q, want it removed", got)
	}
	if got := h.Get("X-Served-For"); got != "GET /a/b" {
		t.Errorf("X-Served-For = %q, want %q", got, "GET /a/b")
	}
	if got := h.Get("X-Powered-By"); got != "" {
		t.Errorf("X-Powered-By = %q, want it removed", got)
	}
	_, err = r.tryAgent(r.agentConfig(&forward.Tunnel{Name: "bad", Proto: "http", Addr: up.Listener.Addr().String(),
		RequestHeaderAdd: []string{"X-A: ${nope}"}}))
	if err == nil || !strings.Contains(err.Error(), "${nope}") || !strings.Contains(err.Error(), "${conn.client_ip}") {
		t.Errorf("unknown template variable: err = %v, want it named with the known ones", err)
	}
}
