package webhook

import (
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"net/http"
	"strings"
)

// parseSendGridKey reads the verification key from SendGrid's Event Webhook settings:
// base64 of a DER (PKIX) ECDSA public key. A PEM "PUBLIC KEY" block is accepted too.
func parseSendGridKey(s string) (*ecdsa.PublicKey, error) {
	s = strings.TrimSpace(s)
	var der []byte
	if strings.HasPrefix(s, "-----BEGIN") {
		b, _ := pem.Decode([]byte(s))
		if b == nil {
			return nil, fmt.Errorf("the verification key looks like PEM but does not parse")
		}
		der = b.Bytes
	} else {
		var err error
		der, err = base64.StdEncoding.DecodeString(strings.Join(strings.Fields(s), ""))
		if err != nil {
			return nil, fmt.Errorf("the verification key is not base64: copy it from SendGrid's Event Webhook settings")
		}
	}
	k, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, fmt.Errorf("the verification key is not a public key: %w", err)
	}
	ek, ok := k.(*ecdsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("the verification key is a %T, want an ECDSA key", k)
	}
	return ek, nil
}

// verifySendGrid: X-Twilio-Email-Event-Webhook-Signature is base64 of an ASN.1 ECDSA
// signature over SHA-256(X-Twilio-Email-Event-Webhook-Timestamp + body). No timestamp
// window: SendGrid documents none (see the package comment).
func (v *Verifier) verifySendGrid(r *http.Request, body []byte) error {
	const sigHeader, tsHeader = "X-Twilio-Email-Event-Webhook-Signature", "X-Twilio-Email-Event-Webhook-Timestamp"
	sig := r.Header.Get(sigHeader)
	if sig == "" {
		return missing(sigHeader)
	}
	ts := r.Header.Get(tsHeader)
	if ts == "" {
		return missing(tsHeader)
	}
	der, err := base64.StdEncoding.DecodeString(strings.TrimSpace(sig))
	if err != nil {
		return fmt.Errorf("%s is not base64", sigHeader)
	}
	h := sha256.New()
	h.Write([]byte(ts))
	h.Write(body)
	if !ecdsa.VerifyASN1(v.sgKey, h.Sum(nil), der) {
		return badSignature(sigHeader)
	}
	return nil
}
