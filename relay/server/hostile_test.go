package server_test

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/ferrytunnel/ferry/agent/forward"
	"github.com/ferrytunnel/ferry/relay/config"
	"github.com/ferrytunnel/ferry/relay/session"
)

// TestAuthRateLimit: wrong authtokens from one address are refused quickly, then the
// address must wait, even with a right token, and is told why.
func TestAuthRateLimit(t *testing.T) {
	r := newRelay(t)
	bad := r.agentConfig(&forward.Tunnel{Name: "x", Proto: "tcp", Addr: echoServer(t)})
	bad.Authtoken = "fy_wrong"
	for i := range session.AuthFailureBurst {
		if _, err := r.tryAgent(bad); err == nil || !strings.Contains(err.Error(), "not recognised") {
			t.Fatalf("wrong token %d: %v, want not recognised", i+1, err)
		}
	}
	good := r.agentConfig(&forward.Tunnel{Name: "y", Proto: "tcp", Addr: echoServer(t)})
	if _, err := r.tryAgent(good); err == nil || !strings.Contains(err.Error(), "too many wrong authtokens") {
		t.Fatalf("after %d wrong tokens: %v, want too many wrong authtokens", session.AuthFailureBurst, err)
	}
}

// TestUnderscoreHeaders: a header name with an underscore never reaches an upstream.
func TestUnderscoreHeaders(t *testing.T) {
	r := newRelay(t)
	a := r.startAgent(&forward.Tunnel{Name: "web", Proto: "http", Addr: headerEcho(t).Listener.Addr().String()})
	req, _ := http.NewRequest("GET", a.url(t, "https")+"/", nil)
	req.Header["X_Forwarded_For"] = []string{"10.0.0.1"}
	resp, err := r.httpClient(false).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "underscore") {
		t.Errorf("X_Forwarded_For header: %d %q, want 400 naming the underscore", resp.StatusCode, body)
	}
}

// TestConnLimitPerIP: one address cannot hold more than max_conns_per_ip public
// connections; the next is closed at once, and connections come back as others close.
func TestConnLimitPerIP(t *testing.T) {
	r := newRelayConfigured(t, "quic", func(c *config.Config) { c.MaxConnsPerIP = 5 })
	a := r.startAgent(&forward.Tunnel{Name: "echo", Proto: "tcp", Addr: echoServer(t)})
	checkConnLimit(t, []string{tcpAddrOf(t, a.url(t, "tcp"))}, 5, "from the same address")
}

// checkConnLimit opens limit echo connections over addrs in turn, each served; the next
// one (what says whose limit it is) must be closed unserved; after one closes, a new one
// is served again.
func checkConnLimit(t *testing.T, addrs []string, limit int, what string) {
	t.Helper()
	var open []net.Conn
	defer func() {
		for _, c := range open {
			c.Close()
		}
	}()
	for i := range limit {
		c, err := net.Dial("tcp", addrs[i%len(addrs)])
		if err != nil {
			t.Fatal(err)
		}
		open = append(open, c)
		if got, err := echoOnce(c, "hi"); err != nil || got != "hi" {
			t.Fatalf("connection %d within the limit: %q %v", i+1, got, err)
		}
	}
	extra, err := net.Dial("tcp", addrs[limit%len(addrs)])
	if err != nil {
		t.Fatal(err)
	}
	if got, err := echoOnce(extra, "hi"); err == nil && got == "hi" {
		t.Errorf("connection %d %s was served, want closed", limit+1, what)
	}
	extra.Close()
	open[0].Close()
	open = open[1:]
	waitFor(t, "a slot freed by a close", func() bool {
		c, err := net.Dial("tcp", addrs[0])
		if err != nil {
			return false
		}
		defer c.Close()
		got, err := echoOnce(c, "again")
		return err == nil && got == "again"
	})
}

// TestTunnelsPerAccount: an account cannot have more tunnels online than the relay
// allows, whatever the number of agents; stopping one frees its slot.
func TestTunnelsPerAccount(t *testing.T) {
	r := newRelayConfigured(t, "quic", func(c *config.Config) { c.MaxTunnelsPerAccount = 2 })
	up := echoServer(t)
	first := r.startAgent(&forward.Tunnel{Name: "a", Proto: "tcp", Addr: up}, &forward.Tunnel{Name: "b", Proto: "tcp", Addr: up})
	if _, err := r.tryAgent(r.agentConfig(&forward.Tunnel{Name: "c", Proto: "tcp", Addr: up})); err == nil || !strings.Contains(err.Error(), "max_tunnels_per_account") {
		t.Fatalf("third tunnel of the account: %v, want refused naming max_tunnels_per_account", err)
	}
	first.stop(t)
	waitFor(t, "slots freed", func() bool {
		a, err := r.tryAgent(r.agentConfig(&forward.Tunnel{Name: "c", Proto: "tcp", Addr: up}))
		if err == nil {
			a.stop(t)
		}
		return err == nil
	})
}

// TestConnectionListedHeadersStripped: headers a client names in Connection: never reach
// the upstream, and X-Forwarded-For is the relay's own, not the client's.
func TestConnectionListedHeadersStripped(t *testing.T) {
	r := newRelay(t)
	a := r.startAgent(&forward.Tunnel{Name: "web", Proto: "http", Addr: headerEcho(t).Listener.Addr().String()})
	req, _ := http.NewRequest("GET", a.url(t, "https")+"/", nil)
	req.Header.Set("Connection", "X-Secret, X-Forwarded-For")
	req.Header.Set("X-Secret", "must not pass")
	req.Header.Set("X-Forwarded-For", "10.9.9.9")
	resp, err := r.httpClient(false).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var e echoed
	json.NewDecoder(resp.Body).Decode(&e) //nolint:errcheck
	resp.Body.Close()
	if v := e.Header["X-Secret"]; len(v) > 0 {
		t.Errorf("upstream saw X-Secret %q, a header the client listed in Connection", v)
	}
	if xff := strings.Join(e.Header["X-Forwarded-For"], ","); xff != "127.0.0.1" {
		t.Errorf("upstream saw X-Forwarded-For %q, want only the relay's 127.0.0.1", xff)
	}
}

// TestStreamsPerAccount: an account's agents carry at most max_streams_per_account public
// connections at once; the next is closed until one ends.
func TestStreamsPerAccount(t *testing.T) {
	r := newRelayConfigured(t, "quic", func(c *config.Config) { c.MaxStreamsPerAccount = 3 })
	up := echoServer(t)
	a := r.startAgent(&forward.Tunnel{Name: "a", Proto: "tcp", Addr: up}, &forward.Tunnel{Name: "b", Proto: "tcp", Addr: up})
	// The limit is shared by the account's tunnels: the connections alternate between them.
	checkConnLimit(t, []string{tcpAddrOf(t, a.urls[0]), tcpAddrOf(t, a.urls[1])}, 3, "of the account")
}
