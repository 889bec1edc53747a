package server_test

import (
	"net"
	"testing"
	"time"

	"github.com/ferrytunnel/ferry/agent/forward"
)

// TestReconnectAfterRelayRestart: the agent reconnects on its own, gets the same URLs
// back, and a new connection works within 5s of the relay's return.
func TestReconnectAfterRelayRestart(t *testing.T) { bothTransports(t, testReconnectAfterRelayRestart) }

func testReconnectAfterRelayRestart(t *testing.T, r *relayEnv) {
	web := &forward.Tunnel{Name: "web", Proto: "http", Addr: headerEcho(t).Listener.Addr().String()}
	echo := &forward.Tunnel{Name: "echo", Proto: "tcp", Addr: echoServer(t)}
	a := r.startAgent(web, echo)
	httpsURL, tcpURL := a.url(t, "https"), a.url(t, "tcp")
	first := a.client.Session()
	if !first.Connected || first.SessionID == "" || first.ConnectedSince == nil || first.Reconnects != 0 || first.Transport != r.transport {
		t.Fatalf("session status before the restart: %+v", first)
	}

	r.Restart()
	back := time.Now()
	waitFor(t, "tunnels back with the same URLs", func() bool {
		for _, s := range a.client.Tunnels() {
			if len(s.URLs) == 0 || r.Srv.Table().Len() < 2 {
				return false
			}
		}
		return a.client.Connected() && r.Srv.Table().Len() == 2
	})
	resp, _ := get(t, r.httpClient(true), httpsURL)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s after restart = %d, want 200", httpsURL, resp.StatusCode)
	}
	c, err := net.DialTimeout("tcp", tcpAddrOf(t, tcpURL), 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s after restart: %v", tcpURL, err)
	}
	defer c.Close()
	if got, err := echoOnce(c, "back"); err != nil || got != "back" {
		t.Fatalf("echo after restart = %q, %v", got, err)
	}
	if st := a.client.Session(); !st.Connected || st.Reconnects != 1 || st.SessionID == first.SessionID || st.LastError == "" {
		t.Errorf("session status after the restart: %+v, want connected, 1 reconnect, a new session id and the last error", st)
	}
	if d := time.Since(back); d > 5*time.Second {
		t.Errorf("working again %v after the relay came back, want within 5s", d)
	}
	t.Logf("working again %v after the relay came back", time.Since(back).Round(time.Millisecond))
}

// TestAutoFallsBackToTCP blocks UDP to the relay's port (a socket that swallows every
// datagram) and checks --transport auto lands on TCP within 3s.
func TestAutoFallsBackToTCP(t *testing.T) {
	r := newRelay(t)
	httpsAddr := r.Srv.HTTPSAddr().String()
	hole, err := net.ListenPacket("udp", httpsAddr) // same port number, UDP: QUIC goes nowhere
	if err != nil {
		t.Fatal(err)
	}
	defer hole.Close()
	cfg := r.agentConfig(&forward.Tunnel{Name: "echo", Proto: "tcp", Addr: echoServer(t)})
	cfg.Relay, cfg.Transport = httpsAddr, "auto"
	start := time.Now()
	a, err := r.tryAgent(cfg)
	if err != nil {
		t.Fatalf("agent with UDP blocked: %v", err)
	}
	took := time.Since(start)
	if got := a.client.Transport(); got != "tcp" {
		t.Fatalf("transport = %q, want tcp", got)
	}
	if took > 3*time.Second {
		t.Errorf("landed on TCP after %v, want within 3s", took)
	}
	c, err := net.DialTimeout("tcp", tcpAddrOf(t, a.url(t, "tcp")), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got, err := echoOnce(c, "over tcp"); err != nil || got != "over tcp" {
		t.Fatalf("echo = %q, %v", got, err)
	}
	t.Logf("landed on TCP after %v", took.Round(time.Millisecond))
}
