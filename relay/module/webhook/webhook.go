package webhook

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"
)

// DefaultMaxBody is the largest body the middleware reads when Config.MaxBody is 0.
const DefaultMaxBody = 10 << 20

// Config selects a provider and what to verify its requests with.
type Config struct {
	// Provider is one of Providers(): github, gitlab, intercom, sendgrid, shopify,
	// slack, sns, stripe, twilio, xero. Case does not matter.
	Provider string
	// Secret is the provider's HMAC secret or token; for sendgrid the verification
	// key (base64 DER/PKIX ECDSA public key, PEM also accepted), for sns the expected
	// TopicArn. Required.
	Secret string
	// Now is the clock for timestamp tolerances; nil means time.Now.
	Now func() time.Time
	// MaxBody is the largest body the middleware reads; larger bodies get 413.
	// 0 means DefaultMaxBody (10 MiB).
	MaxBody int64
	// FetchCert fetches the certificate at an SNS SigningCertURL (sns only). nil means
	// an https-only fetcher restricted to Amazon SNS hosts, with a 10 s timeout and
	// a small cache by URL.
	FetchCert func(ctx context.Context, url string) (*x509.Certificate, error)
}

// Verifier checks requests against one provider's signature scheme. It is safe for
// concurrent use.
type Verifier struct {
	provider  string
	secret    []byte
	now       func() time.Time
	maxBody   int64
	check     func(v *Verifier, r *http.Request, body []byte) error
	sgKey     *ecdsa.PublicKey // sendgrid
	fetchCert func(ctx context.Context, url string) (*x509.Certificate, error)
}

// providers maps each provider name to its check.
var providers = map[string]func(v *Verifier, r *http.Request, body []byte) error{
	"github":   (*Verifier).verifyGitHub,
	"gitlab":   (*Verifier).verifyGitLab,
	"intercom": (*Verifier).verifyIntercom,
	"sendgrid": (*Verifier).verifySendGrid,
	"shopify":  (*Verifier).verifyShopify,
	"slack":    (*Verifier).verifySlack,
	"sns":      (*Verifier).verifySNS,
	"stripe":   (*Verifier).verifyStripe,
	"twilio":   (*Verifier).verifyTwilio,
	"xero":     (*Verifier).verifyXero,
}

