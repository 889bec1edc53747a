package webhook

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

const (
	snsTopic   = "arn:aws:sns:us-west-2:123456789012:MyTopic"
	snsCertURL = "https://sns.us-west-2.amazonaws.com/SimpleNotificationService-f3ecfb7224c7233fe7bb5f59f96de52f.pem"
)

// snsSigner is an RSA key with a self-signed certificate standing in for SNS's.
type snsSigner struct {
	key  *rsa.PrivateKey
	cert *x509.Certificate
}

func newSNSSigner(t *testing.T) *snsSigner {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "sns.amazonaws.com"},
		NotBefore:    testNow.Add(-24 * time.Hour),
		NotAfter:     testNow.Add(365 * 24 * time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &snsSigner{key: key, cert: cert}
}

// sign adds Signature to msg the way SNS documents: "Name\nValue\n" for the fields
// of its Type in this fixed order (Subject only if present), then SHA1withRSA
// (SignatureVersion 1) or SHA256withRSA (2), base64.
func (s *snsSigner) sign(t *testing.T, msg map[string]any) []byte {
	t.Helper()
	var order []string
	if msg["Type"] == "Notification" {
		order = []string{"Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"}
	} else {
		order = []string{"Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"}
	}
	var str string
	for _, k := range order {
		val, ok := msg[k].(string)
		if !ok {
			continue
		}
		str += k + "\n" + val + "\n"
	}
	var sum []byte
	h := crypto.SHA1
	if msg["SignatureVersion"] == "2" {
		s := sha256.Sum256([]byte(str))
		sum, h = s[:], crypto.SHA256
	} else {
		s := sha1.Sum([]byte(str))
		sum = s[:]
	}
	sig, err := rsa.SignPKCS1v15(rand.Reader, s.key, h, sum)
	if err != nil {
		t.Fatal(err)
	}
	msg["Signature"] = base64.StdEncoding.EncodeToString(sig)
	b, err := json.Marshal(msg)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// notification is shaped like the example in the SNS developer guide.
func notification(version string, at time.Time) map[string]any {
	return map[string]any{
		"Type":             "Notification",
		"MessageId":        "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
		"TopicArn":         snsTopic,
		"Subject":          "My First Message",
		"Message":          "Hello world!\nSecond line with \"quotes\" & <tags>",
		"Timestamp":        at.UTC().Format("2006-01-02T15:04:05.000Z"),
		"SignatureVersion": version,
		"SigningCertURL":   snsCertURL,
		"UnsubscribeURL":   "https://sns.us-west-2.amazonaws.com/?Action=Unsubscribe&SubscriptionArn=" + snsTopic + ":c9135db0",
		"MessageAttributes": map[string]any{
			"k": map[string]string{"Type": "String", "Value": "v"},
		},
	}
}

func confirmation(typ, version string, at time.Time) map[string]any {
	return map[string]any{
		"Type":             typ,
		"MessageId":        "165545c9-2a5c-472c-8df2-7ff2be2b3b1b",
		"Token":            "2336412f37fb687f5d51e6e241d09c805a5a57b30d712f794cc5f6a988666d92768dd60a747ba6f3beb71854e285d6ad02428b09ceece29417f1f02d609c582afbacc99c583a916b9981dd2728f4ae6fdb82efd087cc3b7849e05798d2d2785c03b0879594eeac82c01f235d0e717736",
		"TopicArn":         snsTopic,
		"Message":          "You have chosen to subscribe to the topic " + snsTopic + ".\nTo confirm the subscription, visit the SubscribeURL included in this message.",
		"SubscribeURL":     "https://sns.us-west-2.amazonaws.com/?Action=ConfirmSubscription&TopicArn=" + snsTopic + "&Token=2336412f37",
		"Timestamp":        at.UTC().Format("2006-01-02T15:04:05.000Z"),
		"SignatureVersion": version,
		"SigningCertURL":   snsCertURL,
	}
}

func (s *snsSigner) verifier(t *testing.T, fetches *atomic.Int32) *Verifier {
	return mustNew(t, Config{Provider: "sns", Secret: snsTopic, FetchCert: func(_ context.Context, u string) (*x509.Certificate, error) {
		if fetches != nil {
			fetches.Add(1)
		}
		if u != snsCertURL {
			return nil, fmt.Errorf("unexpected certificate URL %s", u)
		}
		return s.cert, nil
	}})
}

func snsVerify(v *Verifier, body []byte) error {
	r := newReq("POST", "/sns", string(body), map[string]string{"Content-Type": "text/plain; charset=UTF-8"})
	return v.Verify(r, body)
}

func TestSNSValid(t *testing.T) {
	s := newSNSSigner(t)
	var fetches atomic.Int32
	v := s.verifier(t, &fetches)
	noSubject := notification("2", testNow)
	delete(noSubject, "Subject")
	nullSubject := notification("1", testNow)
	nullSubject["Subject"] = nil
	for name, msg := range map[string]map[string]any{
		"notification v1":           notification("1", testNow.Add(-time.Minute)),
		"notification v2":           notification("2", testNow),
		"notification no subject":   noSubject,
		"notification null Subject": nullSubject,
		"subscription v1":           confirmation("SubscriptionConfirmation", "1", testNow),
		"subscription v2":           confirmation("SubscriptionConfirmation", "2", testNow),
		"unsubscribe v2":            confirmation("UnsubscribeConfirmation", "2", testNow),
	} {
		if err := snsVerify(v, s.sign(t, msg)); err != nil {
			t.Errorf("%s: Verify = %v, want nil", name, err)
		}
	}
	if fetches.Load() == 0 {
		t.Error("FetchCert was never called")
	}
}

func TestSNSInvalid(t *testing.T) {
	s := newSNSSigner(t)
	other := newSNSSigner(t)
	v := s.verifier(t, nil)

	tamper := func(msg map[string]any, k, val string) []byte {
		b := s.sign(t, msg)
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		m[k] = val
		b, _ = json.Marshal(m)
		return b
	}
	otherTopic := notification("2", testNow)
	otherTopic["TopicArn"] = "arn:aws:sns:us-west-2:999999999999:AttackerTopic"
	noSig := notification("2", testNow)
	delete(noSig, "SigningCertURL")
	valid := string(s.sign(t, notification("2", testNow)))

	for _, c := range []struct {
		name string
		body []byte
		want string
	}{
		{"tampered Message", tamper(notification("2", testNow), "Message", "Goodbye"), "bad signature"},
		{"tampered Subject", tamper(notification("1", testNow), "Subject", "Urgent"), "bad signature"},
		{"tampered SubscribeURL", tamper(confirmation("SubscriptionConfirmation", "2", testNow), "SubscribeURL", "https://evil.example.com/"), "bad signature"},
		{"version 1 claimed as 2", tamper(notification("1", testNow), "SignatureVersion", "2"), "bad signature"},
		{"other key", other.sign(t, notification("2", testNow)), "bad signature"},
		{"other topic, valid signature", s.sign(t, otherTopic), "not the configured topic"},
		{"missing SigningCertURL", s.sign(t, noSig), "no SigningCertURL"},
		{"unknown Type", s.sign(t, map[string]any{"Type": "Other", "SignatureVersion": "1"}), "Type"},
		{"SignatureVersion 3", tamper(notification("2", testNow), "SignatureVersion", "3"), "SignatureVersion"},
		{"not JSON", []byte("Type=Notification"), "not an SNS message"},
		{"trailing data", []byte(valid + `{"x":1}`), "after the SNS message"},
		{"duplicate key", []byte(strings.Replace(valid, `{`, `{"Message":"evil",`, 1)), "more than once"},
		{"case-folded duplicate", []byte(strings.Replace(valid, `{`, `{"message":"evil",`, 1)), "more than once"},
		{"Message not a string", []byte(strings.Replace(valid, `"Message":"`, `"Message":1,"X":"`, 1)), "not a string"},
	} {
		err := snsVerify(v, c.body)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: Verify = %v, want an error containing %q", c.name, err, c.want)
		}
	}

	// Signature removed entirely.
	var m map[string]any
	_ = json.Unmarshal([]byte(valid), &m)
	delete(m, "Signature")
	b, _ := json.Marshal(m)
	if err := snsVerify(v, b); err == nil || !strings.Contains(err.Error(), "no Signature") {
		t.Errorf("Verify(no Signature) = %v, want an error naming Signature", err)
	}
}

