package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
)

// RequireClientCerts returns a copy of conf that requires a client certificate chaining
// to one of pool's CAs, and refuses clients with the alerts ngrok documents:
// 116 certificate_required when a TLS 1.3 client sends no certificate, and
// 42 bad_certificate for a certificate that does not verify (or none, in TLS 1.2).
//
// crypto/tls alone would send 48 unknown_ca for a certificate from another CA and 40
// handshake_failure for a TLS 1.2 client without one, so verification happens in
// VerifyPeerCertificate (whose failure crypto/tls reports as bad_certificate).
func RequireClientCerts(conf *tls.Config, pool *x509.CertPool) *tls.Config {
	base := conf.Clone()
	base.ClientCAs = pool // advertised in the CertificateRequest
	base.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error {
		return verifyClient(raw, pool)
	}
	out := base.Clone()
	out.GetConfigForClient = func(hi *tls.ClientHelloInfo) (*tls.Config, error) {
		c := base.Clone()
		tls13 := slices.Contains(hi.SupportedVersions, tls.VersionTLS13) && (c.MaxVersion == 0 || c.MaxVersion >= tls.VersionTLS13)
		if tls13 {
			c.ClientAuth = tls.RequireAnyClientCert // none sent: certificate_required
		} else {
			c.ClientAuth = tls.RequestClientCert // none sent: verifyClient fails: bad_certificate
		}
		return c, nil
	}
	return out
}

// ClientCertError is verifyClient's refusal of a client certificate (or of its absence),
// so a server can tell a mutual-TLS refusal from other handshake failures.
type ClientCertError struct{ Err error }

func (e *ClientCertError) Error() string { return e.Err.Error() }
func (e *ClientCertError) Unwrap() error { return e.Err }

func verifyClient(raw [][]byte, pool *x509.CertPool) error {
	if err := verifyClientChain(raw, pool); err != nil {
		return &ClientCertError{Err: err}
	}
	return nil
}

func verifyClientChain(raw [][]byte, pool *x509.CertPool) error {
	if len(raw) == 0 {
		return errors.New("client sent no certificate; one signed by a CA in --mutual-tls-cas is required")
	}
	certs := make([]*x509.Certificate, 0, len(raw))
	for _, r := range raw {
		c, err := x509.ParseCertificate(r)
		if err != nil {
			return fmt.Errorf("client certificate: %w", err)
		}
		certs = append(certs, c)
	}
	opts := x509.VerifyOptions{Roots: pool, Intermediates: x509.NewCertPool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	for _, c := range certs[1:] {
		opts.Intermediates.AddCert(c)
	}
	if _, err := certs[0].Verify(opts); err != nil {
		return fmt.Errorf("client certificate %q: %w", certs[0].Subject.CommonName, err)
	}
	return nil
}
