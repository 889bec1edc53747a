package cert

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// File names inside the --dev data directory.
const (
	CACertFile   = "ca.pem"        // dev CA certificate; agents trust this file
	CAKeyFile    = "ca-key.pem"    // dev CA private key, mode 0600
	LeafCertFile = "relay.pem"     // relay server certificate chain (leaf, CA)
	LeafKeyFile  = "relay-key.pem" // relay server private key, mode 0600
)

const (
	caValidity   = 10 * 365 * 24 * time.Hour
	leafValidity = 825 * 24 * time.Hour // the CA/Browser Forum's old maximum; clients accept it
	backdate     = time.Hour            // tolerate clocks that are a little behind
	renewBefore  = 30 * 24 * time.Hour  // LoadOrCreateDevLeaf re-issues leaves this close to expiry
	certFileMode = 0o644
	keyFileMode  = 0o600
	dirMode      = 0o700
)

// DevCA is the throwaway certificate authority `ferry-relay --dev` creates in its data dir.
// Its methods do not modify it and are safe for concurrent use.
type DevCA struct {
	Cert    *x509.Certificate
	Key     crypto.Signer
	CertPEM []byte // Cert as PEM, the content of ca.pem
}

// LoadOrCreateDevCA loads DIR/ca.pem and DIR/ca-key.pem, or creates them if both are absent:
// ECDSA P-256, CN "Ferry Dev CA <6 random hex digits>", valid for 10 years, cA=true with
// pathLenConstraint 0. The key file is written with mode 0600, the directory created 0700.
//
// One file without the other, an unreadable or damaged file, a key that does not match, a
// certificate that is not a CA or has expired are errors that name the file and the fix.
func LoadOrCreateDevCA(dir string) (*DevCA, error) {
	certPath, keyPath := filepath.Join(dir, CACertFile), filepath.Join(dir, CAKeyFile)
	certExists, err := exists(certPath)
	if err != nil {
		return nil, fmt.Errorf("dev CA: %w", err)
	}
	keyExists, err := exists(keyPath)
	if err != nil {
		return nil, fmt.Errorf("dev CA: %w", err)
	}
	switch {
	case certExists && keyExists:
		return loadDevCA(certPath, keyPath, time.Now())
	case certExists:
		return nil, fmt.Errorf("dev CA: %s exists but its key %s is missing; restore the key, or delete %s to create a new dev CA (agents must then trust the new %s)",
			certPath, keyPath, certPath, CACertFile)
	case keyExists:
		return nil, fmt.Errorf("dev CA: %s exists but its certificate %s is missing; restore the certificate, or delete %s to create a new dev CA",
			keyPath, certPath, keyPath)
	}
	return createDevCA(certPath, keyPath, time.Now())
}

// exists reports whether path exists; errors other than "does not exist" are returned.
func exists(path string) (bool, error) {
	_, err := os.Stat(path)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	default:
		return false, ReadError(path, err)
	}
}

func loadDevCA(certPath, keyPath string, now time.Time) (*DevCA, error) {
	startOver := fmt.Sprintf("to start over, delete %s and %s", certPath, keyPath)
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return nil, fmt.Errorf("dev CA: %w", ReadError(certPath, err))
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, fmt.Errorf("dev CA: %w", ReadError(keyPath, err))
	}
	certs, err := parseCertChain(certPEM, certPath)
	if err != nil {
		return nil, fmt.Errorf("dev CA: %s: %w (or, %s)", certPath, err, startOver)
	}
	key, err := parseKey(keyPEM, keyPath)
	if err != nil {
		return nil, fmt.Errorf("dev CA: %s: %w (or, %s)", keyPath, err, startOver)
	}
	ca := certs[0]
	if !publicKeyEqual(ca.PublicKey, key.Public()) {
		return nil, fmt.Errorf("dev CA: %s does not match the certificate in %s; restore the matching pair, or %s", keyPath, certPath, startOver)
	}
	if !ca.BasicConstraintsValid || !ca.IsCA {
		return nil, fmt.Errorf("dev CA: %s (%s) is not a CA: its basicConstraints cA is false (RFC 5280 §4.2.1.9); %s", certPath, subject(ca), startOver)
	}
	if err := checkValidity(ca, now); err != nil {
		return nil, fmt.Errorf("dev CA: %s: %w (or, %s; agents must then trust the new %s)", certPath, err, startOver, CACertFile)
	}
	return &DevCA{Cert: ca, Key: key, CertPEM: encodeCertsPEM(ca.Raw)}, nil
}

