package webhook

import (
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"hash"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The signatures in these tests are derived here, from each provider's documentation,
// with crypto/hmac directly: never with the package's own helpers.

var testNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func hmacHex(h func() hash.Hash, key, msg string) string {
	m := hmac.New(h, []byte(key))
	m.Write([]byte(msg))
	return hex.EncodeToString(m.Sum(nil))
}

func hmacB64(h func() hash.Hash, key, msg string) string {
	m := hmac.New(h, []byte(key))
	m.Write([]byte(msg))
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

func newReq(method, target, body string, hdr map[string]string) *http.Request {
	r := httptest.NewRequest(method, target, strings.NewReader(body))
	for k, v := range hdr {
		r.Header.Set(k, v)
	}
	return r
}

func mustNew(t *testing.T, cfg Config) *Verifier {
	t.Helper()
	if cfg.Now == nil {
		cfg.Now = func() time.Time { return testNow }
	}
	v, err := New(cfg)
	if err != nil {
		t.Fatalf("New(%s) = %v", cfg.Provider, err)
	}
	return v
}

// hmacCase is one provider whose whole signature is a function of secret and body.
type hmacCase struct {
	provider string
	body     string
	// sign returns the headers the provider would send for body signed with secret.
	sign func(secret, body string) map[string]string
	// required lists the headers whose absence must be reported by name.
	required []string
}

var ts = strconv.FormatInt(testNow.Unix(), 10)

var hmacCases = []hmacCase{
	{
		// docs.github.com "Validating webhook deliveries": X-Hub-Signature-256 is
		// "sha256=" + hex HMAC-SHA256(secret, payload).
		provider: "github", body: `{"action":"opened","number":1}`,
		sign: func(secret, body string) map[string]string {
			return map[string]string{"X-Hub-Signature-256": "sha256=" + hmacHex(sha256.New, secret, body)}
		},
		required: []string{"X-Hub-Signature-256"},
	},
	{
		// GitLab sends the configured secret token as is in X-Gitlab-Token.
		provider: "gitlab", body: `{"object_kind":"push"}`,
		sign: func(secret, _ string) map[string]string {
			return map[string]string{"X-Gitlab-Token": secret}
		},
		required: []string{"X-Gitlab-Token"},
	},
	{
		// Intercom: X-Hub-Signature is "sha1=" + hex HMAC-SHA1(client_secret, body).
		provider: "intercom", body: `{"type":"notification_event","topic":"ping"}`,
		sign: func(secret, body string) map[string]string {
			return map[string]string{"X-Hub-Signature": "sha1=" + hmacHex(sha1.New, secret, body)}
		},
		required: []string{"X-Hub-Signature"},
	},
	{
		// Shopify: X-Shopify-Hmac-Sha256 is base64 HMAC-SHA256(client secret, raw body).
		provider: "shopify", body: `{"id":820982911946154508,"email":"jon@example.com"}`,
		sign: func(secret, body string) map[string]string {
			return map[string]string{"X-Shopify-Hmac-Sha256": hmacB64(sha256.New, secret, body)}
		},
		required: []string{"X-Shopify-Hmac-Sha256"},
	},
	{
		// Slack: X-Slack-Signature is "v0=" + hex HMAC-SHA256(signing secret,
		// "v0:" + timestamp + ":" + body).
		provider: "slack", body: "token=abc&team_id=T1&command=%2Fdeploy&text=now",
		sign: func(secret, body string) map[string]string {
			return map[string]string{
				"X-Slack-Request-Timestamp": ts,
				"X-Slack-Signature":         "v0=" + hmacHex(sha256.New, secret, "v0:"+ts+":"+body),
			}
		},
		required: []string{"X-Slack-Signature", "X-Slack-Request-Timestamp"},
	},
	{
		// Stripe: Stripe-Signature "t=T,v1=S", S = hex HMAC-SHA256(secret, T + "." + body).
		provider: "stripe", body: `{"id":"evt_1","object":"event","type":"charge.succeeded"}`,
		sign: func(secret, body string) map[string]string {
			return map[string]string{"Stripe-Signature": "t=" + ts + ",v1=" + hmacHex(sha256.New, secret, ts+"."+body)}
		},
		required: []string{"Stripe-Signature"},
	},
	{
		// Xero: x-xero-signature is base64 HMAC-SHA256(webhook key, body).
		provider: "xero", body: `{"events":[],"lastEventSequence":0,"firstEventSequence":0,"entropy":"S0m3r4Nd0mt3xt"}`,
		sign: func(secret, body string) map[string]string {
			return map[string]string{"x-xero-signature": hmacB64(sha256.New, secret, body)}
		},
		required: []string{"x-xero-signature"},
	},
}

func TestHMACProviders(t *testing.T) {
	const secret, wrong = "s3cr3t-for-tests", "not-the-secret"
	for _, c := range hmacCases {
		t.Run(c.provider, func(t *testing.T) {
			v := mustNew(t, Config{Provider: c.provider, Secret: secret})

			t.Run("valid", func(t *testing.T) {
				if err := v.Verify(newReq("POST", "/hook", c.body, c.sign(secret, c.body)), []byte(c.body)); err != nil {
					t.Fatalf("Verify = %v, want nil", err)
				}
			})
			t.Run("tampered body", func(t *testing.T) {
				if c.provider == "gitlab" {
					t.Skip("GitLab's token does not cover the body")
				}
				tampered := strings.Replace(c.body, "1", "2", 1) + " "
				err := v.Verify(newReq("POST", "/hook", tampered, c.sign(secret, c.body)), []byte(tampered))
				if err == nil {
					t.Fatal("Verify(tampered body) = nil, want an error")
				}
			})
			t.Run("wrong secret", func(t *testing.T) {
				err := v.Verify(newReq("POST", "/hook", c.body, c.sign(wrong, c.body)), []byte(c.body))
				if err == nil {
					t.Fatal("Verify(signed with another secret) = nil, want an error")
				}
				if strings.Contains(err.Error(), secret) {
					t.Fatalf("error %q contains the secret", err)
				}
			})
			for _, h := range c.required {
				t.Run("missing "+h, func(t *testing.T) {
					hdr := c.sign(secret, c.body)
					for k := range hdr {
						if strings.EqualFold(k, h) {
							delete(hdr, k)
						}
					}
					err := v.Verify(newReq("POST", "/hook", c.body, hdr), []byte(c.body))
					if err == nil || !strings.Contains(strings.ToLower(err.Error()), "missing header "+strings.ToLower(h)) {
						t.Fatalf("Verify without %s = %v, want an error naming it", h, err)
					}
				})
			}
		})
	}
}

// GitHub's own example in "Validating webhook deliveries".
func TestGitHubPublishedVector(t *testing.T) {
	v := mustNew(t, Config{Provider: "github", Secret: "It's a Secret to Everybody"})
	body := "Hello, World!"
	r := newReq("POST", "/", body, map[string]string{
		"X-Hub-Signature-256": "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
	})
	if err := v.Verify(r, []byte(body)); err != nil {
		t.Fatalf("Verify(GitHub's example) = %v, want nil", err)
	}
}

func TestGitHubLegacySHA1(t *testing.T) {
	const secret, body = "legacy", `{"zen":"Keep it logically awesome."}`
	v := mustNew(t, Config{Provider: "github", Secret: secret})
	sha1Sig := "sha1=" + hmacHex(sha1.New, secret, body)

	r := newReq("POST", "/", body, map[string]string{"X-Hub-Signature": sha1Sig})
	if err := v.Verify(r, []byte(body)); err != nil {
		t.Fatalf("Verify(only X-Hub-Signature) = %v, want nil", err)
	}
	// With X-Hub-Signature-256 present, a valid sha1 must not rescue a bad sha256.
	r = newReq("POST", "/", body, map[string]string{
		"X-Hub-Signature":     sha1Sig,
		"X-Hub-Signature-256": "sha256=" + hmacHex(sha256.New, "wrong", body),
	})
	if err := v.Verify(r, []byte(body)); !errors.Is(err, errBadSignature) {
		t.Fatalf("Verify(bad -256, good sha1) = %v, want bad signature", err)
	}
	// A sha1 value in the -256 header is malformed, not a fallback.
	r = newReq("POST", "/", body, map[string]string{"X-Hub-Signature-256": sha1Sig})
	if err := v.Verify(r, []byte(body)); err == nil {
		t.Fatal(`Verify(X-Hub-Signature-256: "sha1=...") = nil, want an error`)
	}
}

// Slack's worked example in "Verifying requests from Slack".
func TestSlackPublishedVector(t *testing.T) {
	const (
		secret = "8f742231b10e8888abcd99yyyzzz85a5"
		ts     = "1531420618"
		body   = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
		sig    = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
	)
	v := mustNew(t, Config{Provider: "slack", Secret: secret, Now: func() time.Time { return time.Unix(1531420618+60, 0) }})
	r := newReq("POST", "/slack/commands", body, map[string]string{"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": sig})
	if err := v.Verify(r, []byte(body)); err != nil {
		t.Fatalf("Verify(Slack's example) = %v, want nil", err)
	}
	// The same request an hour later is a replay.
	v = mustNew(t, Config{Provider: "slack", Secret: secret, Now: func() time.Time { return time.Unix(1531420618+3600, 0) }})
	if err := v.Verify(r, []byte(body)); err == nil || !strings.Contains(err.Error(), "outside tolerance by 3300 s") {
		t.Fatalf("Verify(Slack's example an hour later) = %v, want outside tolerance by 3300 s", err)
	}
}

func TestSlackTolerance(t *testing.T) {
	const secret, body = "slack-secret", `{"type":"event_callback"}`
	v := mustNew(t, Config{Provider: "slack", Secret: secret})
	for _, c := range []struct {
		offset time.Duration
		want   string // "" = valid
	}{
		{0, ""},
		{-5 * time.Minute, ""},
		{5 * time.Minute, ""},
		{-5*time.Minute - time.Second, "outside tolerance by 1 s (301 s old"},
		{5*time.Minute + 10*time.Second, "outside tolerance by 10 s (310 s in the future"},
	} {
		tsv := strconv.FormatInt(testNow.Add(c.offset).Unix(), 10)
		r := newReq("POST", "/", body, map[string]string{
			"X-Slack-Request-Timestamp": tsv,
			"X-Slack-Signature":         "v0=" + hmacHex(sha256.New, secret, "v0:"+tsv+":"+body),
		})
		err := v.Verify(r, []byte(body))
		if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("Verify(timestamp now%+v) = %v, want %q", c.offset, err, c.want)
		}
	}
	r := newReq("POST", "/", body, map[string]string{
		"X-Slack-Request-Timestamp": "yesterday",
		"X-Slack-Signature":         "v0=" + hmacHex(sha256.New, secret, "v0:yesterday:"+body),
	})
	if err := v.Verify(r, []byte(body)); err == nil {
		t.Error("Verify(non-numeric timestamp) = nil, want an error")
	}
}

func TestStripe(t *testing.T) {
	const secret, body = "whsec_test_secret", `{"id":"evt_1","type":"payment_intent.succeeded"}`
	v := mustNew(t, Config{Provider: "stripe", Secret: secret})
	sig := func(tsv, key string) string { return hmacHex(sha256.New, key, tsv+"."+body) }
	at := func(d time.Duration) string { return strconv.FormatInt(testNow.Add(d).Unix(), 10) }
	good := sig(ts, secret)

	for _, c := range []struct {
		name, header, want string // want "" = valid
	}{
		{"one v1", "t=" + ts + ",v1=" + good, ""},
		{"second v1 matches (secret rolling)", "t=" + ts + ",v1=" + sig(ts, "old") + ",v1=" + good, ""},
		{"with v0 and spaces", "t=" + ts + ", v1=" + good + ", v0=" + sig(ts, "whatever"), ""},
		{"only v0", "t=" + ts + ",v0=" + good, "no v1 signature"},
		{"no timestamp", "v1=" + good, "no timestamp"},
		{"two timestamps", "t=" + ts + ",t=" + ts + ",v1=" + good, "more than one timestamp"},
		{"timestamp changed", "t=" + at(time.Second) + ",v1=" + good, "bad signature"},
		{"wrong secret", "t=" + ts + ",v1=" + sig(ts, "whsec_other"), "bad signature"},
		{"300 s old", "t=" + at(-300*time.Second) + ",v1=" + sig(at(-300*time.Second), secret), ""},
		{"301 s old", "t=" + at(-301*time.Second) + ",v1=" + sig(at(-301*time.Second), secret), "outside tolerance by 1 s"},
		{"an hour in the future", "t=" + at(time.Hour) + ",v1=" + sig(at(time.Hour), secret), "outside tolerance by 3300 s"},
	} {
		r := newReq("POST", "/stripe", body, map[string]string{"Stripe-Signature": c.header})
		err := v.Verify(r, []byte(body))
		if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%s: Verify(Stripe-Signature: %s) = %v, want %q", c.name, c.header, err, c.want)
		}
	}
}

