package webhook

import (
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"maps"
	"mime"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// verifyTwilio: X-Twilio-Signature = base64 HMAC-SHA1(auth token, URL + params), where
// URL is the full URL Twilio called and params, for form-encoded POSTs, are the POST
// parameters sorted by name (values of one name sorted too), each name followed by
// its value. JSON bodies are instead hashed into the URL's bodySHA256 parameter and
// the signature covers the URL alone, so both are checked.
func (v *Verifier) verifyTwilio(r *http.Request, body []byte) error {
	const header = "X-Twilio-Signature"
	sig := r.Header.Get(header)
	if sig == "" {
		return missing(header)
	}
	got, err := base64.StdEncoding.DecodeString(strings.TrimSpace(sig))
	if err != nil {
		return fmt.Errorf("%s is not base64", header)
	}

	var params string // what follows the URL in the signed string
	query, _ := url.ParseQuery(r.URL.RawQuery)
	switch {
	case query.Has("bodySHA256"):
		want, err := hex.DecodeString(query.Get("bodySHA256"))
		if err != nil {
			return fmt.Errorf("bodySHA256 query parameter is not hex")
		}
		sum := sha256.Sum256(body)
		if !hmac.Equal(sum[:], want) {
			return fmt.Errorf("body does not match the bodySHA256 query parameter")
		}
	case r.Method == http.MethodPost && isForm(r):
		form, err := url.ParseQuery(string(body))
		if err != nil {
			return fmt.Errorf("form body does not parse: %w", err)
		}
		var b strings.Builder
		for _, k := range slices.Sorted(maps.Keys(form)) {
			vals := slices.Clone(form[k])
			slices.Sort(vals)
			for _, val := range vals {
				b.WriteString(k)
				b.WriteString(val)
			}
		}
		params = b.String()
	case len(body) > 0:
		return fmt.Errorf("body is not covered by the signature: neither form-encoded nor hashed in a bodySHA256 query parameter")
	}

	for _, u := range twilioURLs(r) {
		if hmac.Equal(got, v.mac(sha1.New, []byte(u), []byte(params))) {
			return nil
		}
	}
	return badSignature(header)
}

func isForm(r *http.Request) bool {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return err == nil && mt == "application/x-www-form-urlencoded"
}

// twilioURLs rebuilds the URL the public client (Twilio) called, once without and once
// with the port, since Twilio signs either.
func twilioURLs(r *http.Request) []string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	} else if p, _, _ := strings.Cut(r.Header.Get("X-Forwarded-Proto"), ","); strings.EqualFold(strings.TrimSpace(p), "https") {
		scheme = "https"
	}
	host := r.Host
	if host == "" {
		host = r.URL.Host
	}
	uri := r.RequestURI
	if !strings.HasPrefix(uri, "/") { // empty (client-side request) or absolute-form
		uri = r.URL.RequestURI()
	}

	var withPort, withoutPort string
	if h, _, err := net.SplitHostPort(host); err == nil {
		withPort = host
		withoutPort = h
		if strings.Contains(h, ":") {
			withoutPort = "[" + h + "]"
		}
	} else {
		withoutPort = host
		port := "80"
		if scheme == "https" {
			port = "443"
		}
		withPort = host + ":" + port
	}
	return []string{scheme + "://" + withoutPort + uri, scheme + "://" + withPort + uri}
}