func createDevCA(certPath, keyPath string, now time.Time) (*DevCA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("dev CA: generate key: %w", err)
	}
	suffix := make([]byte, 3)
	if _, err := rand.Read(suffix); err != nil {
		return nil, fmt.Errorf("dev CA: random name: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, fmt.Errorf("dev CA: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "Ferry Dev CA " + hex.EncodeToString(suffix)},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(caValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("dev CA: create certificate: %w", err)
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("dev CA: parse new certificate: %w", err)
	}
	keyPEM, err := encodeKeyPEM(key)
	if err != nil {
		return nil, fmt.Errorf("dev CA: %w", err)
	}
	certPEM := encodeCertsPEM(der)
	if err := os.MkdirAll(filepath.Dir(certPath), dirMode); err != nil {
		return nil, fmt.Errorf("dev CA: %w", err)
	}
	// Key first: if the certificate write fails, remove the key again so the next start
	// does not find a half-present pair.
	if err := writeFileAtomic(keyPath, keyPEM, keyFileMode); err != nil {
		return nil, fmt.Errorf("dev CA: %w", err)
	}
	if err := writeFileAtomic(certPath, certPEM, certFileMode); err != nil {
		_ = os.Remove(keyPath)
		return nil, fmt.Errorf("dev CA: %w", err)
	}
	return &DevCA{Cert: ca, Key: key, CertPEM: certPEM}, nil
}

// Issue returns a server certificate signed by the CA for dnsNames and ips, with the chain
// (leaf, CA) and Leaf filled in: ECDSA P-256, valid from an hour ago for 825 days (but not past
// the CA's own expiry), extended key usage serverAuth. The common name is the first name.
func (ca *DevCA) Issue(dnsNames []string, ips []net.IP) (tls.Certificate, error) {
	if len(dnsNames) == 0 && len(ips) == 0 {
		return tls.Certificate{}, errors.New("issue server certificate: no DNS names or IPs given; pass at least one name that agents dial")
	}
	if i := slices.Index(dnsNames, ""); i >= 0 {
		return tls.Certificate{}, fmt.Errorf("issue server certificate: DNS name %d is empty; remove it", i+1)
	}
	if i := slices.IndexFunc(ips, func(ip net.IP) bool { return ip.To16() == nil }); i >= 0 {
		return tls.Certificate{}, fmt.Errorf("issue server certificate: IP %d is not a valid IPv4 or IPv6 address; remove it", i+1)
	}
	var cn string
	if len(dnsNames) > 0 {
		cn = dnsNames[0]
	} else {
		cn = ips[0].String()
	}
	return ca.issue(&x509.Certificate{
		Subject:     pkix.Name{CommonName: cn},
		DNSNames:    dnsNames,
		IPAddresses: ips,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, time.Now())
}

// IssueClient returns a client certificate for commonName signed by the CA, shaped like Issue's
// but with extended key usage clientAuth and no subject alternative names.
func (ca *DevCA) IssueClient(commonName string) (tls.Certificate, error) {
	if commonName == "" {
		return tls.Certificate{}, errors.New("issue client certificate: empty common name; pass the name the relay should see")
	}
	return ca.issue(&x509.Certificate{
		Subject:     pkix.Name{CommonName: commonName},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, time.Now())
}

// issue fills the validity, key usage and serial of tmpl and signs it with a new P-256 key.
func (ca *DevCA) issue(tmpl *x509.Certificate, now time.Time) (tls.Certificate, error) {
	if ca == nil || ca.Cert == nil || ca.Key == nil {
		return tls.Certificate{}, errors.New("issue certificate: dev CA is not loaded; create it with LoadOrCreateDevCA")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("issue certificate: generate key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("issue certificate: %w", err)
	}
	tmpl.SerialNumber = serial
	tmpl.NotBefore = now.Add(-backdate)
	tmpl.NotAfter = now.Add(leafValidity)
	if tmpl.NotAfter.After(ca.Cert.NotAfter) {
		tmpl.NotAfter = ca.Cert.NotAfter
	}
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	tmpl.BasicConstraintsValid = true
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("issue certificate for %q: %w", tmpl.Subject.CommonName, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("issue certificate for %q: parse: %w", tmpl.Subject.CommonName, err)
	}
	return tls.Certificate{Certificate: [][]byte{der, ca.Cert.Raw}, PrivateKey: key, Leaf: leaf}, nil
}

func randomSerial() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("random serial number: %w", err)
	}
	return n.Add(n, big.NewInt(1)), nil // never zero
}

// LoadOrCreateDevLeaf loads DIR/relay.pem and DIR/relay-key.pem if both exist, parse, were
// signed by ca, cover exactly dnsNames and ips, and stay valid for more than 30 days; otherwise
// it issues a new server certificate with ca.Issue and writes both files (key mode 0600).
// The returned chain is always (leaf, ca.Cert). Only I/O errors are returned for existing
// files: a damaged leaf is replaced, since the CA can always issue another.
func LoadOrCreateDevLeaf(dir string, ca *DevCA, dnsNames []string, ips []net.IP) (tls.Certificate, error) {
	if ca == nil || ca.Cert == nil {
		return tls.Certificate{}, errors.New("dev certificate: dev CA is not loaded; create it with LoadOrCreateDevCA")
	}
	certPath, keyPath := filepath.Join(dir, LeafCertFile), filepath.Join(dir, LeafKeyFile)
	now := time.Now()
	existing, ok, err := loadDevLeaf(certPath, keyPath, now)
	if err != nil {
		return tls.Certificate{}, err
	}
	if ok && leafFits(existing.Leaf, ca, dnsNames, ips, now) {
		existing.Certificate = [][]byte{existing.Leaf.Raw, ca.Cert.Raw}
		return existing, nil
	}

	c, err := ca.Issue(dnsNames, ips)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("dev certificate: %w", err)
	}
	keyPEM, err := encodeKeyPEM(c.PrivateKey.(crypto.Signer))
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("dev certificate: %w", err)
	}
	if err := os.MkdirAll(dir, dirMode); err != nil {
		return tls.Certificate{}, fmt.Errorf("dev certificate: %w", err)
	}
	if err := writeFileAtomic(keyPath, keyPEM, keyFileMode); err != nil {
		return tls.Certificate{}, fmt.Errorf("dev certificate: %w", err)
	}
	if err := writeFileAtomic(certPath, encodeCertsPEM(c.Certificate...), certFileMode); err != nil {
		return tls.Certificate{}, fmt.Errorf("dev certificate: %w", err)
	}
	return c, nil
}

