package cert

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"time"
)

// Bundle is an uploaded TLS certificate: a certificate bundle and its private key, checked by
// ParseBundle.
type Bundle struct {
	// Certificate is ready for tls.Config.Certificates: the leaf, then Chain, as uploaded
	// (including the root if the bundle had one), the private key and Leaf.
	Certificate tls.Certificate
	Leaf        *x509.Certificate
	Chain       []*x509.Certificate // the certificates after the leaf, in bundle order
	Info        CertInfo
}

// CertInfo describes an uploaded certificate's leaf, with the fields and JSON names of
// ngrok's tls_certificates API resource.
type CertInfo struct {
	SubjectCommonName       string    `json:"subject_common_name"`
	SubjectAlternativeNames CertSANs  `json:"subject_alternative_names"`
	NotBefore               time.Time `json:"not_before"`
	NotAfter                time.Time `json:"not_after"`
	// KeyUsages are RFC 5280 §4.2.1.3 key usages in snake case: "digital_signature",
	// "content_commitment", "key_encipherment", "data_encipherment", "key_agreement",
	// "cert_sign", "crl_sign", "encipher_only", "decipher_only".
	KeyUsages []string `json:"key_usages"`
	// ExtendedKeyUsages are "server_auth", "client_auth", "code_signing", "email_protection",
	// "time_stamping", "ocsp_signing", "any", ... and the dotted OID of any other usage.
	ExtendedKeyUsages []string `json:"extended_key_usages"`
	// PrivateKeyType is "rsa", "ecdsa" or "ed25519".
	PrivateKeyType   string `json:"private_key_type"`
	IssuerCommonName string `json:"issuer_common_name"`
	// SerialNumber is the serial number's big-endian bytes in lower-case hex without
	// separators, e.g. "0a3f..." (an even number of digits, as browsers show it).
	SerialNumber string `json:"serial_number"`
	// The subject's first organization, organizational unit, locality, province and
	// country, or "".
	SubjectOrganization       string `json:"subject_organization"`
	SubjectOrganizationalUnit string `json:"subject_organizational_unit"`
	SubjectLocality           string `json:"subject_locality"`
	SubjectProvince           string `json:"subject_province"`
	SubjectCountry            string `json:"subject_country"`
}

// CertSANs are a leaf's subject alternative names. Both lists are non-nil, so they encode as
// JSON arrays.
type CertSANs struct {
	DNSNames []string `json:"dns_names"`
	IPs      []string `json:"ips"`
}

// ParseBundle checks an uploaded certificate bundle and private key, and returns them ready
// for use, as ngrok's tls_certificates upload does:
//
//   - certPEM holds 1 to MaxBundleCerts CERTIFICATE blocks: the leaf first, then the
//     intermediates, each signed by the next (the signature is verified, and each signer must
//     be a CA: cA=true, RFC 5280 §4.2.1.9, with pathLenConstraint respected). The root is
//     optional: a self-signed last certificate is fine, and none is needed.
//   - keyPEM holds one unencrypted private key matching the leaf: RSA (PKCS#1 "RSA PRIVATE
//     KEY" or PKCS#8 "PRIVATE KEY"), ECDSA P-256/P-384/P-521 (SEC 1 "EC PRIVATE KEY" or
//     PKCS#8) or Ed25519 (PKCS#8). An "EC PARAMETERS" block beside it is ignored.
//   - Text before a PEM block is ignored; text after the last one, damaged blocks and blocks
//     of another type are refused. Each field is at most MaxUploadPEMSize bytes.
//
// Expired certificates are accepted (Info reports NotAfter); one whose validity period is
// inverted is not. Errors are *BundleError and name the field, the certificate by position
// and subject, and the reason, e.g.
//
//	certificate_pem: certificate 2 of 3 (CN=Example Intermediate) did not sign certificate 1 (CN=www.example.com): x509: ECDSA verification failure; ...
func ParseBundle(certPEM, keyPEM []byte) (*Bundle, error) {
	certs, err := parseBundleCerts(certPEM)
	if err != nil {
		return nil, err
	}
	key, err := parseUploadedKey(keyPEM)
	if err != nil {
		return nil, err
	}
	if err := checkLeafKey(certs, key); err != nil {
		return nil, err
	}
	if err := checkChain(certs); err != nil {
		return nil, err
	}

	leaf := certs[0]
	b := &Bundle{
		Certificate: tls.Certificate{PrivateKey: key, Leaf: leaf},
		Leaf:        leaf,
		Chain:       certs[1:],
		Info:        certInfo(leaf, key),
	}
	for _, c := range certs {
		b.Certificate.Certificate = append(b.Certificate.Certificate, c.Raw)
	}
	return b, nil
}

