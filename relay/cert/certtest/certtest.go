// Package certtest creates certificates for tests across the repository: in-memory CAs,
// server and client certificates they sign, and helpers that write them as PEM files.
//
// Every function takes a testing.TB and fails the test on error, so callers need no error
// handling. Keys are ECDSA P-256. Nothing here is meant for production use.
package certtest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const (
	caValidity   = 10 * 365 * 24 * time.Hour
	leafValidity = 365 * 24 * time.Hour
	backdate     = time.Hour
)

// CA is an in-memory test CA.
type CA struct {
	Cert *x509.Certificate
	Key  crypto.Signer
	PEM  []byte         // Cert as a PEM CERTIFICATE block
	Pool *x509.CertPool // a pool holding only Cert
}

// NewCA returns a self-signed CA (basicConstraints cA=true) with common name cn.
func NewCA(t testing.TB, cn string) *CA {
	t.Helper()
	return newSelfSigned(t, &x509.Certificate{
		Subject:               pkix.Name{CommonName: cn},
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	})
}

// NewNonCA returns a self-signed certificate that is not a CA: its basicConstraints extension
// is present with cA=false. It is a valid server and client certificate for cn, for tests
// that check a non-CA is refused where a CA is required. Server and Client still work on it,
// but the certificates they sign do not verify.
func NewNonCA(t testing.TB, cn string) *CA {
	t.Helper()
	return newSelfSigned(t, &x509.Certificate{
		Subject:               pkix.Name{CommonName: cn},
		DNSNames:              []string{cn},
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		IsCA:                  false,
	})
}

func newSelfSigned(t testing.TB, tmpl *x509.Certificate) *CA {
	t.Helper()
	key := newKey(t)
	now := time.Now()
	tmpl.SerialNumber = serial(t)
	tmpl.NotBefore = now.Add(-backdate)
	tmpl.NotAfter = now.Add(caValidity)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatalf("certtest: create %q: %v", tmpl.Subject.CommonName, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("certtest: parse %q: %v", tmpl.Subject.CommonName, err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &CA{
		Cert: cert,
		Key:  key,
		PEM:  pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		Pool: pool,
	}
}

// Server returns a server certificate (extended key usage serverAuth) signed by ca, with the
// chain (leaf, CA) and Leaf filled in. Each name that net.ParseIP accepts becomes an IP SAN,
// every other name a DNS SAN; the first name is also the common name. Without names the
// certificate covers localhost, 127.0.0.1 and ::1.
func (ca *CA) Server(t testing.TB, names ...string) tls.Certificate {
	t.Helper()
	if len(names) == 0 {
		names = []string{"localhost", "127.0.0.1", "::1"}
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: names[0]},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	return ca.issue(t, tmpl)
}

// Client returns a client certificate (extended key usage clientAuth) for common name cn
// signed by ca, with the chain (leaf, CA) and Leaf filled in.
func (ca *CA) Client(t testing.TB, cn string) tls.Certificate {
	t.Helper()
	return ca.issue(t, &x509.Certificate{
		Subject:     pkix.Name{CommonName: cn},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
}

func (ca *CA) issue(t testing.TB, tmpl *x509.Certificate) tls.Certificate {
	t.Helper()
	key := newKey(t)
	now := time.Now()
	tmpl.SerialNumber = serial(t)
	tmpl.NotBefore = now.Add(-backdate)
	tmpl.NotAfter = now.Add(leafValidity)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	tmpl.BasicConstraintsValid = true
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		t.Fatalf("certtest: issue %q from %q: %v", tmpl.Subject.CommonName, ca.Cert.Subject.CommonName, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("certtest: parse %q: %v", tmpl.Subject.CommonName, err)
	}
	return tls.Certificate{Certificate: [][]byte{der, ca.Cert.Raw}, PrivateKey: key, Leaf: leaf}
}

// WriteFiles writes the CA certificate as PEM to dir and returns its path. The file is named
// after the common name: lower-case, runs of other characters than letters and digits turned
// into "-", plus ".pem" ("Test CA" → "test-ca.pem"; an empty name gives "ca.pem").
func (ca *CA) WriteFiles(t testing.TB, dir string) (certPath string) {
	t.Helper()
	certPath = filepath.Join(dir, fileName(ca.Cert.Subject.CommonName)+".pem")
	if err := os.WriteFile(certPath, ca.PEM, 0o644); err != nil {
		t.Fatalf("certtest: %v", err)
	}
	return certPath
}

// WriteKeyPair writes c's chain as PEM to dir/NAME.pem and its key as PKCS#8 PEM to
// dir/NAME-key.pem (mode 0600), and returns both paths.
func WriteKeyPair(t testing.TB, dir, name string, c tls.Certificate) (certPath, keyPath string) {
	t.Helper()
	var certPEM []byte
	for _, der := range c.Certificate {
		certPEM = append(certPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
	if err != nil {
		t.Fatalf("certtest: marshal key for %s: %v", name, err)
	}
	certPath = filepath.Join(dir, name+".pem")
	keyPath = filepath.Join(dir, name+"-key.pem")
	if err := os.WriteFile(certPath, certPEM, 0o644); err != nil {
		t.Fatalf("certtest: %v", err)
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatalf("certtest: %v", err)
	}
	return certPath, keyPath
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("certtest: generate key: %v", err)
	}
	return key
}

func serial(t testing.TB) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		t.Fatalf("certtest: serial number: %v", err)
	}
	return n.Add(n, big.NewInt(1))
}

func fileName(cn string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(cn) {
		if ('a' <= r && r <= 'z') || ('0' <= r && r <= '9') {
			b.WriteRune(r)
			dash = false
		} else if !dash && b.Len() > 0 {
			b.WriteByte('-')
			dash = true
		}
	}
	name := strings.TrimSuffix(b.String(), "-")
	if name == "" {
		return "ca"
	}
	return name
}
