// Package tlsconf loads the agent's TLS material: the certificate authorities for
// --mutual-tls-cas, which the agent sends to the relay so the relay's edge can require client
// certificates signed by them, and the agent's own --crt/--key pair.
package tlsconf

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"strings"

	"github.com/ferrytunnel/ferry/relay/cert"
)

// LoadCAs reads a PEM bundle of certificate authorities for --mutual-tls-cas; flag is the
// flag name to cite in errors. See ParseCAs for what is checked.
//
// Besides the pool it returns the certificates re-encoded as PEM (only CERTIFICATE blocks, in
// file order, without comments or other text between them): that is what the agent sends to
// the relay, and what the relay checks again with ParseCAs.
func LoadCAs(path, flag string) (*x509.CertPool, []byte, error) {
	name := path
	if flag != "" {
		name = flag + " " + path
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, cert.ReadError(name, err)
	}
	certs, err := parseCAs(data, name)
	if err != nil {
		return nil, nil, err
	}
	pool := x509.NewCertPool()
	var out bytes.Buffer
	for _, c := range certs {
		pool.AddCert(c)
		// pem.Encode only fails on writer errors; bytes.Buffer has none.
		_ = pem.Encode(&out, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return pool, out.Bytes(), nil
}

// ParseCAs parses a PEM bundle of certificate authorities; name (e.g. "--mutual-tls-cas
// cas.pem", or the agent a bundle came from) starts every error.
//
// The bundle must hold at least one CERTIFICATE block and nothing but CERTIFICATE blocks (text
// between blocks is ignored). Every certificate must parse and have the basicConstraints cA
// bit set; otherwise the error names the certificate's position (1-based) and subject:
//
//	--mutual-tls-cas cas.pem: certificate 2 (CN=client) is not a CA: its basicConstraints cA is false (RFC 5280 §4.2.1.9); list only CA certificates in this file
func ParseCAs(pemData []byte, name string) (*x509.CertPool, error) {
	certs, err := parseCAs(pemData, name)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	for _, c := range certs {
		pool.AddCert(c)
	}
	return pool, nil
}

func parseCAs(data []byte, name string) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	rest := data
	for blockNum := 1; ; blockNum++ {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			fix := "remove it; list only CA certificates in this file"
			if strings.HasSuffix(b.Type, "PRIVATE KEY") {
				fix = "remove it: this file holds only CA certificates and is sent to the relay, so it must never contain a private key"
			}
			return nil, fmt.Errorf("%s: PEM block %d is a %s, not a CERTIFICATE; %s", name, blockNum, b.Type, fix)
		}
		pos := len(certs) + 1
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: certificate %d: %w; the PEM block is damaged, export the certificate again", name, pos, err)
		}
		if !c.BasicConstraintsValid || !c.IsCA {
			// Without the extension cA takes its DEFAULT FALSE, so one message covers both.
			return nil, fmt.Errorf("%s: certificate %d (%s) is not a CA: its basicConstraints cA is false (RFC 5280 §4.2.1.9); list only CA certificates in this file",
				name, pos, subject(c))
		}
		certs = append(certs, c)
	}
	if len(certs) > 0 {
		return certs, nil
	}
	switch {
	case len(bytes.TrimSpace(data)) == 0:
		return nil, fmt.Errorf("%s: file is empty; pass a PEM file with one or more CA certificates, each starting with -----BEGIN CERTIFICATE-----", name)
	case isDER(data):
		return nil, fmt.Errorf("%s: certificate is DER-encoded, not PEM; convert it with: openssl x509 -inform der -in FILE -out FILE.pem", name)
	default:
		return nil, fmt.Errorf("%s: no CERTIFICATE block found; pass a PEM file with one or more CA certificates, each starting with -----BEGIN CERTIFICATE-----", name)
	}
}

// LoadServerCert loads the agent's --crt/--key pair; errors cite those flags (see
// cert.LoadKeyPair).
func LoadServerCert(certFile, keyFile string) (tls.Certificate, error) {
	return cert.LoadKeyPair(certFile, keyFile, "--crt", "--key")
}

func isDER(data []byte) bool {
	_, err := x509.ParseCertificate(data)
	return err == nil
}

func subject(c *x509.Certificate) string {
	if s := c.Subject.String(); s != "" {
		return s
	}
	return "empty subject"
}
