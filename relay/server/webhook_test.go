package server_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/ferrytunnel/ferry/agent/forward"
)

// TestVerifyWebhook: ferry http --verify-webhook github: the relay refuses unsigned or
// wrongly signed requests with 403 and passes GitHub-signed ones with their exact body.
func TestVerifyWebhook(t *testing.T) {
	r := newRelay(t)
	up := headerEcho(t)
	a := r.startAgent(&forward.Tunnel{Name: "hooks", Proto: "http", Addr: up.Listener.Addr().String(),
		VerifyWebhook: "github", VerifyWebhookSecret: "It's a Secret to Everybody"})
	url := a.url(t, "https") + "/payload"
	c := r.httpClient(false)
	body := `{"action":"opened"}`
	post := func(sig string) (int, string) {
		req, _ := http.NewRequest("POST", url, strings.NewReader(body))
		if sig != "" {
			req.Header.Set("X-Hub-Signature-256", sig)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("POST %s: %v", url, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	mac := hmac.New(sha256.New, []byte("It's a Secret to Everybody"))
	mac.Write([]byte(body))
	good := "sha256=" + hex.EncodeToString(mac.Sum(nil))
	if code, _ := post(""); code != http.StatusForbidden {
		t.Errorf("unsigned POST = %d, want 403", code)
	}
	if code, _ := post("sha256=" + strings.Repeat("0", 64)); code != http.StatusForbidden {
		t.Errorf("wrongly signed POST = %d, want 403", code)
	}
	if code, got := post(good); code != 200 || !strings.Contains(got, `"body":"{\"action\":\"opened\"}"`) {
		t.Errorf("signed POST = %d %s, want 200 with the body intact", code, got)
	}
	// A bad provider is refused by the agent before anything is bound.
	if _, err := r.tryAgent(r.agentConfig(&forward.Tunnel{Name: "x", Proto: "http", Addr: up.Listener.Addr().String(),
		VerifyWebhook: "myspace", VerifyWebhookSecret: "s"})); err == nil || !strings.Contains(err.Error(), "github") {
		t.Errorf("unknown provider: %v, want an error listing the providers", err)
	}
}
