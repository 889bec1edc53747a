package server_test

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferrytunnel/ferry/agent/forward"
	"github.com/ferrytunnel/ferry/relay/cert/certtest"
	"github.com/ferrytunnel/ferry/relay/config"
	"github.com/ferrytunnel/ferry/relay/events"
	"github.com/ferrytunnel/ferry/relay/server/servertest"
)

// TestEventsAndMetrics: an event subscription delivers signed tunnel, request and
// connection events to a webhook; /metrics counts sessions, tunnels and requests.
func TestEventsAndMetrics(t *testing.T) {
	var mu sync.Mutex
	var got []events.Record
	const secret = "whsec-test"
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := events.VerifySignature([]byte(secret), r.Header.Get(events.SignatureHeader), body, time.Now(), time.Minute); err != nil {
			t.Errorf("event delivery signature: %v", err)
			http.Error(w, "bad signature", 400)
			return
		}
		var recs []events.Record
		if err := json.Unmarshal(body, &recs); err != nil {
			t.Errorf("event delivery body %q: %v", body, err)
		}
		mu.Lock()
		got = append(got, recs...)
		mu.Unlock()
	}))
	t.Cleanup(hook.Close)
	r := &relayEnv{Relay: servertest.Start(t, servertest.Options{Log: testLogger(t), APIAddr: "127.0.0.1:0",
		Configure: func(c *config.Config) { c.MetricsAddr = "127.0.0.1:0"; c.EventsAllowPrivate = true }}), t: t, transport: "quic"}
	c := r.api(r.Account)
	// Refusals name the field (details.field, as the API's other field errors) and the fix.
	for _, bad := range []struct {
		what, field, msg string
		body             map[string]any
	}{
		{"unknown event type", "event_types[0]", `unknown event type "nope"`, map[string]any{"event_types": []string{"nope"},
			"destinations": []map[string]string{{"kind": "webhook", "url": hook.URL, "secret": secret}}}},
		{"file destination without --events-dir", "destinations[0].path", "starts it with --events-dir DIR", map[string]any{"event_types": []string{"tunnel_started"},
			"destinations": []map[string]string{{"kind": "file", "path": "/etc/passwd"}}}},
	} {
		code, out := c.do("POST", "/event_subscriptions", bad.body)
		details, _ := out["details"].(map[string]any)
		if msg, _ := out["msg"].(string); code != 400 || details["field"] != bad.field || !strings.Contains(msg, bad.msg) {
			t.Errorf("%s: %d %v, want 400 naming %s and saying %q", bad.what, code, out, bad.field, bad.msg)
		}
	}
	sub := c.must(201, "POST", "/event_subscriptions", map[string]any{
		"event_types":  []string{"tunnel_started", "http_request_complete", "tcp_connection_closed"},
		"destinations": []map[string]string{{"kind": "webhook", "url": hook.URL, "secret": secret}}})
	if strings.Contains(fmt.Sprint(sub), secret) {
		t.Errorf("subscription answer shows the webhook secret: %v", sub)
	}

	up := headerEcho(t)
	a := r.startAgent(&forward.Tunnel{Name: "web", Proto: "http", Addr: up.Listener.Addr().String()},
		&forward.Tunnel{Name: "echo", Proto: "tcp", Addr: echoServer(t)})
	get(t, r.httpClient(false), a.url(t, "https")+"/observed")
	conn, err := net.Dial("tcp", tcpAddrOf(t, a.url(t, "tcp")))
	if err != nil {
		t.Fatal(err)
	}
	echoOnce(conn, "hello") //nolint:errcheck
	conn.Close()
	// A second agent: its first tunnel has the same id within its session as "web".
	r.startAgent(&forward.Tunnel{Name: "other", Proto: "http", Addr: up.Listener.Addr().String()})

	waitFor(t, "events delivered", func() bool {
		mu.Lock()
		defer mu.Unlock()
		seen := map[string]int{}
		for _, rec := range got {
			seen[rec.EventType]++
			if rec.EventType == "http_request_complete" && rec.Object["path"] != "/observed" {
				t.Errorf("http_request_complete object = %v, want path /observed", rec.Object)
			}
			if rec.AccountID != r.Account {
				t.Errorf("event for account %s, want %s", rec.AccountID, r.Account)
			}
		}
		return seen["tunnel_started"] == 3 && seen["http_request_complete"] > 0 && seen["tcp_connection_closed"] > 0
	})
	// tunnel_id names one tunnel across sessions, and traffic events name the same one.
	mu.Lock()
	ids := map[string]string{} // tunnel name → tunnel_id
	for _, rec := range got {
		if rec.EventType == "tunnel_started" {
			id, _ := rec.Object["tunnel_id"].(string)
			if !strings.HasPrefix(id, "tn_") || ids[id] != "" {
				t.Errorf("tunnel_started %v: tunnel_id %q is not a fresh tn_ id", rec.Object, id)
			}
			ids[id] = rec.Object["name"].(string)
		}
	}
	for _, rec := range got {
		want := map[string]string{"http_request_complete": "web", "tcp_connection_closed": "echo"}[rec.EventType]
		if id, _ := rec.Object["tunnel_id"].(string); want != "" && ids[id] != want {
			t.Errorf("%s names tunnel_id %q (tunnel %q), want %s's", rec.EventType, id, ids[id], want)
		}
	}
	mu.Unlock()

	body := scrapeMetrics(t, r)
	for _, want := range []string{`ferry_relay_sessions{transport="quic"} 2`, `ferry_relay_tunnels{proto="http"} 2`,
		`ferry_relay_http_request_duration_seconds_count{code_class="2xx"} 1`, `ferry_relay_connections_total{proto="tcp"} 1`} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

