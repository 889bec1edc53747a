package server_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/ferrytunnel/ferry/agent/forward"
)

// named answers with its own name, so a test can tell which tunnel served a request.
func named(t *testing.T, name string) string {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, name) }))
	t.Cleanup(s.Close)
	return s.Listener.Addr().String()
}

// TestDomainRules checks the wildcard domain rules through real agents: custom names
// need the account's reservation, another account's names are refused, a wildcard
// covers nested names, and the most specific online tunnel wins.
func TestDomainRules(t *testing.T) {
	r := newRelay(t)
	_, otherToken := r.NewAccount(t, "other")

	// A custom domain nobody reserved: refused, saying how to reserve it.
	_, err := r.tryAgent(r.agentConfig(&forward.Tunnel{Name: "x", Proto: "http", Addr: named(t, "x"), Domain: "app.custom.test"}))
	if err == nil || !strings.Contains(err.Error(), "not reserved by this account") || !strings.Contains(err.Error(), "reserved-domains create") {
		t.Fatalf("bind of unreserved app.custom.test = %v, want not reserved + how to reserve", err)
	}
	// So is a wildcard, even under the relay's own domain.
	_, err = r.tryAgent(r.agentConfig(&forward.Tunnel{Name: "x", Proto: "http", Addr: named(t, "x"), Domain: "*." + domain}))
	if err == nil || !strings.Contains(err.Error(), "not reserved") {
		t.Fatalf("bind of *.%s = %v, want not reserved", domain, err)
	}

	r.ReserveDomain(t, "", "*.wild.test")
	wild := r.startAgent(&forward.Tunnel{Name: "wild", Proto: "http", Addr: named(t, "wild"), Domain: "*.wild.test"})
	exact := r.startAgent(&forward.Tunnel{Name: "exact", Proto: "http", Addr: named(t, "exact"), Domain: "foo.wild.test"})
	if got := wild.url(t, "http"); !strings.HasPrefix(got, "http://*.wild.test:") {
		t.Errorf("wildcard URL = %s, want http://*.wild.test:PORT", got)
	}
	c := r.httpClient(false)
	httpPort := port(r.Srv.HTTPAddr().String())
	for host, want := range map[string]string{
		"foo.wild.test":     "exact", // the most specific tunnel wins
		"bar.wild.test":     "wild",
		"a.b.c.wild.test":   "wild", // nested names are covered
		"FOO.Wild.Test.":    "exact",
		"x.foo.wild.test":   "wild",
		"wild.test":         "404",
		"notwild.test":      "404",
		"bar.wildtest.test": "404",
	} {
		if got := served(t, c, "http://"+host+":"+httpPort+"/"); got != want {
			t.Errorf("GET http://%s/ served by %q, want %q", host, got, want)
		}
	}
	exact.stop(t)
	waitFor(t, "foo.wild.test falls back to the wildcard", func() bool {
		return served(t, c, "http://foo.wild.test:"+httpPort+"/") == "wild"
	})

	// Another account may not bind a name under this account's wildcard, nor reserve one.
	cfg := r.agentConfig(&forward.Tunnel{Name: "steal", Proto: "http", Addr: named(t, "steal"), Domain: "foo.wild.test"})
	cfg.Authtoken = otherToken
	if _, err := r.tryAgent(cfg); err == nil || !strings.Contains(err.Error(), "reserved by another account") {
		t.Fatalf("other account binding foo.wild.test = %v, want reserved by another account", err)
	}
	// Names under the relay's domain need no reservation, for any account.
	cfg = r.agentConfig(&forward.Tunnel{Name: "free", Proto: "http", Addr: named(t, "free"), Domain: "free"})
	cfg.Authtoken = otherToken
	if _, err := r.tryAgent(cfg); err != nil {
		t.Fatalf("other account binding free.%s = %v, want nil", domain, err)
	}
}

// served returns the body of a 200 answer, else the status code.
func served(t *testing.T, c *http.Client, url string) string {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return fmt.Sprint(resp.StatusCode)
	}
	return string(body)
}
