package webhook

import (
	"crypto/sha1"
	"net/url"
	"strings"
	"testing"
)

const twForm = "application/x-www-form-urlencoded"

// The example in Twilio's "Webhooks security" docs: auth token 12345, the URL Twilio
// called and the POST parameters of a call, signed 0/KCTR6DLpKmkAf8muzZqo1nDgQ=.
func TestTwilioPublishedVector(t *testing.T) {
	v := mustNew(t, Config{Provider: "twilio", Secret: "12345"})
	form := url.Values{
		"CallSid": {"CA1234567890ABCDE"},
		"Caller":  {"+12349013030"},
		"Digits":  {"1234"},
		"From":    {"+12349013030"},
		"To":      {"+18005551212"},
	}.Encode()
	hdr := map[string]string{"Content-Type": twForm, "X-Twilio-Signature": "0/KCTR6DLpKmkAf8muzZqo1nDgQ="}
	r := newReq("POST", "https://mycompany.com/myapp.php?foo=1&bar=2", form, hdr)
	if err := v.Verify(r, []byte(form)); err != nil {
		t.Fatalf("Verify(Twilio's example) = %v, want nil", err)
	}

	tampered := strings.Replace(form, "Digits=1234", "Digits=9999", 1)
	if err := v.Verify(newReq("POST", "https://mycompany.com/myapp.php?foo=1&bar=2", tampered, hdr), []byte(tampered)); err == nil {
		t.Fatal("Verify(tampered parameter) = nil, want an error")
	}
	if err := v.Verify(newReq("POST", "https://mycompany.com/myapp.php?foo=1&bar=3", form, hdr), []byte(form)); err == nil {
		t.Fatal("Verify(tampered query) = nil, want an error")
	}
	// Same request over plain http: the URL differs, so must the signature.
	if err := v.Verify(newReq("POST", "http://mycompany.com/myapp.php?foo=1&bar=2", form, hdr), []byte(form)); err == nil {
		t.Fatal("Verify(http instead of https) = nil, want an error")
	}
	// ... unless a TLS-terminating proxy in front says the client used https.
	r = newReq("POST", "http://mycompany.com/myapp.php?foo=1&bar=2", form, hdr)
	r.Header.Set("X-Forwarded-Proto", "https")
	if err := v.Verify(r, []byte(form)); err != nil {
		t.Fatalf("Verify(X-Forwarded-Proto: https) = %v, want nil", err)
	}
}

// twSign signs as Twilio documents: the URL, then each POST parameter sorted by name
// with name and value appended, HMAC-SHA1 with the auth token, base64.
func twSign(token, u string, params url.Values) string {
	s := u
	var names []string
	for k := range params {
		names = append(names, k)
	}
	// A plain insertion sort keeps the test independent of the package's sorting.
	for i := 1; i < len(names); i++ {
		for j := i; j > 0 && names[j] < names[j-1]; j-- {
			names[j], names[j-1] = names[j-1], names[j]
		}
	}
	for _, k := range names {
		vals := append([]string(nil), params[k]...)
		for i := 1; i < len(vals); i++ {
			for j := i; j > 0 && vals[j] < vals[j-1]; j-- {
				vals[j], vals[j-1] = vals[j-1], vals[j]
			}
		}
		for _, val := range vals {
			s += k + val
		}
	}
	return hmacB64(sha1.New, token, s)
}