func TestSNSTolerance(t *testing.T) {
	s := newSNSSigner(t)
	v := s.verifier(t, nil)
	for _, c := range []struct {
		age  time.Duration
		want string
	}{
		{59 * time.Minute, ""},
		{time.Hour, ""},
		{time.Hour + 2*time.Second, "outside tolerance by 2 s (3602 s old"},
		{24 * time.Hour, "outside tolerance by 82800 s"},
		{-2 * time.Hour, "in the future"},
	} {
		err := snsVerify(v, s.sign(t, notification("2", testNow.Add(-c.age))))
		if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("Verify(message %v old) = %v, want %q", c.age, err, c.want)
		}
	}
}

func TestSNSConfig(t *testing.T) {
	for _, secret := range []string{"MyTopic", "arn:aws:s3:::bucket"} {
		if _, err := New(Config{Provider: "sns", Secret: secret}); err == nil || !strings.Contains(err.Error(), "TopicArn") {
			t.Errorf("New(sns, %q) = %v, want an error asking for the TopicArn", secret, err)
		}
	}
}

// roundTripFunc serves the default fetcher's requests in memory.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestSNSDefaultFetcherRefuses checks that the default fetcher refuses a certificate
// URL that is not https on an SNS host before any request is made.
func TestSNSDefaultFetcherRefuses(t *testing.T) {
	var calls atomic.Int32
	f := newCertFetcher(&http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		calls.Add(1)
		return nil, errors.New("no network in this test")
	})})
	for _, u := range []string{
		"http://sns.us-east-1.amazonaws.com/SimpleNotificationService-x.pem",
		"https://evil.example.com/SimpleNotificationService-x.pem",
		"https://sns.us-east-1.amazonaws.com.evil.example/x.pem",
		"https://evilsns.us-east-1.amazonaws.com/x.pem",
		"https://sns.us-east-1.amazonaws.com:8443/x.pem",
		"https://user@sns.us-east-1.amazonaws.com/x.pem",
		"https://s3.amazonaws.com/x.pem",
		"file:///etc/passwd",
		"//sns.us-east-1.amazonaws.com/x.pem",
	} {
		if _, err := f.fetch(t.Context(), u); err == nil {
			t.Errorf("fetch(%s) = nil error, want a refusal", u)
		}
	}
	if n := calls.Load(); n != 0 {
		t.Fatalf("transport called %d times, want 0", n)
	}

	// Through Verify, with the fetcher New installs (FetchCert nil): refused before
	// fetching, so this needs no network either.
	s := newSNSSigner(t)
	v := mustNew(t, Config{Provider: "sns", Secret: snsTopic})
	for u, want := range map[string]string{
		"https://evil.example.com/SimpleNotificationService-x.pem":           "not an Amazon SNS host",
		"http://sns.us-west-2.amazonaws.com/SimpleNotificationService-x.pem": "not https",
	} {
		msg := notification("2", testNow)
		msg["SigningCertURL"] = u
		if err := snsVerify(v, s.sign(t, msg)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Verify(SigningCertURL %s) = %v, want %q", u, err, want)
		}
	}
}

