package cert

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"time"
)

// LoadKeyPair loads a PEM certificate chain (leaf first) and its private key, like
// tls.LoadX509KeyPair, and fills tls.Certificate.Leaf.
//
// Its errors name the flag and file, the problem and the fix, for example
//
//	--tls-cert relay.pem: no CERTIFICATE block found; pass a PEM file that starts with -----BEGIN CERTIFICATE-----
//	--tls-key relay-key.pem: key does not match the certificate in --tls-cert relay.pem; ...
//	--tls-cert relay.pem: certificate expired on 2025-01-02 (CN=relay.example.com); ...
//
// certFlag and keyFlag are the flag names to cite (e.g. "--tls-cert"); empty cites the path only.
func LoadKeyPair(certFile, keyFile, certFlag, keyFlag string) (tls.Certificate, error) {
	src := pairSource{certFile: certFile, keyFile: keyFile, certFlag: certFlag, keyFlag: keyFlag}
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return tls.Certificate{}, ReadError(src.cert(), err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return tls.Certificate{}, ReadError(src.key(), err)
	}
	return keyPair(certPEM, keyPEM, src, time.Now())
}

// pairSource says where a certificate and key came from, for error messages.
type pairSource struct {
	certFile, keyFile, certFlag, keyFlag string
}

func (s pairSource) cert() string { return label(s.certFlag, s.certFile) }
func (s pairSource) key() string  { return label(s.keyFlag, s.keyFile) }

// swapHint is appended when the certificate and key files look swapped.
func (s pairSource) swapHint() string {
	if s.certFlag == "" || s.keyFlag == "" {
		return "the certificate and key files look swapped; exchange them"
	}
	return fmt.Sprintf("did you swap %s and %s?", s.certFlag, s.keyFlag)
}

// keyPair checks certPEM and keyPEM (see LoadKeyPair) at time now.
func keyPair(certPEM, keyPEM []byte, src pairSource, now time.Time) (tls.Certificate, error) {
	if !hasBlock(certPEM, blockCertificate) && hasKeyBlock(certPEM) {
		return tls.Certificate{}, fmt.Errorf("%s: file holds a private key, not a certificate; %s", src.cert(), src.swapHint())
	}
	certs, err := parseCertChain(certPEM, src.certFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("%s: %w", src.cert(), err)
	}
	if !hasKeyBlock(keyPEM) && hasBlock(keyPEM, blockCertificate) && hasKeyBlock(certPEM) {
		return tls.Certificate{}, fmt.Errorf("%s: file holds a certificate, and the private key is in %s; %s", src.key(), src.cert(), src.swapHint())
	}
	key, err := parseKey(keyPEM, src.keyFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("%s: %w", src.key(), err)
	}

	leaf := certs[0]
	if !publicKeyEqual(leaf.PublicKey, key.Public()) {
		for i, c := range certs[1:] {
			if !publicKeyEqual(c.PublicKey, key.Public()) {
				continue
			}
			if c.IsCA {
				return tls.Certificate{}, fmt.Errorf("%s: key belongs to certificate %d (%s) in %s, a CA, not to the server certificate (%s); pass the server certificate's own key",
					src.key(), i+2, subject(c), src.cert(), subject(leaf))
			}
			return tls.Certificate{}, fmt.Errorf("%s: the key matches certificate %d (%s), not the first one; put the server certificate first in the file, followed by its intermediates",
				src.cert(), i+2, subject(c))
		}
		return tls.Certificate{}, fmt.Errorf("%s: key does not match the certificate in %s (%s); pass the private key that was generated together with that certificate",
			src.key(), src.cert(), subject(leaf))
	}
	if err := checkValidity(leaf, now); err != nil {
		return tls.Certificate{}, fmt.Errorf("%s: %w", src.cert(), err)
	}

	out := tls.Certificate{PrivateKey: key, Leaf: leaf}
	for _, c := range certs {
		out.Certificate = append(out.Certificate, c.Raw)
	}
	return out, nil
}

// checkValidity reports whether now lies within c's validity period.
func checkValidity(c *x509.Certificate, now time.Time) error {
	if now.After(c.NotAfter) {
		return fmt.Errorf("certificate expired on %s (%s); renew it and pass the new file", c.NotAfter.UTC().Format(time.DateOnly), subject(c))
	}
	if now.Before(c.NotBefore) {
		return fmt.Errorf("certificate is not valid until %s UTC (%s); check this machine's clock", c.NotBefore.UTC().Format(time.DateTime), subject(c))
	}
	return nil
}

// subject names a certificate in errors, e.g. "CN=relay.example.com".
func subject(c *x509.Certificate) string {
	if s := c.Subject.String(); s != "" {
		return s
	}
	return "empty subject"
}

func hasBlock(data []byte, typ string) bool {
	for _, b := range pemBlocks(data) {
		if b.Type == typ {
			return true
		}
	}
	return false
}

func hasKeyBlock(data []byte) bool {
	for _, b := range pemBlocks(data) {
		if isKeyBlock(b) {
			return true
		}
	}
	return false
}