// CertPEM returns the leaf and Chain as concatenated CERTIFICATE blocks, without any text
// the upload had around them.
func (b *Bundle) CertPEM() []byte {
	var out []byte
	for _, c := range append([]*x509.Certificate{b.Leaf}, b.Chain...) {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: blockCertificate, Bytes: c.Raw})...)
	}
	return out
}

// KeyPEM returns the private key as a PKCS#8 "PRIVATE KEY" block, whatever encoding was
// uploaded: what the store seals with Keybox.Seal. It returns nil only if
// Certificate.PrivateKey is not an RSA, ECDSA or Ed25519 key, which never happens for a
// Bundle from ParseBundle.
func (b *Bundle) KeyPEM() []byte {
	der, err := x509.MarshalPKCS8PrivateKey(b.Certificate.PrivateKey)
	if err != nil {
		return nil
	}
	return pem.EncodeToMemory(&pem.Block{Type: blockPrivateKey, Bytes: der})
}

// bundleCerts names certificate i (0-based) of a bundle of n in errors: "certificate 2 of 3
// (CN=Example Intermediate)" on first mention (pos), "certificate 1 (CN=www.example.com)"
// after that (ref).
type bundleCerts []*x509.Certificate

func (cs bundleCerts) pos(i int) string {
	if len(cs) == 1 {
		return cs.ref(i)
	}
	return fmt.Sprintf("certificate %d of %d (%s)", i+1, len(cs), certName(cs[i]))
}

func (cs bundleCerts) ref(i int) string {
	return fmt.Sprintf("certificate %d (%s)", i+1, certName(cs[i]))
}

// certName names a certificate in errors: "CN=www.example.com", else its whole subject.
func certName(c *x509.Certificate) string {
	switch {
	case c.Subject.CommonName != "":
		return "CN=" + uploadText(c.Subject.CommonName)
	case c.Subject.String() != "":
		return uploadText(c.Subject.String())
	default:
		return "empty subject"
	}
}

// parseBundleCerts parses the CERTIFICATE blocks of certificate_pem.
func parseBundleCerts(certPEM []byte) (bundleCerts, error) {
	const field = FieldCertificatePEM
	if err := checkUploadSize(field, certPEM, "the certificate bundle as PEM: the leaf certificate first, then its intermediates"); err != nil {
		return nil, err
	}
	blocks, err := scanUploadPEM(field, certPEM)
	if err != nil {
		return nil, err
	}
	if len(blocks) == 0 {
		return nil, noCertificateBlock(field, certPEM)
	}
	for _, b := range blocks {
		if b.Type != blockCertificate {
			return nil, notACertificate(field, b)
		}
	}
	if len(blocks) > MaxBundleCerts {
		return nil, fieldError(field, "the bundle holds %d certificates; at most %d are accepted: the leaf, its intermediates and optionally the root", len(blocks), MaxBundleCerts)
	}
	certs := make(bundleCerts, 0, len(blocks))
	for i, b := range blocks {
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fieldError(field, "certificate %d of %d (PEM block %d, line %d) cannot be parsed: %v; export it again", i+1, len(blocks), b.num, b.line, err)
		}
		certs = append(certs, c)
	}
	for i, c := range certs {
		if c.NotAfter.Before(c.NotBefore) {
			return nil, fieldError(field, "%s is never valid: its not_after (%s) is before its not_before (%s); reissue it",
				certs.pos(i), c.NotAfter.UTC().Format(time.RFC3339), c.NotBefore.UTC().Format(time.RFC3339))
		}
	}
	return certs, nil
}

