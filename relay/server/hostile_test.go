package server_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/ferrytunnel/ferry/agent/forward"
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
