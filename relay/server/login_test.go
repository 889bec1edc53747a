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
	// A provider the relay does not know is refused before anything binds.
	_, err = r.tryAgent(r.agentConfig(&forward.Tunnel{Name: "x", Proto: "http", Addr: up.Listener.Addr().String(),
		OAuth: &protocol.BindOAuth{Provider: "myspace", ClientID: "a", ClientSecret: "b"}}))
	if err == nil || !strings.Contains(err.Error(), "github, google, microsoft or facebook") {
		t.Errorf("--oauth myspace: %v, want the known providers", err)
	}
}