// checkLeafKey checks that the private key belongs to the first certificate.
func checkLeafKey(certs bundleCerts, key crypto.Signer) error {
	const field = FieldCertificatePEM
	const leafFirst = "the bundle must start with the leaf certificate for private_key_pem"
	if publicKeyEqual(certs[0].PublicKey, key.Public()) {
		return nil
	}
	for i := 1; i < len(certs); i++ {
		if publicKeyEqual(certs[i].PublicKey, key.Public()) {
			return fieldError(field, "%s does not match the private key, which belongs to %s; %s, followed by its intermediates",
				certs.pos(0), certs.ref(i), leafFirst)
		}
	}
	certKey, privKey := describePublicKey(certs[0].PublicKey), describePublicKey(key.Public())
	if certKey != privKey {
		return fieldError(field, "%s does not match the private key: the certificate holds %s, private_key_pem %s; %s",
			certs.pos(0), certKey, privKey, leafFirst)
	}
	return fieldError(field, "%s does not match the private key; %s", certs.pos(0), leafFirst)
}

// checkChain checks that each certificate after the first signed the one before it.
func checkChain(certs bundleCerts) error {
	const field = FieldCertificatePEM
	for i := 0; i+1 < len(certs); i++ {
		child, parent := certs[i], certs[i+1]
		err := parent.CheckSignature(child.SignatureAlgorithm, child.RawTBSCertificate, child.Signature)
		var insecure x509.InsecureAlgorithmError
		switch {
		case errors.As(err, &insecure):
			return fieldError(field, "%s is signed with %v, which TLS clients refuse as insecure; have it reissued with SHA-256 or better",
				certs.pos(i), x509.SignatureAlgorithm(insecure))
		case errors.Is(err, x509.ErrUnsupportedAlgorithm):
			return fieldError(field, "%s is signed with %v, which is not supported: %v", certs.pos(i), child.SignatureAlgorithm, err)
		case err != nil:
			return fieldError(field, "%s did not sign %s: %v%s", certs.pos(i+1), certs.ref(i), err, orderHint(certs, i))
		}
		if !parent.BasicConstraintsValid || !parent.IsCA {
			return fieldError(field, "%s is not a CA: %s (RFC 5280 §4.2.1.9 requires cA=true for certificates that sign others), so it cannot sign %s",
				certs.pos(i+1), basicConstraintsState(parent), certs.ref(i))
		}
		if parent.KeyUsage != 0 && parent.KeyUsage&x509.KeyUsageCertSign == 0 {
			return fieldError(field, "%s cannot sign %s: its key usage extension lacks keyCertSign (RFC 5280 §4.2.1.3)", certs.pos(i+1), certs.ref(i))
		}
		if err := child.CheckSignatureFrom(parent); err != nil { // anything else x509 refuses
			return fieldError(field, "%s cannot sign %s: %v", certs.pos(i+1), certs.ref(i), err)
		}
		// pathLenConstraint: how many intermediates may sit between parent and the leaf.
		if below := i; parent.MaxPathLen >= 0 && below > parent.MaxPathLen {
			return fieldError(field, "%s allows at most %d intermediate certificates below it (pathLenConstraint, RFC 5280 §4.2.1.9), but the bundle puts %d below it",
				certs.pos(i+1), parent.MaxPathLen, below)
		}
	}
	return nil
}

// orderHint says which certificate of the bundle did sign certificate i, or which issuer
// certificate i names, after certificate i+1 was found not to have signed it.
func orderHint(certs bundleCerts, i int) string {
	child := certs[i]
	for j, c := range certs {
		if j == i || j == i+1 {
			continue
		}
		if c.CheckSignature(child.SignatureAlgorithm, child.RawTBSCertificate, child.Signature) == nil {
			return fmt.Sprintf("; %s did: order the bundle leaf first, then each certificate's issuer in turn", certs.ref(j))
		}
	}
	issuer := child.Issuer.String()
	if child.Issuer.CommonName != "" {
		issuer = "CN=" + child.Issuer.CommonName
	}
	return fmt.Sprintf("; certificate %d names %s as its issuer: put that certificate right after it", i+1, uploadText(issuer))
}

// basicConstraintsState describes why c is not a CA.
func basicConstraintsState(c *x509.Certificate) string {
	if !c.BasicConstraintsValid {
		return "it has no basic constraints extension"
	}
	return "basic constraints cA=false"
}

