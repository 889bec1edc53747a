package webhook

import (
	"bytes"
	"context"
	"crypto"
	"crypto/hmac"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"time"
)

// snsFieldsFor lists, per message Type, the fields of the string to sign in their
// documented order. Subject is signed only when present.
var snsFieldsFor = map[string][]string{
	"Notification":             {"Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"},
	"SubscriptionConfirmation": {"Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"},
	"UnsubscribeConfirmation":  {"Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"},
}

// snsSigned holds every field name some Type signs, plus the fields that say how.
var snsSigned = map[string]bool{
	"Message": true, "MessageId": true, "Subject": true, "SubscribeURL": true, "Timestamp": true,
	"Token": true, "TopicArn": true, "Type": true, "SignatureVersion": true, "Signature": true,
	"SigningCertURL": true,
}

// snsMaxKeys bounds the top-level keys of a message (SNS sends about a dozen).
const snsMaxKeys = 64

// parseSNS reads the top-level string fields of an SNS message. Keys that repeat,
// also when they differ only in case, are refused: the relay and the upstream could
// otherwise read different values from the same body (Go's encoding/json, for one,
// matches keys case-insensitively).
func parseSNS(body []byte) (map[string]*string, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil, fmt.Errorf("body is not an SNS message (a JSON object)")
	}
	fields := make(map[string]*string)
	var keys []string
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("body is not valid JSON: %w", err)
		}
		k, ok := t.(string)
		if !ok {
			return nil, fmt.Errorf("body is not valid JSON")
		}
		for _, seen := range keys {
			if strings.EqualFold(seen, k) {
				return nil, fmt.Errorf("SNS message has key %q more than once", k)
			}
		}
		if keys = append(keys, k); len(keys) > snsMaxKeys {
			return nil, fmt.Errorf("SNS message has more than %d keys", snsMaxKeys)
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, fmt.Errorf("body is not valid JSON: %w", err)
		}
		var s *string
		if err := json.Unmarshal(raw, &s); err != nil {
			if snsSigned[k] {
				return nil, fmt.Errorf("SNS message field %s is not a string", k)
			}
			continue // MessageAttributes and the like are never signed
		}
		fields[k] = s
	}
	if _, err := dec.Token(); err != nil {
		return nil, fmt.Errorf("body is not valid JSON: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("body has data after the SNS message")
	}
	return fields, nil
}

// snsStringToSign builds "Name\nValue\n" for each signed field of the message's Type.
func snsStringToSign(typ string, f map[string]*string) ([]byte, error) {
	var b bytes.Buffer
	for _, name := range snsFieldsFor[typ] {
		val := f[name]
		if val == nil {
			if name == "Subject" {
				continue
			}
			return nil, fmt.Errorf("SNS %s has no %s field", typ, name)
		}
		b.WriteString(name + "\n" + *val + "\n")
	}
	return b.Bytes(), nil
}

// verifySNS checks an SNS HTTP/S message: type, topic, timestamp, then the RSA
// signature with the certificate at SigningCertURL.
func (v *Verifier) verifySNS(r *http.Request, body []byte) error {
	f, err := parseSNS(body)
	if err != nil {
		return err
	}
	get := func(name string) string {
		if p := f[name]; p != nil {
			return *p
		}
		return ""
	}
	typ := get("Type")
	if _, ok := snsFieldsFor[typ]; !ok {
		return fmt.Errorf("SNS message Type %q is not Notification, SubscriptionConfirmation or UnsubscribeConfirmation", typ)
	}
	var h crypto.Hash
	switch get("SignatureVersion") {
	case "1":
		h = crypto.SHA1
	case "2":
		h = crypto.SHA256
	default:
		return fmt.Errorf("SNS SignatureVersion %q is not 1 or 2", get("SignatureVersion"))
	}
	for _, name := range []string{"Signature", "SigningCertURL", "TopicArn", "Timestamp"} {
		if get(name) == "" {
			return fmt.Errorf("SNS message has no %s field", name)
		}
	}
	if !hmac.Equal([]byte(get("TopicArn")), v.secret) {
		return fmt.Errorf("SNS TopicArn is not the configured topic")
	}
	ts, err := time.Parse(time.RFC3339Nano, get("Timestamp"))
	if err != nil {
		return fmt.Errorf("SNS Timestamp %q is not an RFC 3339 time", get("Timestamp"))
	}
	if err := v.checkTime(ts, snsTolerance); err != nil {
		return err
	}
	sig, err := base64.StdEncoding.DecodeString(get("Signature"))
	if err != nil {
		return fmt.Errorf("SNS Signature is not base64")
	}
	msg, err := snsStringToSign(typ, f)
	if err != nil {
		return err
	}

	cert, err := v.fetchCert(r.Context(), get("SigningCertURL"))
	if err != nil {
		return fmt.Errorf("SNS signing certificate: %w", err)
	}
	pub, ok := cert.PublicKey.(*rsa.PublicKey)
	if !ok {
		return fmt.Errorf("SNS signing certificate has a %T key, want RSA", cert.PublicKey)
	}
	hh := h.New()
	hh.Write(msg)
	if err := rsa.VerifyPKCS1v15(pub, h, hh.Sum(nil), sig); err != nil {
		return fmt.Errorf("SNS Signature: %w", errBadSignature)
	}
	return nil
}

// snsCertHost is what the host of a SigningCertURL must be.
var snsCertHost = regexp.MustCompile(`^sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$`)

// checkSNSCertURL refuses anything but https on an Amazon SNS host (no port, no
// user info).
func checkSNSCertURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("SigningCertURL does not parse")
	}
	if u.Scheme != "https" {
		return fmt.Errorf("SigningCertURL scheme %q is not https", u.Scheme)
	}
	if u.User != nil || !snsCertHost.MatchString(u.Host) {
		return fmt.Errorf("SigningCertURL host %q is not an Amazon SNS host", u.Host)
	}
	return nil
}

const (
	certCacheSize = 16
	certMaxBytes  = 64 << 10
)

// certFetcher is the default Config.FetchCert: it fetches SNS signing certificates
// and remembers the last few by URL.
type certFetcher struct {
	client *http.Client

	mu    sync.Mutex
	cache map[string]*x509.Certificate
}

func newCertFetcher(c *http.Client) *certFetcher {
	c.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if len(via) >= 3 {
			return errors.New("too many redirects")
		}
		return checkSNSCertURL(req.URL.String())
	}
	return &certFetcher{client: c, cache: make(map[string]*x509.Certificate)}
}

func (f *certFetcher) fetch(ctx context.Context, rawURL string) (*x509.Certificate, error) {
	if err := checkSNSCertURL(rawURL); err != nil {
		return nil, err
	}
	f.mu.Lock()
	c := f.cache[rawURL]
	f.mu.Unlock()
	if c != nil {
		return c, nil
	}

	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return nil, err
	}
	resp, err := f.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", rawURL, resp.Status)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, certMaxBytes))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", rawURL, err)
	}
	b, _ := pem.Decode(data)
	if b == nil || b.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("GET %s: not a PEM certificate", rawURL)
	}
	c, err = x509.ParseCertificate(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", rawURL, err)
	}

	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.cache) >= certCacheSize {
		for k := range f.cache { // evict one; certificates are rotated rarely
			delete(f.cache, k)
			break
		}
	}
	f.cache[rawURL] = c
	return c, nil
}
