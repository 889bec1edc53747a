package cert

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"strings"
	"sync"
	"testing"
	"time"
)

// uploadRSAKey is one 2048-bit RSA key shared by the upload tests: generating RSA keys is
// slow, above all under -race.
var uploadRSAKey = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
})

func newECKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newEd25519Key(t testing.TB) ed25519.PrivateKey {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// makeCert signs tmpl for pub with parent and parentKey, or self-signs it with parentKey
// when parent is nil. A missing serial number or validity is filled in (valid from an hour
// ago for a day).
func makeCert(t testing.TB, tmpl *x509.Certificate, pub crypto.PublicKey, parent *x509.Certificate, parentKey crypto.Signer) *x509.Certificate {
	t.Helper()
	if tmpl.SerialNumber == nil {
		n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
		if err != nil {
			t.Fatal(err)
		}
		tmpl.SerialNumber = n.Add(n, big.NewInt(1))
	}
	if tmpl.NotBefore.IsZero() && tmpl.NotAfter.IsZero() {
		now := time.Now()
		tmpl.NotBefore, tmpl.NotAfter = now.Add(-time.Hour), now.Add(24*time.Hour)
	}
	if parent == nil {
		parent = tmpl
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, parentKey)
	if err != nil {
		t.Fatalf("create %q: %v", tmpl.Subject.CommonName, err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("parse %q: %v", tmpl.Subject.CommonName, err)
	}
	return c
}

func caTmpl(cn string) *x509.Certificate {
	return &x509.Certificate{
		Subject:               pkix.Name{CommonName: cn},
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
}

func serverTmpl(cn string) *x509.Certificate {
	return &x509.Certificate{
		Subject:               pkix.Name{CommonName: cn},
		DNSNames:              []string{cn},
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
}

// testPKI is a root CA ("Example Root") and an intermediate it signed ("Example
// Intermediate"), both ECDSA P-256.
type testPKI struct {
	root, inter       *x509.Certificate
	rootKey, interKey *ecdsa.PrivateKey
}

func newTestPKI(t testing.TB) *testPKI {
	t.Helper()
	p := &testPKI{rootKey: newECKey(t), interKey: newECKey(t)}
	p.root = makeCert(t, caTmpl("Example Root"), p.rootKey.Public(), nil, p.rootKey)
	p.inter = makeCert(t, caTmpl("Example Intermediate"), p.interKey.Public(), p.root, p.rootKey)
	return p
}

// leaf issues a www.example.com server certificate for key from the intermediate; mod, if
// set, changes the template first.
func (p *testPKI) leaf(t testing.TB, key crypto.Signer, mod func(*x509.Certificate)) *x509.Certificate {
	t.Helper()
	tmpl := serverTmpl("www.example.com")
	if mod != nil {
		mod(tmpl)
	}
	return makeCert(t, tmpl, key.Public(), p.inter, p.interKey)
}

// pemCerts returns the certificates as concatenated CERTIFICATE blocks.
func pemCerts(certs ...*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}

// pemKey encodes key as "pkcs8" (PRIVATE KEY), "pkcs1" (RSA PRIVATE KEY) or "sec1" (EC
// PRIVATE KEY).
func pemKey(t testing.TB, key crypto.Signer, format string) []byte {
	t.Helper()
	var b *pem.Block
	var err error
	switch format {
	case "pkcs8":
		b = &pem.Block{Type: "PRIVATE KEY"}
		b.Bytes, err = x509.MarshalPKCS8PrivateKey(key)
	case "pkcs1":
		b = &pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key.(*rsa.PrivateKey))}
	case "sec1":
		b = &pem.Block{Type: "EC PRIVATE KEY"}
		b.Bytes, err = x509.MarshalECPrivateKey(key.(*ecdsa.PrivateKey))
	default:
		t.Fatalf("unknown key format %q", format)
	}
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(b)
}

// wantBundleError fails unless err is a *BundleError for field whose message contains each
// of want.
func wantBundleError(t *testing.T, err error, field string, want ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("err = nil, want a %s error containing %q", field, want)
	}
	var be *BundleError
	if !errors.As(err, &be) {
		t.Fatalf("err = %T %q, want *BundleError", err, err)
	}
	if be.Field != field {
		t.Errorf("Field = %q, want %q (err %q)", be.Field, field, err)
	}
	if !strings.HasPrefix(err.Error(), field+": ") {
		t.Errorf("err = %q, want prefix %q", err, field+": ")
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("err = %q\nwant it to contain %q", err, w)
		}
	}
}

func rsaGenerate(bits int) (*rsa.PrivateKey, error) { return rsa.GenerateKey(rand.Reader, bits) }

// x509NewPool returns a pool holding p's root.
func x509NewPool(p *testPKI) *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(p.root)
	return pool
}
