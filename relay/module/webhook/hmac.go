package webhook

import (
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"hash"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Tolerances for the providers that sign a timestamp.
const (
	slackTolerance  = 5 * time.Minute
	stripeTolerance = 300 * time.Second
	snsTolerance    = time.Hour
)

// mac is HMAC(secret, parts...) with the given hash.
func (v *Verifier) mac(h func() hash.Hash, parts ...[]byte) []byte {
	m := hmac.New(h, v.secret)
	for _, p := range parts {
		m.Write(p)
	}
	return m.Sum(nil)
}

// checkPrefixedHex checks a header of the form prefix + hex(want).
func checkPrefixedHex(header, value, prefix string, want []byte) error {
	hexSig, ok := strings.CutPrefix(value, prefix)
	if !ok {
		return fmt.Errorf("%s does not start with %q", header, prefix)
	}
	got, err := hex.DecodeString(hexSig)
	if err != nil {
		return fmt.Errorf("%s is not hex after %q", header, prefix)
	}
	if !hmac.Equal(got, want) {
		return badSignature(header)
	}
	return nil
}

// checkBase64 checks a header holding base64(want).
func checkBase64(header, value string, want []byte) error {
	got, err := base64.StdEncoding.DecodeString(strings.TrimSpace(value))
	if err != nil {
		return fmt.Errorf("%s is not base64", header)
	}
	if !hmac.Equal(got, want) {
		return badSignature(header)
	}
	return nil
}

// verifyGitHub: X-Hub-Signature-256 = "sha256=" + hex HMAC-SHA256(secret, body); the
// legacy X-Hub-Signature ("sha1=" + hex HMAC-SHA1) only when the former is absent.
func (v *Verifier) verifyGitHub(r *http.Request, body []byte) error {
	if sig := r.Header.Get("X-Hub-Signature-256"); sig != "" {
		return checkPrefixedHex("X-Hub-Signature-256", sig, "sha256=", v.mac(sha256.New, body))
	}
	if sig := r.Header.Get("X-Hub-Signature"); sig != "" {
		return checkPrefixedHex("X-Hub-Signature", sig, "sha1=", v.mac(sha1.New, body))
	}
	return missing("X-Hub-Signature-256")
}

// verifyGitLab: X-Gitlab-Token is the secret token itself. Both sides are hashed
// first so the comparison takes the same time whatever their lengths.
func (v *Verifier) verifyGitLab(r *http.Request, _ []byte) error {
	tok := r.Header.Get("X-Gitlab-Token")
	if tok == "" {
		return missing("X-Gitlab-Token")
	}
	got, want := sha256.Sum256([]byte(tok)), sha256.Sum256(v.secret)
	if !hmac.Equal(got[:], want[:]) {
		return fmt.Errorf("X-Gitlab-Token does not match the secret token")
	}
	return nil
}

// verifyIntercom: X-Hub-Signature = "sha1=" + hex HMAC-SHA1(client secret, body).
func (v *Verifier) verifyIntercom(r *http.Request, body []byte) error {
	sig := r.Header.Get("X-Hub-Signature")
	if sig == "" {
		return missing("X-Hub-Signature")
	}
	return checkPrefixedHex("X-Hub-Signature", sig, "sha1=", v.mac(sha1.New, body))
}

// verifyShopify: X-Shopify-Hmac-Sha256 = base64 HMAC-SHA256(secret, body).
func (v *Verifier) verifyShopify(r *http.Request, body []byte) error {
	sig := r.Header.Get("X-Shopify-Hmac-Sha256")
	if sig == "" {
		return missing("X-Shopify-Hmac-Sha256")
	}
	return checkBase64("X-Shopify-Hmac-Sha256", sig, v.mac(sha256.New, body))
}

// verifyXero: x-xero-signature = base64 HMAC-SHA256(webhook key, body).
func (v *Verifier) verifyXero(r *http.Request, body []byte) error {
	sig := r.Header.Get("X-Xero-Signature")
	if sig == "" {
		return missing("x-xero-signature")
	}
	return checkBase64("x-xero-signature", sig, v.mac(sha256.New, body))
}

// verifySlack: X-Slack-Signature = "v0=" + hex HMAC-SHA256(signing secret,
// "v0:" + X-Slack-Request-Timestamp + ":" + body), timestamp within 5 minutes.
func (v *Verifier) verifySlack(r *http.Request, body []byte) error {
	sig := r.Header.Get("X-Slack-Signature")
	if sig == "" {
		return missing("X-Slack-Signature")
	}
	ts := r.Header.Get("X-Slack-Request-Timestamp")
	if ts == "" {
		return missing("X-Slack-Request-Timestamp")
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return fmt.Errorf("X-Slack-Request-Timestamp %q is not a Unix time", ts)
	}
	want := v.mac(sha256.New, []byte("v0:"+ts+":"), body)
	if err := checkPrefixedHex("X-Slack-Signature", sig, "v0=", want); err != nil {
		return err
	}
	return v.checkTime(time.Unix(sec, 0), slackTolerance)
}

// stripeHeader is a parsed Stripe-Signature header.
type stripeHeader struct {
	t   string   // the timestamp as sent, which is what is signed
	sec int64    // the timestamp
	v1  [][]byte // decoded v1 signatures; v0 and unknown schemes are ignored
}

// parseStripeHeader parses "t=1492774577,v1=5257a8...,v1=...,v0=...".
func parseStripeHeader(s string) (stripeHeader, error) {
	var h stripeHeader
	for item := range strings.SplitSeq(s, ",") {
		k, val, ok := strings.Cut(strings.TrimSpace(item), "=")
		if !ok {
			continue
		}
		switch k {
		case "t":
			if h.t != "" {
				return h, fmt.Errorf("Stripe-Signature has more than one timestamp")
			}
			sec, err := strconv.ParseInt(val, 10, 64)
			if err != nil {
				return h, fmt.Errorf("Stripe-Signature timestamp %q is not a Unix time", val)
			}
			h.t, h.sec = val, sec
		case "v1":
			sig, err := hex.DecodeString(val)
			if err != nil {
				continue // a malformed entry cannot match; another v1 may
			}
			h.v1 = append(h.v1, sig)
		}
	}
	if h.t == "" {
		return h, fmt.Errorf("Stripe-Signature has no timestamp (t=)")
	}
	if len(h.v1) == 0 {
		return h, fmt.Errorf("Stripe-Signature has no v1 signature")
	}
	return h, nil
}

// verifyStripe: Stripe-Signature "t=T,v1=S[,v1=S2...]" where S = hex
// HMAC-SHA256(secret, T + "." + body); any v1 may match; T within 300 s.
func (v *Verifier) verifyStripe(r *http.Request, body []byte) error {
	raw := r.Header.Get("Stripe-Signature")
	if raw == "" {
		return missing("Stripe-Signature")
	}
	h, err := parseStripeHeader(raw)
	if err != nil {
		return err
	}
	want := v.mac(sha256.New, []byte(h.t+"."), body)
	ok := false
	for _, sig := range h.v1 {
		if hmac.Equal(sig, want) {
			ok = true
		}
	}
	if !ok {
		return badSignature("Stripe-Signature")
	}
	return v.checkTime(time.Unix(h.sec, 0), stripeTolerance)
}