// loadDevLeaf reads an existing leaf pair. ok is false when either file is missing or does
// not parse as a matching, currently valid pair; err is set only for other I/O errors.
func loadDevLeaf(certPath, keyPath string, now time.Time) (c tls.Certificate, ok bool, err error) {
	certPEM, err := os.ReadFile(certPath)
	if errors.Is(err, fs.ErrNotExist) {
		return tls.Certificate{}, false, nil
	}
	if err != nil {
		return tls.Certificate{}, false, fmt.Errorf("dev certificate: %w", ReadError(certPath, err))
	}
	keyPEM, err := os.ReadFile(keyPath)
	if errors.Is(err, fs.ErrNotExist) {
		return tls.Certificate{}, false, nil
	}
	if err != nil {
		return tls.Certificate{}, false, fmt.Errorf("dev certificate: %w", ReadError(keyPath, err))
	}
	c, err = keyPair(certPEM, keyPEM, pairSource{certFile: certPath, keyFile: keyPath}, now)
	if err != nil {
		return tls.Certificate{}, false, nil
	}
	return c, true, nil
}

// leafFits reports whether leaf was signed by ca, is a server certificate for exactly
// dnsNames and ips, and stays valid for longer than renewBefore.
func leafFits(leaf *x509.Certificate, ca *DevCA, dnsNames []string, ips []net.IP, now time.Time) bool {
	if leaf.CheckSignatureFrom(ca.Cert) != nil {
		return false
	}
	if now.Before(leaf.NotBefore) || now.Add(renewBefore).After(leaf.NotAfter) {
		return false
	}
	if !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageServerAuth) {
		return false
	}
	return slices.Equal(nameSet(leaf.DNSNames, leaf.IPAddresses), nameSet(dnsNames, ips))
}

// nameSet returns the names as a sorted, de-duplicated list: DNS names lower-cased, IPs in
// their canonical text form.
func nameSet(dnsNames []string, ips []net.IP) []string {
	set := make([]string, 0, len(dnsNames)+len(ips))
	for _, n := range dnsNames {
		set = append(set, "dns:"+strings.ToLower(n))
	}
	for _, ip := range ips {
		set = append(set, "ip:"+ip.String())
	}
	slices.Sort(set)
	return slices.Compact(set)
}
