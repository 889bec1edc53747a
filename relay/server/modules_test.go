package server_test

import (
	"bytes"
	"compress/flate"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

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
	if _, err := r.dialTLS(&tls.Config{ServerName: strings.Split(strings.TrimPrefix(h.url(t, "https"), "https://"), ":")[0], RootCAs: r.CA.Pool}); err == nil || !strings.Contains(err.Error(), "access denied") {
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

func TestCompression(t *testing.T) {
	r := newRelay(t)
	text := strings.Repeat("ferry compresses text that repeats itself. ", 200)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		switch req.URL.Path {
		case "/already":
			w.Header().Set("Content-Encoding", "gzip")
			w.Write([]byte("not really gzip, but the upstream says so")) //nolint:errcheck
		case "/image":
			w.Header().Set("Content-Type", "image/png")
			io.WriteString(w, text) //nolint:errcheck
		default:
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			io.WriteString(w, text) //nolint:errcheck
		}
	}))
	defer up.Close()
	a := r.startAgent(&forward.Tunnel{Name: "z", Proto: "http", Addr: up.Listener.Addr().String(), Compression: true})
	c := r.httpClient(true)
	fetch := func(path, accept string) (*http.Response, []byte) {
		req, _ := http.NewRequest("GET", a.url(t, "https")+path, nil)
		req.Header.Set("Accept-Encoding", accept) // set by hand: Go's client then leaves the body encoded
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}
	for _, tc := range []struct{ accept, want string }{
		{"gzip", "gzip"}, {"deflate", "deflate"}, {"br", "br"}, {"zstd", "zstd"},
		{"gzip, br;q=0.5", "gzip"}, {"gzip;q=0, deflate", "deflate"}, {"identity", ""}, {"", ""},
	} {
		resp, body := fetch("/text", tc.accept)
		if got := resp.Header.Get("Content-Encoding"); got != tc.want {
			t.Errorf("Accept-Encoding %q: Content-Encoding %q, want %q", tc.accept, got, tc.want)
			continue
		}
		if plain, err := decode(tc.want, body); err != nil || plain != text {
			t.Errorf("Accept-Encoding %q: decoded %d bytes (%v), want the %d-byte text", tc.accept, len(plain), err, len(text))
		}
		if tc.want != "" && len(body) >= len(text)/4 {
			t.Errorf("Accept-Encoding %q: %d bytes on the wire for %d of text: not compressed", tc.accept, len(body), len(text))
		}
	}
	if resp, body := fetch("/already", "gzip"); string(body) != "not really gzip, but the upstream says so" || resp.Header.Get("Content-Encoding") != "gzip" {
		t.Errorf("upstream-encoded body was touched: %q", body)
	}
	if resp, _ := fetch("/image", "gzip"); resp.Header.Get("Content-Encoding") != "" {
		t.Errorf("image/png compressed (%q), want it sent as is", resp.Header.Get("Content-Encoding"))
	}
}

func decode(enc string, b []byte) (string, error) {
	var rd io.Reader = bytes.NewReader(b)
	var err error
	switch enc {
	case "gzip":
		rd, err = gzip.NewReader(rd)
	case "deflate":
		rd = flate.NewReader(rd)
	case "br":
		rd = brotli.NewReader(rd)
	case "zstd":
		var z *zstd.Decoder
		z, err = zstd.NewReader(rd)
		rd = z
	}
	if err != nil {
		return "", err
	}
	out, err := io.ReadAll(rd)
	return string(out), err
}

func TestCircuitBreaker(t *testing.T) {
	r := newRelay(t)
	var hits atomic.Int32
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		hits.Add(1)
		http.Error(w, "broken", http.StatusInternalServerError)
	}))
	defer up.Close()
	a := r.startAgent(&forward.Tunnel{Name: "cb", Proto: "http", Addr: up.Listener.Addr().String(), CircuitBreaker: 0.5})
	c := r.httpClient(true)
	codes := map[int]int{}
	for range 40 {
		resp, err := c.Get(a.url(t, "https"))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body) //nolint:errcheck
		resp.Body.Close()
		codes[resp.StatusCode]++
		if resp.StatusCode == 503 && resp.Header.Get("Retry-After") == "" {
			t.Error("503 without Retry-After")
		}
	}
	if codes[500] != 20 || codes[503] != 20 || hits.Load() != 20 {
		t.Errorf("answers %v, upstream hits %d; want 20 errors let through (the volume threshold), then 20 x 503 without reaching the upstream", codes, hits.Load())
	}
	if _, err := r.tryAgent(r.agentConfig(&forward.Tunnel{Name: "bad", Proto: "http", Addr: up.Listener.Addr().String(), CircuitBreaker: 1.5})); err == nil || !strings.Contains(err.Error(), "circuit-breaker") {
		t.Errorf("ratio 1.5: err = %v, want a --circuit-breaker refusal", err)
	}
}

// TestOlderRelayRefusesModules: a relay that does not advertise a module must not get a
// tunnel that relies on it (it would ignore the field and serve the tunnel unprotected).
func TestOlderRelayRefusesModules(t *testing.T) {
	r := newRelay(t)
	r.Opts.Capabilities = []string{} // an older relay: advertises nothing
	r.Restart()
	up := headerEcho(t)
	_, err := r.tryAgent(r.agentConfig(&forward.Tunnel{Name: "web", Proto: "http", Addr: up.Listener.Addr().String(),
		BasicAuth: []string{"alice:correct horse"}}))
	if err == nil || !strings.Contains(err.Error(), "basic_auth") || !strings.Contains(err.Error(), "upgrade ferry-relay") {
		t.Fatalf("basic auth on a relay without it: err = %v, want a refusal telling to upgrade ferry-relay", err)
	}
	if n := r.Srv.Table().Len(); n != 0 {
		t.Errorf("%d names bound, want none", n)
	}
	// Tunnels without modules still work there.
	r.startAgent(&forward.Tunnel{Name: "plain", Proto: "http", Addr: up.Listener.Addr().String()})
}