func TestSNSDefaultFetcher(t *testing.T) {
	s := newSNSSigner(t)
	pemCert := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.cert.Raw})
	var calls atomic.Int32
	var requested []string
	f := newCertFetcher(&http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		calls.Add(1)
		requested = append(requested, r.URL.String())
		resp := &http.Response{StatusCode: http.StatusOK, Header: http.Header{}, Body: io.NopCloser(strings.NewReader(string(pemCert))), Request: r}
		switch r.URL.Path {
		case "/redirect.pem":
			resp.StatusCode = http.StatusFound
			resp.Header.Set("Location", "https://evil.example.com/cert.pem")
		case "/missing.pem":
			resp.StatusCode = http.StatusNotFound
		case "/garbage.pem":
			resp.Body = io.NopCloser(strings.NewReader("not a certificate"))
		}
		return resp, nil
	})})

	v := mustNew(t, Config{Provider: "sns", Secret: snsTopic, FetchCert: f.fetch})
	for range 3 {
		if err := snsVerify(v, s.sign(t, notification("1", testNow))); err != nil {
			t.Fatalf("Verify with the default fetcher = %v, want nil", err)
		}
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("certificate fetched %d times for one URL, want 1 (cached)", n)
	}

	for _, p := range []string{"/redirect.pem", "/missing.pem", "/garbage.pem"} {
		if _, err := f.fetch(t.Context(), "https://sns.us-west-2.amazonaws.com"+p); err == nil {
			t.Errorf("fetch(%s) = nil error, want one", p)
		}
	}
	for _, u := range requested {
		if strings.Contains(u, "evil") {
			t.Fatalf("fetcher followed a redirect to %s", u)
		}
	}
}

func FuzzSNS(f *testing.F) {
	f.Add([]byte(`{"Type":"Notification","SignatureVersion":"1","Signature":"AA==","SigningCertURL":"x","TopicArn":"arn:aws:sns:us-west-2:123456789012:MyTopic","Timestamp":"2026-03-01T12:00:00.000Z","Message":"m","MessageId":"i"}`))
	f.Add([]byte(`{"a":{"b":[1,2,{"c":null}]},"Subject":null}`))
	f.Add([]byte(`[`))
	key, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		f.Fatal(err)
	}
	cert := &x509.Certificate{PublicKey: &key.PublicKey}
	v, err := New(Config{Provider: "sns", Secret: snsTopic, Now: func() time.Time { return testNow },
		FetchCert: func(context.Context, string) (*x509.Certificate, error) { return cert, nil }})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		if err := snsVerify(v, body); err == nil {
			t.Fatalf("Verify(%q) = nil: a fuzzed body passed", body)
		}
	})
}