func TestGitLabWrongLength(t *testing.T) {
	v := mustNew(t, Config{Provider: "gitlab", Secret: "token"})
	for _, tok := range []string{"tok", "token-and-more", "TOKEN"} {
		r := newReq("POST", "/", "{}", map[string]string{"X-Gitlab-Token": tok})
		if err := v.Verify(r, []byte("{}")); err == nil {
			t.Errorf("Verify(X-Gitlab-Token: %s) = nil, want an error", tok)
		}
	}
}

func TestMalformedSignatures(t *testing.T) {
	for _, c := range []struct{ provider, header, value string }{
		{"github", "X-Hub-Signature-256", "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"},
		{"github", "X-Hub-Signature-256", "sha256=zz"},
		{"intercom", "X-Hub-Signature", "sha256=00"},
		{"shopify", "X-Shopify-Hmac-Sha256", "not base64!"},
		{"xero", "X-Xero-Signature", "%%%"},
	} {
		v := mustNew(t, Config{Provider: c.provider, Secret: "k"})
		r := newReq("POST", "/", "{}", map[string]string{c.header: c.value})
		if err := v.Verify(r, []byte("{}")); err == nil {
			t.Errorf("%s: Verify(%s: %s) = nil, want an error", c.provider, c.header, c.value)
		}
	}
}

func FuzzParseStripeHeader(f *testing.F) {
	f.Add("t=1492774577,v1=5257a869e7ecebeda32affa62cdca3fa51cad7e77a0e56ff536d0ce8e108d8bd,v0=6ffbb59b2300aae63f272406069a9788598b792a944a07aba816edb039989a39")
	f.Add("t=,v1=")
	f.Add(",,,=")
	f.Fuzz(func(t *testing.T, s string) {
		h, err := parseStripeHeader(s)
		if err == nil && (h.t == "" || len(h.v1) == 0) {
			t.Fatalf("parseStripeHeader(%q) = %+v, nil: accepted without t or v1", s, h)
		}
	})
}