// TestRejectionMetrics: refusals by mutual TLS (no certificate, a foreign one), the
// minimum TLS version and webhook verification are counted by module.
func TestRejectionMetrics(t *testing.T) {
	r := newRelayConfigured(t, "quic", func(c *config.Config) { c.MetricsAddr = "127.0.0.1:0" })
	clientCA := certtest.NewCA(t, "Client CA")
	name := "mtls." + domain
	r.startAgent(&forward.Tunnel{Name: "mtls", Proto: "tls", Addr: echoServer(t), Domain: name, TerminateAt: "edge", ClientCAsPEM: clientCA.PEM})
	handshakeAndRead(r, &tls.Config{ServerName: name, RootCAs: r.CA.Pool})                                                                             //nolint:errcheck // refused: counted
	handshakeAndRead(r, withClientCert(&tls.Config{ServerName: name, RootCAs: r.CA.Pool}, []tls.Certificate{certtest.NewCA(t, "x").Client(t, "eve")})) //nolint:errcheck
	handshakeAndRead(r, &tls.Config{ServerName: name, RootCAs: r.CA.Pool, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11})                 //nolint:errcheck

	up := headerEcho(t)
	hooks := r.startAgent(&forward.Tunnel{Name: "hooks", Proto: "http", Addr: up.Listener.Addr().String(),
		VerifyWebhook: "github", VerifyWebhookSecret: "It's a Secret to Everybody"})
	resp, err := r.httpClient(false).Post(hooks.url(t, "https")+"/payload", "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode < 400 {
		t.Fatalf("unsigned webhook: %d, want a refusal", resp.StatusCode)
	}

	body := scrapeMetrics(t, r)
	for _, want := range []string{`ferry_relay_module_rejections_total{module="mutual_tls"} 2`,
		`ferry_relay_module_rejections_total{module="tls_version"} 1`, `ferry_relay_module_rejections_total{module="webhook"} 1`} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

// TestHTTPConnMetrics: public HTTP and HTTPS connections are counted, with their bytes
// once they close.
func TestHTTPConnMetrics(t *testing.T) {
	r := newRelayConfigured(t, "quic", func(c *config.Config) { c.MetricsAddr = "127.0.0.1:0" })
	a := r.startAgent(&forward.Tunnel{Name: "web", Proto: "http", Addr: named(t, "web")})
	for _, scheme := range []string{"http", "https"} {
		c := r.httpClient(false)
		resp, err := c.Get(a.url(t, scheme) + "/x")
		if err != nil {
			t.Fatal(err)
		}
		io.ReadAll(resp.Body) //nolint:errcheck
		resp.Body.Close()
		c.CloseIdleConnections()
	}
	want := []string{`ferry_relay_connections_total{proto="http"} 1`, `ferry_relay_connections_total{proto="https"} 1`,
		`ferry_relay_connections{proto="http"} 0`, `ferry_relay_connections{proto="https"} 0`}
	deadline := time.Now().Add(5 * time.Second)
	for {
		body := scrapeMetrics(t, r)
		var missing []string
		for _, w := range want {
			if !strings.Contains(body, w) {
				missing = append(missing, w)
			}
		}
		for _, p := range []string{"http", "https"} {
			for _, d := range []string{"in", "out"} {
				if strings.Contains(body, fmt.Sprintf(`ferry_relay_bytes_total{direction=%q,proto=%q} 0`, d, p)) ||
					!strings.Contains(body, fmt.Sprintf(`ferry_relay_bytes_total{direction=%q,proto=%q}`, d, p)) {
					missing = append(missing, "bytes "+p+" "+d)
				}
			}
		}
		if len(missing) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("/metrics lacks %q", missing)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// scrapeMetrics reads the relay's /metrics page.
func scrapeMetrics(t *testing.T, r *relayEnv) string {
	t.Helper()
	resp, err := http.Get("http://" + r.Srv.MetricsAddr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(body)
}

// TestEventsToFile: with --events-dir (made at start if missing), a file destination
// inside it gets the account's events as JSON lines; a path outside it is refused, naming
// the field and the directory.
func TestEventsToFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "not", "yet")
	r := &relayEnv{Relay: servertest.Start(t, servertest.Options{Log: testLogger(t), APIAddr: "127.0.0.1:0",
		Configure: func(c *config.Config) { c.EventsDir = dir }}), t: t, transport: "quic"}
	c := r.api(r.Account)
	outside := filepath.Join(t.TempDir(), "events.jsonl")
	code, out := c.do("POST", "/event_subscriptions", map[string]any{"event_types": []string{"tunnel_started"},
		"destinations": []map[string]string{{"kind": "file", "path": outside}}})
	details, _ := out["details"].(map[string]any)
	if msg, _ := out["msg"].(string); code != 400 || details["field"] != "destinations[0].path" || !strings.Contains(msg, "outside the relay's --events-dir "+dir) {
		t.Errorf("file outside --events-dir: %d %v, want 400 naming destinations[0].path and the directory", code, out)
	}
	file := filepath.Join(dir, "events.jsonl")
	c.must(201, "POST", "/event_subscriptions", map[string]any{"event_types": []string{"tunnel_started", "tunnel_stopped"},
		"destinations": []map[string]string{{"kind": "file", "path": file}}})
	a := r.startAgent(&forward.Tunnel{Name: "logged", Proto: "http", Addr: named(t, "logged")})
	a.stop(t)
	var recs []events.Record
	waitFor(t, "tunnel_started and tunnel_stopped in the file", func() bool {
		data, _ := os.ReadFile(file)
		recs = recs[:0]
		for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
			var rec events.Record
			if json.Unmarshal([]byte(line), &rec) == nil {
				recs = append(recs, rec)
			}
		}
		return len(recs) == 2
	})
	if recs[0].EventType != "tunnel_started" || recs[1].EventType != "tunnel_stopped" ||
		recs[0].Object["name"] != "logged" || recs[0].Object["tunnel_id"] != recs[1].Object["tunnel_id"] || recs[0].AccountID != r.Account {
		t.Errorf("file holds %+v, want the tunnel's start and stop with one tunnel_id", recs)
	}
}
