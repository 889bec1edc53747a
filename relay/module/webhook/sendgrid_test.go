package webhook

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"strings"
	"testing"
)

const (
	sgSigHeader = "X-Twilio-Email-Event-Webhook-Signature"
	sgTSHeader  = "X-Twilio-Email-Event-Webhook-Timestamp"
)

// The test vector of SendGrid's own Go library (sendgrid-go,
// helpers/eventwebhook/eventwebhook_test.go): its public key, timestamp and signature,
// over the payload that test builds with json.Marshal (keys sorted).
func TestSendGridPublishedVector(t *testing.T) {
	const (
		pub     = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEEDr2LjtURuePQzplybdC+u4CwrqDqBaWjcMMsTbhdbcwHBcepxo7yAQGhHPTnlvFYPAZFceEu/1FwCM/QmGUhA=="
		ts      = "1588788367"
		sig     = "MEUCIQCtIHJeH93Y+qpYeWrySphQgpNGNr/U+UyUlBkU6n7RAwIgJTz2C+8a8xonZGi6BpSzoQsbVRamr2nlxFDWYNH2j/0="
		payload = `{"category":"example_payload","event":"test_event","message_id":"message_id"}`
	)
	v := mustNew(t, Config{Provider: "sendgrid", Secret: pub})
	r := newReq("POST", "/sendgrid", payload, map[string]string{sgSigHeader: sig, sgTSHeader: ts})
	if err := v.Verify(r, []byte(payload)); err != nil {
		t.Fatalf("Verify(sendgrid-go's vector) = %v, want nil", err)
	}
	other := "this is not valid payload for the given signature"
	if err := v.Verify(newReq("POST", "/", other, map[string]string{sgSigHeader: sig, sgTSHeader: ts}), []byte(other)); err == nil {
		t.Fatal("Verify(vector signature, other payload) = nil, want an error")
	}
}

func sgKey(t *testing.T) (*ecdsa.PrivateKey, string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return k, base64.StdEncoding.EncodeToString(der)
}

// sgSign signs as SendGrid documents: ECDSA over SHA-256(timestamp + payload), ASN.1
// DER, base64.
func sgSign(t *testing.T, k *ecdsa.PrivateKey, ts, body string) string {
	t.Helper()
	sum := sha256.Sum256([]byte(ts + body))
	sig, err := ecdsa.SignASN1(rand.Reader, k, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(sig)
}

func TestSendGrid(t *testing.T) {
	key, pub := sgKey(t)
	otherKey, _ := sgKey(t)
	v := mustNew(t, Config{Provider: "sendgrid", Secret: pub})
	body := `[{"email":"a@example.com","event":"delivered","sg_event_id":"e1","timestamp":1700000000}]`
	const ts = "1700000000"

	check := func(name, body string, hdr map[string]string, want string) {
		t.Helper()
		err := v.Verify(newReq("POST", "/", body, hdr), []byte(body))
		if want == "" && err != nil || want != "" && (err == nil || !strings.Contains(err.Error(), want)) {
			t.Errorf("%s: Verify = %v, want %q", name, err, want)
		}
	}
	good := sgSign(t, key, ts, body)
	check("valid", body, map[string]string{sgSigHeader: good, sgTSHeader: ts}, "")
	check("tampered body", body+" ", map[string]string{sgSigHeader: good, sgTSHeader: ts}, "bad signature")
	check("tampered timestamp", body, map[string]string{sgSigHeader: good, sgTSHeader: "1700000001"}, "bad signature")
	check("wrong key", body, map[string]string{sgSigHeader: sgSign(t, otherKey, ts, body), sgTSHeader: ts}, "bad signature")
	check("missing signature", body, map[string]string{sgTSHeader: ts}, "missing header "+sgSigHeader)
	check("missing timestamp", body, map[string]string{sgSigHeader: good}, "missing header "+sgTSHeader)
	check("not base64", body, map[string]string{sgSigHeader: "!!", sgTSHeader: ts}, "not base64")

	// SendGrid documents no window: an old timestamp with a valid signature passes.
	old := "1500000000"
	check("old timestamp", body, map[string]string{sgSigHeader: sgSign(t, key, old, body), sgTSHeader: old}, "")
}

func TestSendGridKeyFormats(t *testing.T) {
	key, pub := sgKey(t)
	der, _ := base64.StdEncoding.DecodeString(pub)
	pemKey := string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	wrapped := pub[:20] + "\n" + pub[20:] + "\n"
	for _, s := range []string{pemKey, wrapped} {
		v, err := New(Config{Provider: "sendgrid", Secret: s})
		if err != nil {
			t.Fatalf("New(sendgrid, %q) = %v", s, err)
		}
		body := "[]"
		r := newReq("POST", "/", body, map[string]string{sgSigHeader: sgSign(t, key, "1", body), sgTSHeader: "1"})
		if err := v.Verify(r, []byte(body)); err != nil {
			t.Fatalf("Verify with key %q = %v", s, err)
		}
	}

	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rsaDER, _ := x509.MarshalPKIXPublicKey(&rk.PublicKey)
	for _, s := range []string{"not a key", base64.StdEncoding.EncodeToString([]byte("junk")), base64.StdEncoding.EncodeToString(rsaDER)} {
		if _, err := New(Config{Provider: "sendgrid", Secret: s}); err == nil {
			t.Errorf("New(sendgrid, %q) = nil error, want one", s)
		}
	}
}