// Providers lists the provider names New accepts, sorted.
func Providers() []string {
	names := make([]string, 0, len(providers))
	for n := range providers {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// New returns a verifier for cfg.Provider. It fails on an unknown provider, an empty
// secret, or a secret that cannot be what the provider needs (a sendgrid key that
// does not parse, an sns topic that is not an ARN).
func New(cfg Config) (*Verifier, error) {
	name := strings.ToLower(strings.TrimSpace(cfg.Provider))
	check, ok := providers[name]
	if !ok {
		return nil, fmt.Errorf("unknown webhook provider %q: known providers are %s", cfg.Provider, strings.Join(Providers(), ", "))
	}
	if cfg.Secret == "" {
		return nil, fmt.Errorf("webhook provider %s: the secret is empty: set it to %s", name, secretHint(name))
	}
	if cfg.MaxBody < 0 {
		return nil, fmt.Errorf("webhook max body %d is negative: use 0 for the default of %d bytes", cfg.MaxBody, DefaultMaxBody)
	}
	v := &Verifier{
		provider:  name,
		secret:    []byte(cfg.Secret),
		now:       cfg.Now,
		maxBody:   cfg.MaxBody,
		check:     check,
		fetchCert: cfg.FetchCert,
	}
	if v.now == nil {
		v.now = time.Now
	}
	if v.maxBody == 0 {
		v.maxBody = DefaultMaxBody
	}
	switch name {
	case "sendgrid":
		k, err := parseSendGridKey(cfg.Secret)
		if err != nil {
			return nil, fmt.Errorf("webhook provider sendgrid: %w", err)
		}
		v.sgKey = k
	case "sns":
		if !strings.HasPrefix(cfg.Secret, "arn:") || !strings.Contains(cfg.Secret, ":sns:") {
			return nil, fmt.Errorf("webhook provider sns: the secret must be the expected TopicArn, like arn:aws:sns:us-east-1:123456789012:my-topic")
		}
		if v.fetchCert == nil {
			v.fetchCert = newCertFetcher(&http.Client{Timeout: 10 * time.Second}).fetch
		}
	}
	return v, nil
}

func secretHint(provider string) string {
	switch provider {
	case "sendgrid":
		return "the verification key from SendGrid's Event Webhook settings"
	case "sns":
		return "the TopicArn the endpoint is subscribed to"
	case "gitlab":
		return "the webhook's secret token"
	case "twilio":
		return "the account's auth token"
	case "xero":
		return "the webhook key"
	default:
		return "the webhook signing secret"
	}
}

// Provider reports the provider this verifier checks.
func (v *Verifier) Provider() string { return v.provider }

// Verify checks r, whose body has been read into body, against the provider's
// signature scheme. It returns nil when the request is authentic and otherwise an
// error saying why (missing header, bad signature, timestamp outside tolerance, ...).
// Errors never contain the secret.
func (v *Verifier) Verify(r *http.Request, body []byte) error {
	return v.check(v, r, body)
}

// failStatus is the status for a request that fails verification: 403, except for
// Xero, whose intent-to-receive check requires 401.
func (v *Verifier) failStatus() int {
	if v.provider == "xero" {
		return http.StatusUnauthorized
	}
	return http.StatusForbidden
}

// Middleware reads the request body (up to the configured limit, 413 beyond it),
// verifies the request, and answers a failure itself with a short plain-text reason
// and the header "Ferry-Error: 403 Webhook verification failed". On success next sees
// the request with its body restored.
func (v *Verifier) Middleware(next http.Handler) http.Handler { return v.Guard(next, nil) }

// Guard is Middleware that also calls refused, when not nil, for each request it answers
// itself instead of passing it on (the relay counts these).
func (v *Verifier) Guard(next http.Handler, refused func()) http.Handler {
	if refused == nil {
		refused = func() {}
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > v.maxBody {
			refused()
			v.tooLarge(w)
			return
		}
		var body []byte
		if r.Body != nil {
			var err error
			body, err = io.ReadAll(http.MaxBytesReader(w, r.Body, v.maxBody))
			if err != nil {
				var tooBig *http.MaxBytesError
				refused()
				if errors.As(err, &tooBig) {
					v.tooLarge(w)
					return
				}
				plainError(w, http.StatusBadRequest, "Bad request", "reading request body: "+err.Error())
				return
			}
		}
		if err := v.Verify(r, body); err != nil {
			refused()
			plainError(w, v.failStatus(), "Webhook verification failed", "webhook verification failed: "+err.Error())
			return
		}
		r = r.WithContext(r.Context()) // a shallow copy: the caller's request stays as it was
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
		r.ContentLength = int64(len(body))
		r.TransferEncoding = nil
		next.ServeHTTP(w, r)
	})
}

func (v *Verifier) tooLarge(w http.ResponseWriter) {
	plainError(w, http.StatusRequestEntityTooLarge, "Request body too large",
		fmt.Sprintf("request body larger than the %d-byte limit of webhook verification", v.maxBody))
}

// plainError answers with a short text body and the Ferry-Error header that marks
// responses the relay wrote itself.
func plainError(w http.ResponseWriter, code int, title, msg string) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	h.Set("Ferry-Error", fmt.Sprintf("%d %s", code, title))
	w.WriteHeader(code)
	_, _ = io.WriteString(w, msg+"\n")
}

// missing is the error for an absent header or field.
func missing(name string) error {
	return fmt.Errorf("missing header %s", name)
}

// errBadSignature is returned when a signature is well formed but does not match.
var errBadSignature = errors.New("bad signature")

// badSignature names the header whose signature did not match.
func badSignature(header string) error {
	return fmt.Errorf("%s: %w", header, errBadSignature)
}

// checkTime refuses ts when it is more than tolerance away from now, in either
// direction, saying by how much.
func (v *Verifier) checkTime(ts time.Time, tolerance time.Duration) error {
	d := v.now().Sub(ts)
	dir := "old"
	if d < 0 {
		d, dir = -d, "in the future"
	}
	if d <= tolerance {
		return nil
	}
	over := (d - tolerance + time.Second - 1) / time.Second
	return fmt.Errorf("timestamp outside tolerance by %d s (%d s %s, tolerance %d s)",
		over, d/time.Second, dir, tolerance/time.Second)
}
