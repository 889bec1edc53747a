package server_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/ferrytunnel/ferry/agent/forward"
	"github.com/ferrytunnel/ferry/protocol"
)

// TestTunnelOAuthFlags: ferry http --oauth github: the relay sends an unauthenticated
// browser to GitHub's authorize URL with the tunnel's client id and its own callback,
// before anything reaches the agent; a bad provider is refused at the agent.
func TestTunnelOAuthFlags(t *testing.T) {
	r := newRelay(t)
	up := headerEcho(t)
	a := r.startAgent(&forward.Tunnel{Name: "private", Proto: "http", Addr: up.Listener.Addr().String(),
		OAuth: &protocol.BindOAuth{Provider: "github", ClientID: "Iv1.test", ClientSecret: "shh", AllowDomains: []string{"example.com"}}})
	base := a.url(t, "https")
	c := r.httpClient(false)
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := c.Get(base + "/secret?x=1")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusFound || loc.Host != "github.com" || loc.Query().Get("client_id") != "Iv1.test" ||
		!strings.HasSuffix(loc.Query().Get("redirect_uri"), "/oauth2/callback") {
		t.Errorf("unauthenticated GET = %d Location %q, want 302 to github.com with client_id Iv1.test and our /oauth2/callback", resp.StatusCode, loc)
	}
	// Plain HTTP cannot complete a login (its cookies are Secure): redirected to HTTPS.
	plain, err := c.Get(a.url(t, "http") + "/secret")
	if err != nil {
		t.Fatal(err)
	}
	plain.Body.Close()
	if plain.StatusCode != http.StatusPermanentRedirect {
		t.Errorf("plain HTTP to a login tunnel = %d, want 308 to HTTPS", plain.StatusCode)
	}
	// A provider the relay does not know is refused before anything binds.
	_, err = r.tryAgent(r.agentConfig(&forward.Tunnel{Name: "x", Proto: "http", Addr: up.Listener.Addr().String(),
		OAuth: &protocol.BindOAuth{Provider: "myspace", ClientID: "a", ClientSecret: "b"}}))
	if err == nil || !strings.Contains(err.Error(), "github, google, microsoft or facebook") {
		t.Errorf("--oauth myspace: %v, want the known providers", err)
	}
}

// TestEdgeLoginCallbackPath: a login on /team/ still gets its callback at /oauth2/callback,
// which the "/" route (no login) would otherwise receive, code and all.
func TestEdgeLoginCallbackPath(t *testing.T) {
	r := newAPIRelay(t, "login.edges.test")
	c := r.api(r.Account)
	r.ReserveDomain(t, "", "login.edges.test")
	r.labeled(t, "app", map[string]string{"app": "login"})
	group := c.must(201, "POST", "/backends/tunnel_group", map[string]any{"labels": map[string]string{"app": "login"}})["id"].(string)
	be := map[string]string{"backend_id": group}
	c.must(201, "POST", "/edges/https", map[string]any{"hostports": []string{"login.edges.test:443"}, "routes": []map[string]any{
		{"match_type": "path_prefix", "match": "/", "backend": be},
		{"match_type": "path_prefix", "match": "/team/", "backend": be,
			"oauth": map[string]any{"provider": "github", "client_id": "Iv1.x", "client_secret": "s"}},
	}})
	hc := r.httpClient(false)
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	code, body := r.edgeGet(t, hc, "login.edges.test", "/oauth2/callback?code=leaked&state=x")
	if code == 200 || body == "app" {
		t.Errorf("/oauth2/callback went to the / route (%d %q), want the login module to answer", code, body)
	}
	if code, _ := r.edgeGet(t, hc, "login.edges.test", "/team/board"); code != http.StatusFound {
		t.Errorf("/team/board unauthenticated = %d, want 302 to the provider", code)
	}
	if code, body := r.edgeGet(t, hc, "login.edges.test", "/other"); code != 200 || body != "app" {
		t.Errorf("/other = %d %q, want the / route", code, body)
	}
}
