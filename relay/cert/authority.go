package cert

import (
	"crypto/x509"
	"time"
)

// CAInfo describes an uploaded certificate authority, with the fields and JSON names of
// ngrok's certificate_authorities API resource. See CertInfo for the usage names.
type CAInfo struct {
	SubjectCommonName string    `json:"subject_common_name"`
	NotBefore         time.Time `json:"not_before"`
	NotAfter          time.Time `json:"not_after"`
	KeyUsages         []string  `json:"key_usages"`
	ExtendedKeyUsages []string  `json:"extended_key_usages"`
}

// ParseCertificateAuthority checks an uploaded certificate authority, the trust anchor of the
// mutual TLS edge module: caPEM holds exactly one CERTIFICATE block (text before it is
// ignored, text after it refused, at most MaxUploadPEMSize bytes) for a CA: basic constraints
// cA=true (RFC 5280 §4.2.1.9) and, if it has a key usage extension, keyCertSign
// (RFC 5280 §4.2.1.3). An expired CA is accepted (CAInfo reports NotAfter). Errors are
// *BundleError with Field FieldCAPEM, e.g.
//
//	ca_pem: certificate 1 (CN=www.example.com) is not a CA: basic constraints cA=false (RFC 5280 §4.2.1.9 requires cA=true for certificates that sign others)
func ParseCertificateAuthority(caPEM []byte) (*x509.Certificate, CAInfo, error) {
	const field = FieldCAPEM
	if err := checkUploadSize(field, caPEM, "the CA certificate as PEM, starting with -----BEGIN CERTIFICATE-----"); err != nil {
		return nil, CAInfo{}, err
	}
	blocks, err := scanUploadPEM(field, caPEM)
	if err != nil {
		return nil, CAInfo{}, err
	}
	if len(blocks) == 0 {
		return nil, CAInfo{}, noCertificateBlock(field, caPEM)
	}
	for _, b := range blocks {
		if b.Type != blockCertificate {
			return nil, CAInfo{}, notACertificate(field, b)
		}
	}
	if len(blocks) > 1 {
		return nil, CAInfo{}, fieldError(field, "holds %d certificates; upload exactly one: create a certificate authority for each CA certificate", len(blocks))
	}
	c, err := x509.ParseCertificate(blocks[0].Bytes)
	if err != nil {
		return nil, CAInfo{}, fieldError(field, "certificate 1 (PEM block 1, line %d) cannot be parsed: %v; export it again", blocks[0].line, err)
	}
	name := bundleCerts{c}.ref(0)
	switch {
	case c.NotAfter.Before(c.NotBefore):
		return nil, CAInfo{}, fieldError(field, "%s is never valid: its not_after (%s) is before its not_before (%s); reissue it",
			name, c.NotAfter.UTC().Format(time.RFC3339), c.NotBefore.UTC().Format(time.RFC3339))
	case !c.BasicConstraintsValid || !c.IsCA:
		return nil, CAInfo{}, fieldError(field, "%s is not a CA: %s (RFC 5280 §4.2.1.9 requires cA=true for certificates that sign others)",
			name, basicConstraintsState(c))
	case c.KeyUsage != 0 && c.KeyUsage&x509.KeyUsageCertSign == 0:
		return nil, CAInfo{}, fieldError(field, "%s cannot sign certificates: its key usage extension lacks keyCertSign (RFC 5280 §4.2.1.3)", name)
	}
	return c, CAInfo{
		SubjectCommonName: c.Subject.CommonName,
		NotBefore:         c.NotBefore.UTC(),
		NotAfter:          c.NotAfter.UTC(),
		KeyUsages:         keyUsageNames(c.KeyUsage),
		ExtendedKeyUsages: extKeyUsageNames(c),
	}, nil
}
