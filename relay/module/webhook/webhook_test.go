package webhook

import (
	"bytes"
	"crypto/sha256"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
)

func TestProviders(t *testing.T) {
	want := []string{"github", "gitlab", "intercom", "sendgrid", "shopify", "slack", "sns", "stripe", "twilio", "xero"}
	if got := Providers(); !slices.Equal(got, want) {
		t.Fatalf("Providers() = %v, want %v", got, want)
	}
}

func TestNewErrors(t *testing.T) {
	_, err := New(Config{Provider: "bitbucket", Secret: "x"})
	if err == nil || !strings.Contains(err.Error(), "github, gitlab, intercom, sendgrid, shopify, slack, sns, stripe, twilio, xero") {
		t.Errorf("New(bitbucket) = %v, want an error listing the known providers", err)
	}
	if _, err := New(Config{Provider: "github"}); err == nil || !strings.Contains(err.Error(), "secret is empty") {
		t.Errorf("New(github, no secret) = %v, want an empty-secret error", err)
	}
	if _, err := New(Config{Provider: "github", Secret: "x", MaxBody: -1}); err == nil {
		t.Error("New(MaxBody -1) = nil error, want one")
	}
	if v, err := New(Config{Provider: " GitHub ", Secret: "x"}); err != nil || v.Provider() != "github" {
		t.Errorf("New(\" GitHub \") = %v, %v; want the github verifier", v, err)
	}
}

// upstream records what the handler behind the middleware received.
type upstream struct {
	calls   int
	body    []byte
	length  int64
	readErr error
}

func (u *upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	u.calls++
	u.body, u.readErr = io.ReadAll(r.Body)
	u.length = r.ContentLength
	_, _ = io.WriteString(w, "upstream ok")
}

func startServer(t *testing.T, v *Verifier) (*httptest.Server, *upstream) {
	t.Helper()
	up := &upstream{}
	srv := httptest.NewServer(v.Middleware(up))
	t.Cleanup(srv.Close)
	return srv, up
}

func post(t *testing.T, url string, body io.Reader, hdr map[string]string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, url, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

func TestMiddleware(t *testing.T) {
	const secret = "mw-secret"
	v := mustNew(t, Config{Provider: "github", Secret: secret, MaxBody: 1024})
	srv, up := startServer(t, v)

	// Bytes that any re-encoding would change: the upstream must see them exactly.
	body := "{\"a\": 1,\r\n \"b\":\"\u00e9\\u00e9\"}\x00\xff"
	sig := "sha256=" + hmacHex(sha256.New, secret, body)

	resp, got := post(t, srv.URL+"/hook", strings.NewReader(body), map[string]string{"X-Hub-Signature-256": sig})
	if resp.StatusCode != http.StatusOK || got != "upstream ok" {
		t.Fatalf("POST signed = %d %q, want 200 from upstream", resp.StatusCode, got)
	}
	if up.calls != 1 || string(up.body) != body || up.length != int64(len(body)) || up.readErr != nil {
		t.Fatalf("upstream saw body %q (len %d, err %v), want %q (len %d)", up.body, up.length, up.readErr, body, len(body))
	}

	// Chunked (unknown length): ContentLength is restored for the upstream.
	resp, _ = post(t, srv.URL+"/hook", io.MultiReader(strings.NewReader(body)), map[string]string{"X-Hub-Signature-256": sig})
	if resp.StatusCode != http.StatusOK || string(up.body) != body || up.length != int64(len(body)) {
		t.Fatalf("POST chunked = %d, upstream saw %q (len %d), want 200 and %q", resp.StatusCode, up.body, up.length, body)
	}

	resp, got = post(t, srv.URL+"/hook", strings.NewReader(body+"x"), map[string]string{"X-Hub-Signature-256": sig})
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("POST tampered = %d, want 403", resp.StatusCode)
	}
	if fe := resp.Header.Get("Ferry-Error"); fe != "403 Webhook verification failed" {
		t.Errorf("Ferry-Error = %q, want %q", fe, "403 Webhook verification failed")
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("Content-Type = %q, want text/plain", ct)
	}
	if !strings.Contains(got, "bad signature") || strings.Contains(got, secret) {
		t.Errorf("403 body = %q, want the reason and not the secret", got)
	}

	resp, got = post(t, srv.URL+"/hook", strings.NewReader(body), nil)
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(got, "missing header X-Hub-Signature-256") {
		t.Errorf("POST unsigned = %d %q, want 403 naming the header", resp.StatusCode, got)
	}
	if up.calls != 2 {
		t.Errorf("upstream called %d times, want 2 (only the signed requests)", up.calls)
	}

	big := strings.Repeat("x", 4096)
	bigSig := map[string]string{"X-Hub-Signature-256": "sha256=" + hmacHex(sha256.New, secret, big)}
	for name, r := range map[string]func() io.Reader{
		"with Content-Length": func() io.Reader { return strings.NewReader(big) },
		"chunked":             func() io.Reader { return io.MultiReader(bytes.NewReader([]byte(big))) },
	} {
		resp, got = post(t, srv.URL+"/hook", r(), bigSig)
		if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(got, "1024-byte limit") {
			t.Errorf("POST 4096 bytes %s = %d %q, want 413 saying the 1024-byte limit", name, resp.StatusCode, got)
		}
	}
	if up.calls != 2 {
		t.Errorf("upstream called %d times, want 2 (never for too large bodies)", up.calls)
	}
}

// Xero's intent-to-receive check wants 401 for a bad signature.
func TestMiddlewareXero401(t *testing.T) {
	v := mustNew(t, Config{Provider: "xero", Secret: "xero-key"})
	srv, _ := startServer(t, v)
	resp, _ := post(t, srv.URL, strings.NewReader(`{"events":[]}`), map[string]string{"X-Xero-Signature": "AAAA"})
	if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("Ferry-Error") != "401 Webhook verification failed" {
		t.Fatalf("POST bad Xero signature = %d (Ferry-Error %q), want 401", resp.StatusCode, resp.Header.Get("Ferry-Error"))
	}
}

func TestDefaultMaxBody(t *testing.T) {
	v := mustNew(t, Config{Provider: "gitlab", Secret: "x"})
	if v.maxBody != 10<<20 {
		t.Fatalf("default maxBody = %d, want %d", v.maxBody, 10<<20)
	}
}