// certInfo describes leaf for the API.
func certInfo(leaf *x509.Certificate, key crypto.Signer) CertInfo {
	info := CertInfo{
		SubjectCommonName:       leaf.Subject.CommonName,
		SubjectAlternativeNames: CertSANs{DNSNames: append([]string{}, leaf.DNSNames...), IPs: []string{}},
		NotBefore:               leaf.NotBefore.UTC(),
		NotAfter:                leaf.NotAfter.UTC(),
		KeyUsages:               keyUsageNames(leaf.KeyUsage),
		ExtendedKeyUsages:       extKeyUsageNames(leaf),
		PrivateKeyType:          privateKeyType(key),
		IssuerCommonName:        leaf.Issuer.CommonName,
		SerialNumber:            serialHex(leaf),
		SubjectOrganization:     firstOf(leaf.Subject.Organization),
		SubjectLocality:         firstOf(leaf.Subject.Locality),
		SubjectProvince:         firstOf(leaf.Subject.Province),
		SubjectCountry:          firstOf(leaf.Subject.Country),
	}
	info.SubjectOrganizationalUnit = firstOf(leaf.Subject.OrganizationalUnit)
	for _, ip := range leaf.IPAddresses {
		info.SubjectAlternativeNames.IPs = append(info.SubjectAlternativeNames.IPs, ip.String())
	}
	return info
}

func firstOf(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}

func serialHex(c *x509.Certificate) string {
	if c.SerialNumber == nil || c.SerialNumber.Sign() == 0 {
		return "00"
	}
	return hex.EncodeToString(c.SerialNumber.Bytes())
}

var keyUsageNameList = []struct {
	usage x509.KeyUsage
	name  string
}{
	{x509.KeyUsageDigitalSignature, "digital_signature"},
	{x509.KeyUsageContentCommitment, "content_commitment"},
	{x509.KeyUsageKeyEncipherment, "key_encipherment"},
	{x509.KeyUsageDataEncipherment, "data_encipherment"},
	{x509.KeyUsageKeyAgreement, "key_agreement"},
	{x509.KeyUsageCertSign, "cert_sign"},
	{x509.KeyUsageCRLSign, "crl_sign"},
	{x509.KeyUsageEncipherOnly, "encipher_only"},
	{x509.KeyUsageDecipherOnly, "decipher_only"},
}

// keyUsageNames lists the key usages set in ku, in RFC 5280 bit order; never nil.
func keyUsageNames(ku x509.KeyUsage) []string {
	names := []string{}
	for _, u := range keyUsageNameList {
		if ku&u.usage != 0 {
			names = append(names, u.name)
		}
	}
	return names
}

var extKeyUsageNameMap = map[x509.ExtKeyUsage]string{
	x509.ExtKeyUsageAny:                            "any",
	x509.ExtKeyUsageServerAuth:                     "server_auth",
	x509.ExtKeyUsageClientAuth:                     "client_auth",
	x509.ExtKeyUsageCodeSigning:                    "code_signing",
	x509.ExtKeyUsageEmailProtection:                "email_protection",
	x509.ExtKeyUsageIPSECEndSystem:                 "ipsec_end_system",
	x509.ExtKeyUsageIPSECTunnel:                    "ipsec_tunnel",
	x509.ExtKeyUsageIPSECUser:                      "ipsec_user",
	x509.ExtKeyUsageTimeStamping:                   "time_stamping",
	x509.ExtKeyUsageOCSPSigning:                    "ocsp_signing",
	x509.ExtKeyUsageMicrosoftServerGatedCrypto:     "microsoft_server_gated_crypto",
	x509.ExtKeyUsageNetscapeServerGatedCrypto:      "netscape_server_gated_crypto",
	x509.ExtKeyUsageMicrosoftCommercialCodeSigning: "microsoft_commercial_code_signing",
	x509.ExtKeyUsageMicrosoftKernelCodeSigning:     "microsoft_kernel_code_signing",
}

// extKeyUsageNames lists c's extended key usages in certificate order, unknown ones as dotted
// OIDs; never nil.
func extKeyUsageNames(c *x509.Certificate) []string {
	names := []string{}
	for _, u := range c.ExtKeyUsage {
		if n, ok := extKeyUsageNameMap[u]; ok {
			names = append(names, n)
		} else {
			names = append(names, fmt.Sprintf("unknown_%d", u))
		}
	}
	for _, oid := range c.UnknownExtKeyUsage {
		names = append(names, oid.String())
	}
	return names
}
