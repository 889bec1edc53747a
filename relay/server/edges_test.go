package server_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ferrytunnel/ferry/agent/forward"
	"github.com/ferrytunnel/ferry/agent/inspect"
	"github.com/ferrytunnel/ferry/relay/cert/certtest"
)

// labeled starts an agent with one labeled tunnel whose upstream answers name.
func (r *relayEnv) labeled(t *testing.T, name string, labels map[string]string) *agentEnv {
	return r.startAgent(&forward.Tunnel{Name: name, Proto: "labeled", Labels: labels, Addr: named(t, name)})
}

// edgeClient sends HTTPS requests for host to the relay, trusting the test CA.
func (r *relayEnv) edgeGet(t *testing.T, c *http.Client, host, path string) (int, string) {
	t.Helper()
	resp, err := c.Get("https://" + host + ":" + port(r.Srv.HTTPSAddr().String()) + path)
	if err != nil {
		t.Fatalf("GET https://%s%s: %v", host, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestHTTPSEdge: an HTTPS edge on a reserved domain routes by path (exact beats prefix,
// the longest prefix wins) to a tunnel group balanced over two labeled agents, to a
// fixed response, through route modules; changes apply without restart.
func TestHTTPSEdge(t *testing.T) {
	r := newAPIRelay(t, "shop.edges.test")
	c := r.api(r.Account)
	r.ReserveDomain(t, "", "shop.edges.test")
	r.labeled(t, "a", map[string]string{"edge": "web", "pool": "a"})
	r.labeled(t, "b", map[string]string{"edge": "web", "pool": "b"})

	group := c.must(201, "POST", "/backends/tunnel_group", map[string]any{"labels": map[string]string{"edge": "web"}})
	if n := len(group["tunnels"].([]any)); n != 2 {
		t.Errorf("tunnel group shows %d online tunnels, want 2", n)
	}
	for _, tun := range group["tunnels"].([]any) {
		if id, _ := tun.(map[string]any)["id"].(string); !strings.HasPrefix(id, "tn_") {
			t.Errorf("tunnel group member %v has no tn_ id", tun)
		}
	}
	fixed := c.must(201, "POST", "/backends/http_response", map[string]any{"status_code": 418, "body": "teapot", "headers": map[string]string{"X-Fixed": "1"}})
	edge := c.must(201, "POST", "/edges/https", map[string]any{"hostports": []string{"shop.edges.test:443"},
		"routes": []map[string]any{
			{"match_type": "path_prefix", "match": "/", "backend": map[string]string{"backend_id": group["id"].(string)}},
			{"match_type": "path_prefix", "match": "/tea", "backend": map[string]string{"backend_id": fixed["id"].(string)}},
			{"match_type": "exact_path", "match": "/teapot/exact", "backend": map[string]string{"backend_id": group["id"].(string)},
				"response_headers": map[string]any{"add": map[string]string{"X-Route": "exact"}}},
		}})
	edgeID := edge["id"].(string)
	hc := r.httpClient(false)
	seen := map[string]int{}
	for range 20 {
		code, body := r.edgeGet(t, hc, "shop.edges.test", "/anything")
		if code != 200 {
			t.Fatalf("GET /anything = %d %q", code, body)
		}
		seen[body]++
	}
	if seen["a"] < 5 || seen["b"] < 5 {
		t.Errorf("tunnel group spread 20 requests as %v, want both agents used", seen)
	}
	if code, body := r.edgeGet(t, hc, "shop.edges.test", "/tea/cup"); code != 418 || body != "teapot" {
		t.Errorf("GET /tea/cup = %d %q, want the fixed 418 teapot", code, body)
	}
	resp, err := hc.Get("https://shop.edges.test:" + port(r.Srv.HTTPSAddr().String()) + "/teapot/exact")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("X-Route") != "exact" {
		t.Errorf("GET /teapot/exact = %d X-Route %q, want 200 from the exact route", resp.StatusCode, resp.Header.Get("X-Route"))
	}

	// Route modules through the API: basic auth on a new route, added at run time.
	rt := c.must(201, "POST", "/edges/https/"+edgeID+"/routes", map[string]any{"match_type": "path_prefix", "match": "/admin",
		"backend": map[string]string{"backend_id": group["id"].(string)}, "basic_auth": map[string]any{"credentials": []string{"root:correct horse"}}})
	if creds := fmt.Sprint(rt["basic_auth"]); strings.Contains(creds, "correct horse") || strings.Contains(creds, "$2") {
		t.Errorf("route answer shows the password or its hash: %v", creds)
	}
	if code, _ := r.edgeGet(t, hc, "shop.edges.test", "/admin"); code != 401 {
		t.Errorf("GET /admin without credentials = %d, want 401", code)
	}
	req, _ := http.NewRequest("GET", "https://shop.edges.test:"+port(r.Srv.HTTPSAddr().String())+"/admin", nil)
	req.SetBasicAuth("root", "correct horse")
	if resp, err := hc.Do(req); err != nil || resp.StatusCode != 200 {
		t.Errorf("GET /admin with credentials = %v %v, want 200", resp, err)
	} else {
		resp.Body.Close()
	}
	// Deleting the route and the fixed backend: in use first, then free.
	if code, _ := c.do("DELETE", "/backends/http_response/"+fixed["id"].(string), nil); code != 409 {
		t.Errorf("delete a backend an edge uses = %d, want 409", code)
	}
	c.must(204, "DELETE", "/edges/https/"+edgeID+"/routes/"+rt["id"].(string), nil)
	if code, _ := r.edgeGet(t, hc, "shop.edges.test", "/admin"); code != 200 {
		t.Errorf("GET /admin after its route went = %d, want 200 from the / route", code)
	}
	// Plain HTTP is redirected to HTTPS.
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	req, _ = http.NewRequest("GET", "http://"+r.Srv.HTTPAddr().String()+"/x", nil)
	req.Host = "shop.edges.test"
	if resp, err := noRedirect.Do(req); err != nil || resp.StatusCode != http.StatusPermanentRedirect {
		t.Errorf("plain HTTP to an HTTPS edge = %v %v, want 308", resp, err)
	} else {
		resp.Body.Close()
	}
	// The reservation cannot go while the edge serves it, and a tunnel cannot take the name.
	ds := c.must(200, "GET", "/reserved_domains", nil)["reserved_domains"].([]any)
	if code, out := c.do("DELETE", "/reserved_domains/"+ds[0].(map[string]any)["id"].(string), nil); code != 409 {
		t.Errorf("delete a reservation an edge serves: %d %v, want 409", code, out)
	}
	if _, err := r.tryAgent(r.agentConfig(&forward.Tunnel{Name: "x", Proto: "http", Addr: named(t, "x"), Domain: "shop.edges.test"})); err == nil || !strings.Contains(err.Error(), "served by an edge") {
		t.Errorf("http tunnel on an edge's name: %v, want refused", err)
	}
	// Another account cannot put an edge on this account's domain.
	otherID, _ := r.NewAccount(t, "other")
	if code, out := r.api(otherID).do("POST", "/edges/https", map[string]any{"hostports": []string{"shop.edges.test:443"}}); code != 400 {
		t.Errorf("other account's edge on shop.edges.test = %d %v, want 400", code, out)
	}
}

// TestBackends: failover skips a backend with no online tunnel and one whose upstream
// refuses; weighted spreads requests by weight.
func TestBackends(t *testing.T) {
	r := newAPIRelay(t, "*.be.test")
	c := r.api(r.Account)
	r.ReserveDomain(t, "", "*.be.test")
	r.labeled(t, "a", map[string]string{"pool": "a"})
	r.labeled(t, "b", map[string]string{"pool": "b"})
	// A tunnel whose upstream refuses connections.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := ln.Addr().String()
	ln.Close()
	r.startAgent(&forward.Tunnel{Name: "dead", Proto: "labeled", Labels: map[string]string{"pool": "dead"}, Addr: dead})
	// The same, inspecting: the agent takes the stream and answers 502 itself.
	r.startAgent(&forward.Tunnel{Name: "dead-inspected", Proto: "labeled", Labels: map[string]string{"pool": "dead2"}, Addr: dead,
		Inspect: true, Store: inspect.NewStore()})
	tg := func(pool string) string {
		return c.must(201, "POST", "/backends/tunnel_group", map[string]any{"labels": map[string]string{"pool": pool}})["id"].(string)
	}
	none, deadG, dead2G, a, b := tg("nobody"), tg("dead"), tg("dead2"), tg("a"), tg("b")
	fo := c.must(201, "POST", "/backends/failover", map[string]any{"backends": []string{none, deadG, dead2G, b, a}})
	wt := c.must(201, "POST", "/backends/weighted", map[string]any{"backends": map[string]int{a: 80, b: 20}})
	if code, out := c.do("POST", "/backends/failover", map[string]any{"backends": []string{"bkdtg_nope"}}); code != 400 {
		t.Errorf("failover to an unknown backend = %d %v, want 400", code, out)
	}
	for host, id := range map[string]string{"fo.be.test": fo["id"].(string), "wt.be.test": wt["id"].(string)} {
		c.must(201, "POST", "/edges/https", map[string]any{"hostports": []string{host + ":443"},
			"routes": []map[string]any{{"match_type": "path_prefix", "match": "/", "backend": map[string]string{"backend_id": id}}}})
	}
	hc := r.httpClient(false)
	for range 5 {
		if code, body := r.edgeGet(t, hc, "fo.be.test", "/"); code != 200 || body != "b" {
			t.Errorf("failover GET = %d %q, want 200 from b (nobody and both dead skipped)", code, body)
		}
	}
	const n = 400
	count := map[string]int{}
	for range n {
		_, body := r.edgeGet(t, hc, "wt.be.test", "/")
		count[body]++
	}
	// 80/20 over 400 requests: a binomial with sd ~8; allow 4 sd.
	if got := float64(count["a"]); math.Abs(got-0.8*n) > 32 {
		t.Errorf("weighted 80/20 spread %d requests as %v, want about 320 to a", n, count)
	}
}

// TestTLSAndTCPEdges: a TLS edge terminating at the edge with an IP policy, and a TCP
// edge on a reserved address, both to tunnel groups.
func TestTLSAndTCPEdges(t *testing.T) {
	r := newAPIRelay(t, "secure.tls-edge.test")
	c := r.api(r.Account)
	r.ReserveDomain(t, "", "secure.tls-edge.test")
	r.startAgent(&forward.Tunnel{Name: "echo", Proto: "labeled", Labels: map[string]string{"svc": "echo"}, Addr: echoServer(t)})
	group := c.must(201, "POST", "/backends/tunnel_group", map[string]any{"labels": map[string]string{"svc": "echo"}})["id"].(string)
	deny := c.must(201, "POST", "/ip_policies", map[string]any{"action": "deny", "cidrs": []string{"10.0.0.0/8"}})["id"].(string)
	c.must(201, "POST", "/edges/tls", map[string]any{"hostports": []string{"secure.tls-edge.test:443"},
		"backend": map[string]string{"backend_id": group}, "tls_termination": map[string]string{"terminate_at": "edge", "min_version": "1.3"},
		"ip_restriction": map[string]any{"ip_policy_ids": []string{deny}}})
	conn, err := tls.Dial("tcp", r.Srv.HTTPSAddr().String(), &tls.Config{ServerName: "secure.tls-edge.test", RootCAs: r.CA.Pool})
	if err != nil {
		t.Fatalf("TLS edge: %v", err)
	}
	if got, err := echoOnce(conn, "over the tls edge"); err != nil || got != "over the tls edge" {
		t.Errorf("TLS edge echo = %q, %v", got, err)
	}
	conn.Close()
	if _, err := tls.Dial("tcp", r.Srv.HTTPSAddr().String(), &tls.Config{ServerName: "secure.tls-edge.test", RootCAs: r.CA.Pool, MaxVersion: tls.VersionTLS12}); err == nil {
		t.Error("TLS 1.2 client accepted by an edge with min_version 1.3")
	}
	// An allow policy that does not match 127.0.0.1 shuts the client out.
	allow := c.must(201, "POST", "/ip_policies", map[string]any{"action": "allow", "cidrs": []string{"192.0.2.0/24"}})["id"].(string)
	edges := c.must(200, "GET", "/edges/tls", nil)["edges_tls"].([]any)
	id := edges[0].(map[string]any)["id"].(string)
	c.must(200, "PATCH", "/edges/tls/"+id, map[string]any{"ip_restriction": map[string]any{"ip_policy_ids": []string{allow}}})
	if conn, err := tls.Dial("tcp", r.Srv.HTTPSAddr().String(), &tls.Config{ServerName: "secure.tls-edge.test", RootCAs: r.CA.Pool}); err == nil {
		conn.Close()
		t.Error("client outside the allow policy got through")
	}

	addr := c.must(201, "POST", "/reserved_addrs", map[string]any{})["addr"].(string)
	c.must(201, "POST", "/edges/tcp", map[string]any{"hostports": []string{addr}, "backend": map[string]string{"backend_id": group}})
	_, p, _ := net.SplitHostPort(addr)
	var tc net.Conn
	deadline := time.Now().Add(5 * time.Second)
	for tc == nil && time.Now().Before(deadline) {
		tc, _ = net.Dial("tcp", "127.0.0.1:"+p)
	}
	if tc == nil {
		t.Fatalf("TCP edge on %s not listening", addr)
	}
	if got, err := echoOnce(tc, "over the tcp edge"); err != nil || got != "over the tcp edge" {
		t.Errorf("TCP edge echo = %q, %v", got, err)
	}
	tc.Close()
}

// TestRouteModules: every module set on an HTTPS edge route through the API acts on real
// requests: IP restriction, compression, circuit breaker, webhook verification, and the
// edge's mutual TLS.
func TestRouteModules(t *testing.T) {
	r := newAPIRelay(t, "mods.edges.test")
	c := r.api(r.Account)
	r.ReserveDomain(t, "", "mods.edges.test")
	// An upstream with a compressible page, a failing path and an echo of the body.
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		switch req.URL.Path {
		case "/fail":
			http.Error(w, "boom", 500)
		case "/hook":
			b, _ := io.ReadAll(req.Body)
			fmt.Fprintf(w, "got %s", b)
		default:
			w.Header().Set("Content-Type", "text/plain")
			fmt.Fprint(w, strings.Repeat("compress me ", 200))
		}
	}))
	t.Cleanup(up.Close)
	r.startAgent(&forward.Tunnel{Name: "mods", Proto: "labeled", Labels: map[string]string{"app": "mods"}, Addr: up.Listener.Addr().String()})
	group := c.must(201, "POST", "/backends/tunnel_group", map[string]any{"labels": map[string]string{"app": "mods"}})["id"].(string)
	deny := c.must(201, "POST", "/ip_policies", map[string]any{"action": "deny", "cidrs": []string{"127.0.0.0/8", "::1/128"}})["id"].(string)
	be := map[string]string{"backend_id": group}
	c.must(201, "POST", "/edges/https", map[string]any{"hostports": []string{"mods.edges.test:443"}, "routes": []map[string]any{
		{"match_type": "path_prefix", "match": "/gz", "backend": be, "compression": map[string]bool{"enabled": true}},
		{"match_type": "path_prefix", "match": "/fail", "backend": be, "circuit_breaker": map[string]float64{"error_threshold_percentage": 0.5}},
		{"match_type": "path_prefix", "match": "/hook", "backend": be, "webhook_verification": map[string]string{"provider": "github", "secret": "hooksecret"}},
		{"match_type": "path_prefix", "match": "/blocked", "backend": be, "ip_restriction": map[string]any{"ip_policy_ids": []string{deny}}},
	}})
	hc := r.httpClient(false)
	base := "https://mods.edges.test:" + port(r.Srv.HTTPSAddr().String())

	req, _ := http.NewRequest("GET", base+"/gz", nil)
	req.Header.Set("Accept-Encoding", "gzip")
	resp, err := hc.Transport.RoundTrip(req) // the raw answer, not decompressed by the client
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Header.Get("Content-Encoding") != "gzip" {
		t.Errorf("compression route: Content-Encoding %q, want gzip", resp.Header.Get("Content-Encoding"))
	}

	if code, _ := r.edgeGet(t, hc, "mods.edges.test", "/blocked"); code != http.StatusForbidden {
		t.Errorf("route denying 127.0.0.0/8: %d, want 403", code)
	}

	body := `{"zen":"hi"}`
	mac := hmac.New(sha256.New, []byte("hooksecret"))
	mac.Write([]byte(body))
	for sig, want := range map[string]int{"": 403, "sha256=" + hex.EncodeToString(mac.Sum(nil)): 200} {
		req, _ := http.NewRequest("POST", base+"/hook", strings.NewReader(body))
		if sig != "" {
			req.Header.Set("X-Hub-Signature-256", sig)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("webhook route, signature %q: %d, want %d", sig, resp.StatusCode, want)
		}
	}

	// 20 failures in the window open the breaker: the edge answers 503 itself.
	opened := false
	for range 40 {
		code, _ := r.edgeGet(t, hc, "mods.edges.test", "/fail")
		if code == http.StatusServiceUnavailable {
			opened = true
			break
		}
	}
	if !opened {
		t.Error("circuit breaker never opened after 40 upstream 500s")
	}
	// An unrelated change through the API does not close the open circuit.
	c.must(201, "POST", "/ip_policies", map[string]any{"action": "allow", "cidrs": []string{"192.0.2.0/24"}})
	if code, _ := r.edgeGet(t, hc, "mods.edges.test", "/fail"); code != http.StatusServiceUnavailable {
		t.Errorf("after an unrelated API change: %d, want the circuit still open (503)", code)
	}

	// Mutual TLS on the edge: no client certificate, no connection.
	ca := certtest.NewCA(t, "Edge Client CA")
	caID := c.must(201, "POST", "/certificate_authorities", map[string]any{"ca_pem": string(ca.PEM)})["id"].(string)
	edges := c.must(200, "GET", "/edges/https", nil)["edges_https"].([]any)
	c.must(200, "PATCH", "/edges/https/"+edges[0].(map[string]any)["id"].(string), map[string]any{"mutual_tls": map[string]any{"certificate_authority_ids": []string{caID}}})
	conn, err := tls.Dial("tcp", r.Srv.HTTPSAddr().String(), &tls.Config{ServerName: "mods.edges.test", RootCAs: r.CA.Pool})
	if err == nil {
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(conn, "GET /gz HTTP/1.1\r\nHost: mods.edges.test\r\n\r\n")
		_, err = conn.Read(make([]byte, 1))
		conn.Close()
	}
	if err == nil || !strings.Contains(err.Error(), "certificate required") {
		t.Errorf("edge with mutual TLS, no client certificate: %v, want certificate required", err)
	}
	cert := ca.Client(t, "alice")
	conn, err = tls.Dial("tcp", r.Srv.HTTPSAddr().String(), &tls.Config{ServerName: "mods.edges.test", RootCAs: r.CA.Pool, Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatalf("edge with mutual TLS, client certificate from its CA: %v", err)
	}
	conn.Close()
}

// TestGroupChurn: requests keep flowing while agents join and leave a tunnel group; only
// requests in flight on a leaving agent may fail, and these are idle here.
func TestGroupChurn(t *testing.T) {
	r := newAPIRelay(t, "churn.edges.test")
	c := r.api(r.Account)
	r.ReserveDomain(t, "", "churn.edges.test")
	labels := map[string]string{"app": "churn"}
	first := r.labeled(t, "first", labels)
	group := c.must(201, "POST", "/backends/tunnel_group", map[string]any{"labels": labels})["id"].(string)
	c.must(201, "POST", "/edges/https", map[string]any{"hostports": []string{"churn.edges.test:443"},
		"routes": []map[string]any{{"match_type": "path_prefix", "match": "/", "backend": map[string]string{"backend_id": group}}}})
	hc := r.httpClient(false)
	failures := 0
	check := func(n int) {
		for range n {
			if code, _ := r.edgeGet(t, hc, "churn.edges.test", "/"); code != 200 {
				failures++
			}
		}
	}
	check(10)
	second := r.labeled(t, "second", labels)
	check(10)
	first.stop(t) // leaves while idle
	check(20)
	third := r.labeled(t, "third", labels)
	second.stop(t)
	check(20)
	third.stop(t)
	if failures != 0 {
		t.Errorf("%d requests failed while agents joined and left the group, want 0", failures)
	}
	if code, _ := r.edgeGet(t, hc, "churn.edges.test", "/"); code != http.StatusBadGateway {
		t.Errorf("with no agent online: %d, want 502", code)
	}
}

// TestRouteSecretsRoundTrip: a route sent back as GET shows it keeps its secrets.
func TestRouteSecretsRoundTrip(t *testing.T) {
	r := newAPIRelay(t, "rt.edges.test")
	c := r.api(r.Account)
	r.ReserveDomain(t, "", "rt.edges.test")
	r.labeled(t, "rt", map[string]string{"app": "rt"})
	group := c.must(201, "POST", "/backends/tunnel_group", map[string]any{"labels": map[string]string{"app": "rt"}})["id"].(string)
	edge := c.must(201, "POST", "/edges/https", map[string]any{"hostports": []string{"rt.edges.test:443"}, "routes": []map[string]any{
		{"match_type": "path_prefix", "match": "/", "backend": map[string]string{"backend_id": group},
			"basic_auth": map[string]any{"credentials": []string{"root:correct horse"}}}}})
	id := edge["id"].(string)
	rt := edge["routes"].([]any)[0].(map[string]any)
	c.must(200, "PATCH", "/edges/https/"+id+"/routes/"+rt["id"].(string), rt) // as shown, "root:<hidden>"
	req, _ := http.NewRequest("GET", "https://rt.edges.test:"+port(r.Srv.HTTPSAddr().String())+"/", nil)
	req.SetBasicAuth("root", "correct horse")
	resp, err := r.httpClient(false).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("after PATCHing the route back as shown, the old password gets %d, want 200", resp.StatusCode)
	}
	rt["basic_auth"] = map[string]any{"credentials": []string{"newuser:<hidden>"}}
	if code, _ := c.do("PATCH", "/edges/https/"+id+"/routes/"+rt["id"].(string), rt); code != 400 {
		t.Errorf("a new user with the placeholder for a password: %d, want 400", code)
	}
}

// TestTCPEdgeWaitsForTunnelPort: a TCP edge created on a reserved address that a tcp
// tunnel holds starts serving as soon as the tunnel stops.
func TestTCPEdgeWaitsForTunnelPort(t *testing.T) {
	r := newAPIRelay(t)
	c := r.api(r.Account)
	addr := c.must(201, "POST", "/reserved_addrs", map[string]any{})["addr"].(string)
	_, p, _ := net.SplitHostPort(addr)
	holder, err := r.tryAgent(r.agentConfig(&forward.Tunnel{Name: "holder", Proto: "tcp", Addr: echoServer(t), RemoteAddr: addr}))
	if err != nil {
		t.Fatal(err)
	}
	r.startAgent(&forward.Tunnel{Name: "echo", Proto: "labeled", Labels: map[string]string{"svc": "edge"}, Addr: echoServer(t)})
	group := c.must(201, "POST", "/backends/tunnel_group", map[string]any{"labels": map[string]string{"svc": "edge"}})["id"].(string)
	c.must(201, "POST", "/edges/tcp", map[string]any{"hostports": []string{addr}, "backend": map[string]string{"backend_id": group}})

	holder.stop(t) // its port is free: the edge takes it
	deadline := time.Now().Add(5 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", "127.0.0.1:"+p, time.Second)
		if err == nil {
			got, err := echoOnce(conn, "over the edge")
			conn.Close()
			if err == nil && got == "over the edge" {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the TCP edge on %s does not serve 5 s after the tunnel holding its port stopped", addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
