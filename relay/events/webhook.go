package events

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// SignatureHeader carries a webhook request's signature; see the package doc.
const SignatureHeader = "Ferry-Signature"

// Sign returns the Ferry-Signature header value for body sent at t:
// "t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<unix seconds>." + body)>".
func Sign(secret []byte, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac(secret, ts, body))
}

func mac(secret []byte, ts string, body []byte) []byte {
	h := hmac.New(sha256.New, secret)
	h.Write([]byte(ts))
	h.Write([]byte{'.'})
	h.Write(body)
	return h.Sum(nil)
}

// Errors from VerifySignature.
var (
	ErrSignatureMissing  = errors.New("no Ferry-Signature t and v1")
	ErrSignatureMismatch = errors.New("signature does not match the body")
	ErrSignatureExpired  = errors.New("signature timestamp outside the tolerance")
)

// VerifySignature checks a Ferry-Signature header (header) against the raw request body,
// as the package doc describes: the HMAC must match and t must be within tolerance of
// now (tolerance 0: 5 minutes). Any of several v1 values may match, so a sender can sign
// with an old and a new secret while one is rotated.
func VerifySignature(secret []byte, header string, body []byte, now time.Time, tolerance time.Duration) error {
	if tolerance <= 0 {
		tolerance = 5 * time.Minute
	}
	var ts string
	var sigs [][]byte
	for part := range strings.SplitSeq(header, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			continue
		}
		switch k {
		case "t":
			ts = v
		case "v1":
			if s, err := hex.DecodeString(v); err == nil {
				sigs = append(sigs, s)
			}
		}
	}
	if ts == "" || len(sigs) == 0 {
		return ErrSignatureMissing
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: t=%q", ErrSignatureMissing, ts)
	}
	want := mac(secret, ts, body)
	match := false
	for _, s := range sigs {
		if hmac.Equal(s, want) {
			match = true
		}
	}
	if !match {
		return ErrSignatureMismatch
	}
	if d := now.Sub(time.Unix(sec, 0)); d > tolerance || d < -tolerance {
		return fmt.Errorf("%w: t is %v from now", ErrSignatureExpired, d.Round(time.Second))
	}
	return nil
}

// webhook POSTs batches as JSON arrays.
type webhook struct {
	url     string
	secret  []byte
	client  *http.Client
	timeout time.Duration
	now     func() time.Time
	allow   func(*url.URL) error
}

func (h *webhook) close() {}

func (h *webhook) deliver(ctx context.Context, records [][]byte) error {
	u, err := url.Parse(h.url)
	if err != nil {
		return &permanentError{err}
	}
	if err := h.allow(u); err != nil {
		return &permanentError{fmt.Errorf("destination refused: %w", err)}
	}
	size := 2
	for _, r := range records {
		size += len(r) + 1
	}
	body := make([]byte, 0, size)
	body = append(body, '[')
	for i, r := range records {
		if i > 0 {
			body = append(body, ',')
		}
		body = append(body, r...)
	}
	body = append(body, ']')

	ctx, cancel := context.WithTimeout(ctx, h.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.url, bytes.NewReader(body))
	if err != nil {
		return &permanentError{err}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "ferry-relay")
	req.Header.Set(SignatureHeader, Sign(h.secret, h.now(), body))
	resp, err := h.client.Do(req)
	if err != nil {
		return fmt.Errorf("post: %w", err)
	}
	// Read a little of the answer so the connection can be reused.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	switch code := resp.StatusCode; {
	case code >= 200 && code < 300:
		return nil
	case code == http.StatusTooManyRequests || code >= 500:
		err := fmt.Errorf("post: %s", resp.Status)
		if s, perr := strconv.Atoi(resp.Header.Get("Retry-After")); perr == nil && s > 0 {
			return &retryAfterError{err, time.Duration(s) * time.Second}
		}
		return err
	default:
		return &permanentError{fmt.Errorf("post: %s", resp.Status)}
	}
}

// ErrAddressRefused is returned, wrapped, by RefusePrivateAddresses; a delivery that
// meets it is not retried.
var ErrAddressRefused = errors.New("not a public address")

// nonPublic are ranges that IsGlobalUnicast and IsPrivate let through but that no
// webhook on the internet lives in.
var nonPublic = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"), // carrier-grade NAT
	netip.MustParsePrefix("192.0.0.0/24"),  // IETF protocol assignments
	netip.MustParsePrefix("198.18.0.0/15"), // benchmarking
	netip.MustParsePrefix("240.0.0.0/4"),   // reserved
}

// RefusePrivateAddresses is a net.Dialer Control func for the webhook client of a relay
// whose subscriptions tenants create: it refuses loopback, private, link-local (cloud
// metadata at 169.254.169.254), carrier-grade NAT, reserved, unspecified and multicast
// addresses. It runs on the address actually dialled, after DNS, so a name that resolves
// (or is rebound) to an internal address is refused too:
//
//	dialer := &net.Dialer{Timeout: 10 * time.Second, Control: events.RefusePrivateAddresses}
//	tr := http.DefaultTransport.(*http.Transport).Clone()
//	tr.Proxy = nil // else the check applies to the proxy, not the webhook
//	tr.DialContext = dialer.DialContext
//	bus := events.NewBus(events.Config{HTTPClient: &http.Client{Transport: tr}})
func RefusePrivateAddresses(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("dial %s: %w", address, ErrAddressRefused)
	}
	a := ap.Addr().Unmap()
	if !a.IsGlobalUnicast() || a.IsPrivate() {
		return fmt.Errorf("dial %s: %w", address, ErrAddressRefused)
	}
	for _, p := range nonPublic {
		if p.Contains(a) {
			return fmt.Errorf("dial %s: %w", address, ErrAddressRefused)
		}
	}
	return nil
}