func TestTwilioForm(t *testing.T) {
	const token = "twilio-auth-token"
	v := mustNew(t, Config{Provider: "twilio", Secret: token})
	params := url.Values{"Body": {"hello world & more"}, "From": {"+15005550006"}, "MediaUrl": {"b", "a"}}
	body := params.Encode()
	target := "https://hooks.example.com/sms?tenant=7"
	sig := twSign(token, target, params)

	check := func(name, method, target, body string, hdr map[string]string, wantOK bool) {
		t.Helper()
		err := v.Verify(newReq(method, target, body, hdr), []byte(body))
		if wantOK != (err == nil) {
			t.Errorf("%s: Verify = %v, want ok=%v", name, err, wantOK)
		}
	}
	hdr := map[string]string{"Content-Type": twForm + "; charset=utf-8", "X-Twilio-Signature": sig}
	check("valid", "POST", target, body, hdr, true)
	check("wrong token", "POST", target, body,
		map[string]string{"Content-Type": twForm, "X-Twilio-Signature": twSign("other", target, params)}, false)
	check("missing header", "POST", target, body, map[string]string{"Content-Type": twForm}, false)
	check("extra parameter", "POST", target, body+"&Extra=1", hdr, false)

	err := v.Verify(newReq("POST", target, body, map[string]string{"Content-Type": twForm}), []byte(body))
	if err == nil || !strings.Contains(err.Error(), "missing header X-Twilio-Signature") {
		t.Errorf("Verify without X-Twilio-Signature = %v, want an error naming it", err)
	}

	// Twilio signs with or without the port; either form must be accepted.
	check("signed with :443, sent without", "POST", target, body,
		map[string]string{"Content-Type": twForm, "X-Twilio-Signature": twSign(token, "https://hooks.example.com:443/sms?tenant=7", params)}, true)
	check("signed without port, sent with :8443", "POST", "https://hooks.example.com:8443/sms?tenant=7", body,
		map[string]string{"Content-Type": twForm, "X-Twilio-Signature": sig}, true)
	check("signed with :8443, sent with :8443", "POST", "https://hooks.example.com:8443/sms?tenant=7", body,
		map[string]string{"Content-Type": twForm, "X-Twilio-Signature": twSign(token, "https://hooks.example.com:8443/sms?tenant=7", params)}, true)
	check("signed with another port", "POST", "https://hooks.example.com:8443/sms?tenant=7", body,
		map[string]string{"Content-Type": twForm, "X-Twilio-Signature": twSign(token, "https://hooks.example.com:9443/sms?tenant=7", params)}, false)

	// A GET carries its parameters in the URL; the signature covers the URL alone.
	get := "https://hooks.example.com/voice?CallSid=CA1&From=%2B15005550006"
	check("GET", "GET", get, "", map[string]string{"X-Twilio-Signature": hmacB64(sha1.New, token, get)}, true)
}

// Twilio's JSON example (api-snippets security/signature_validation_json): the body's
// SHA-256 in the URL is 5ccde7145dfb...aec9. The sample's signature uses a token that is
// not published, so the signature here is computed with the documented algorithm.
func TestTwilioJSONBodySHA256(t *testing.T) {
	const token = "12345"
	body := `{"CallSid":"CA1234567890ABCDE","Caller":"+12349013030"}`
	target := "https://example.com/myapp?bodySHA256=5ccde7145dfb8f56479710896586cb9d5911809d83afbe34627818790db0aec9"
	v := mustNew(t, Config{Provider: "twilio", Secret: token})
	hdr := map[string]string{"Content-Type": "application/json", "X-Twilio-Signature": hmacB64(sha1.New, token, target)}

	if err := v.Verify(newReq("POST", target, body, hdr), []byte(body)); err != nil {
		t.Fatalf("Verify(JSON with bodySHA256) = %v, want nil", err)
	}
	tampered := strings.Replace(body, "ABCDE", "ABCDF", 1)
	if err := v.Verify(newReq("POST", target, tampered, hdr), []byte(tampered)); err == nil || !strings.Contains(err.Error(), "bodySHA256") {
		t.Fatalf("Verify(tampered JSON body) = %v, want a bodySHA256 mismatch", err)
	}
	hdr["X-Twilio-Signature"] = hmacB64(sha1.New, "54321", target)
	if err := v.Verify(newReq("POST", target, body, hdr), []byte(body)); err == nil {
		t.Fatal("Verify(JSON, wrong token) = nil, want an error")
	}
	// Without bodySHA256 nothing covers a JSON body: refuse rather than pass it on.
	plain := "https://example.com/myapp"
	hdr["X-Twilio-Signature"] = hmacB64(sha1.New, token, plain)
	if err := v.Verify(newReq("POST", plain, body, hdr), []byte(body)); err == nil || !strings.Contains(err.Error(), "not covered") {
		t.Fatalf("Verify(JSON without bodySHA256) = %v, want 'not covered'", err)
	}
}
