package cert

import (
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"fmt"
	"strings"
)

// RSA key sizes accepted: Go refuses to sign with shorter keys than minRSABits, and Go TLS
// clients refuse server keys longer than maxRSABits (each handshake would be slow, too).
const (
	minRSABits = 1024
	maxRSABits = 8192
)

// encryptedKeyMsg is the refusal for a passphrase-protected key.
const encryptedKeyMsg = "the private key is encrypted; upload it decrypted (e.g. openssl pkey -in key.pem -out key-plain.pem)"

// parseUploadedKey parses private_key_pem: exactly one unencrypted RSA, ECDSA or Ed25519 key.
func parseUploadedKey(keyPEM []byte) (crypto.Signer, error) {
	const field = FieldPrivateKeyPEM
	if err := checkUploadSize(field, keyPEM, "the leaf certificate's private key as PEM"); err != nil {
		return nil, err
	}
	blocks, err := scanUploadPEM(field, keyPEM)
	if err != nil {
		return nil, err
	}
	var key crypto.Signer
	keyBlock := 0 // number of the block key came from
	for _, b := range blocks {
		if b.Type == "ENCRYPTED PRIVATE KEY" || strings.Contains(b.Headers["Proc-Type"], "ENCRYPTED") {
			return nil, fieldError(field, "%s", encryptedKeyMsg)
		}
		switch b.Type {
		case "EC PARAMETERS": // openssl ecparam -genkey writes it before the key
			continue
		case "PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY":
			if keyBlock != 0 {
				return nil, fieldError(field, "holds more than one private key (PEM blocks %d and %d); upload only the leaf certificate's private key", keyBlock, b.num)
			}
			k, err := parseKeyBlock(b.Block)
			if err != nil {
				return nil, fieldError(field, "PEM block %d (line %d, %q): %v", b.num, b.line, b.Type, err)
			}
			key, keyBlock = k, b.num
		case "OPENSSH PRIVATE KEY":
			return nil, fieldError(field, "%s is an OpenSSH private key; upload a PEM key in PKCS#8 (-----BEGIN PRIVATE KEY-----), PKCS#1 or SEC 1 form", b.where())
		case "DSA PRIVATE KEY":
			return nil, fieldError(field, "%s is a DSA key, which is not supported; use an RSA, ECDSA or Ed25519 key", b.where())
		case blockCertificate, "TRUSTED CERTIFICATE":
			return nil, fieldError(field, "%s is a certificate, not a private key; put the certificates in certificate_pem and only the leaf certificate's private key here", b.where())
		case "CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST":
			return nil, fieldError(field, "%s is a certificate signing request, not a private key; upload the private key it was generated with", b.where())
		case "PUBLIC KEY", "RSA PUBLIC KEY":
			return nil, fieldError(field, "%s is a public key (%q); upload the private key", b.where(), b.Type)
		default:
			if strings.HasSuffix(b.Type, "PRIVATE KEY") {
				return nil, fieldError(field, `%s is a %q block, which is not supported; upload a "PRIVATE KEY" (PKCS#8), "RSA PRIVATE KEY" (PKCS#1) or "EC PRIVATE KEY" (SEC 1) block`, b.where(), b.Type)
			}
			return nil, fieldError(field, "%s is a %q block, not a private key", b.where(), b.Type)
		}
	}
	if key == nil {
		if len(blocks) == 0 && isDERCert(keyPEM) {
			return nil, fieldError(field, "holds a DER (binary) certificate, not a private key; put the certificate in certificate_pem")
		}
		if len(blocks) == 0 && isDERKey(keyPEM) {
			return nil, fieldError(field, "no PEM private key block found: this looks like a DER (binary) key; convert it with: openssl pkey -inform der -in key.der -out key.pem")
		}
		return nil, fieldError(field, `no PEM private key block found; paste the key that starts with -----BEGIN PRIVATE KEY----- (or "RSA PRIVATE KEY", "EC PRIVATE KEY")`)
	}
	return key, nil
}

func isDERKey(data []byte) bool {
	_, err := parseKeyBlock(&pem.Block{Type: blockPrivateKey, Bytes: data})
	return err == nil
}

// parseKeyBlock parses the DER of a key block. Labels are often wrong (crypto/tls tries all
// three encodings for that reason), so a key in one of the other two encodings is accepted.
func parseKeyBlock(b *pem.Block) (crypto.Signer, error) {
	der := b.Bytes
	var parsed any
	var err error
	switch b.Type {
	case "RSA PRIVATE KEY":
		parsed, err = x509.ParsePKCS1PrivateKey(der)
	case "EC PRIVATE KEY":
		parsed, err = x509.ParseECPrivateKey(der)
	default:
		parsed, err = x509.ParsePKCS8PrivateKey(der)
	}
	if err != nil {
		if k, kerr := x509.ParsePKCS8PrivateKey(der); kerr == nil {
			parsed, err = k, nil
		} else if k, kerr := x509.ParseECPrivateKey(der); kerr == nil {
			parsed, err = k, nil
		} else if k, kerr := x509.ParsePKCS1PrivateKey(der); kerr == nil {
			parsed, err = k, nil
		}
	}
	if err != nil {
		return nil, explainKeyError(b.Type, der, err)
	}
	return tlsSigner(parsed)
}

// tlsSigner returns key if crypto/tls can sign handshakes with it.
func tlsSigner(key any) (crypto.Signer, error) {
	switch k := key.(type) {
	case *rsa.PrivateKey:
		if bits := k.N.BitLen(); bits < minRSABits {
			return nil, fmt.Errorf("the RSA key has %d bits; TLS needs at least %d (2048 or more is recommended)", bits, minRSABits)
		} else if bits > maxRSABits {
			return nil, fmt.Errorf("the RSA key has %d bits; at most %d are accepted (Go TLS clients refuse longer keys, and every handshake would be slow)", bits, maxRSABits)
		}
		return k, nil
	case *ecdsa.PrivateKey:
		switch k.Curve {
		case elliptic.P256(), elliptic.P384(), elliptic.P521():
			return k, nil
		}
		return nil, fmt.Errorf("ECDSA keys on curve %s cannot sign TLS handshakes; use P-256, P-384 or P-521", k.Curve.Params().Name)
	case ed25519.PrivateKey:
		return k, nil
	case *ecdh.PrivateKey:
		if k.Curve() == ecdh.X25519() {
			return nil, fmt.Errorf("X25519 keys only agree on keys and cannot sign; use an RSA, ECDSA or Ed25519 key")
		}
		return nil, fmt.Errorf("ECDH keys only agree on keys and cannot sign; use an RSA, ECDSA or Ed25519 key")
	default:
		return nil, fmt.Errorf("%T keys are not supported; use an RSA, ECDSA or Ed25519 key", key)
	}
}

// ASN.1 object identifiers of key algorithms and curves, to name what Go cannot parse.
var (
	oidKeyRSA     = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 1}
	oidKeyRSAPSS  = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 10}
	oidKeyDSA     = asn1.ObjectIdentifier{1, 2, 840, 10040, 4, 1}
	oidKeyEC      = asn1.ObjectIdentifier{1, 2, 840, 10045, 2, 1}
	oidKeyX25519  = asn1.ObjectIdentifier{1, 3, 101, 110}
	oidKeyX448    = asn1.ObjectIdentifier{1, 3, 101, 111}
	oidKeyEd25519 = asn1.ObjectIdentifier{1, 3, 101, 112}
	oidKeyEd448   = asn1.ObjectIdentifier{1, 3, 101, 113}
)

var keyAlgorithmNames = []struct {
	oid  asn1.ObjectIdentifier
	name string
}{
	{oidKeyRSAPSS, "RSASSA-PSS"},
	{oidKeyDSA, "DSA"},
	{oidKeyX448, "X448"},
	{oidKeyEd448, "Ed448"},
	{asn1.ObjectIdentifier{1, 2, 156, 10197, 1, 301}, "SM2"},
	{asn1.ObjectIdentifier{1, 2, 643, 7, 1, 1, 1, 1}, "GOST R 34.10-2012 (256-bit)"},
	{asn1.ObjectIdentifier{1, 2, 643, 7, 1, 1, 1, 2}, "GOST R 34.10-2012 (512-bit)"},
}

var curveNames = []struct {
	oid  asn1.ObjectIdentifier
	name string
}{
	{asn1.ObjectIdentifier{1, 3, 132, 0, 10}, "secp256k1"},
	{asn1.ObjectIdentifier{1, 2, 840, 10045, 3, 1, 1}, "P-192"},
	{asn1.ObjectIdentifier{1, 3, 132, 0, 33}, "P-224"},
	{asn1.ObjectIdentifier{1, 3, 36, 3, 3, 2, 8, 1, 1, 7}, "brainpoolP256r1"},
	{asn1.ObjectIdentifier{1, 3, 36, 3, 3, 2, 8, 1, 1, 11}, "brainpoolP384r1"},
	{asn1.ObjectIdentifier{1, 3, 36, 3, 3, 2, 8, 1, 1, 13}, "brainpoolP512r1"},
}

// pkcs8Envelope and sec1Envelope are the outer structures of PKCS#8 (RFC 5208) and SEC 1
// (RFC 5915) keys, enough to read which algorithm or curve a key uses.
type pkcs8Envelope struct {
	Version    int
	Algo       pkix.AlgorithmIdentifier
	PrivateKey []byte
}

type sec1Envelope struct {
	Version       int
	PrivateKey    []byte
	NamedCurveOID asn1.ObjectIdentifier `asn1:"optional,explicit,tag:0"`
}

// explainKeyError turns a key that none of Go's parsers accepted into a reason: an unsupported
// algorithm or curve by name, or damage.
func explainKeyError(blockType string, der []byte, err error) error {
	var p8 pkcs8Envelope
	if rest, perr := asn1.Unmarshal(der, &p8); perr == nil && len(rest) == 0 && len(p8.Algo.Algorithm) > 0 {
		alg := p8.Algo.Algorithm
		for _, a := range keyAlgorithmNames {
			if alg.Equal(a.oid) {
				return fmt.Errorf("%s keys are not supported; use an RSA, ECDSA (P-256, P-384, P-521) or Ed25519 key", a.name)
			}
		}
		if alg.Equal(oidKeyEC) {
			var curve asn1.ObjectIdentifier
			if _, cerr := asn1.Unmarshal(p8.Algo.Parameters.FullBytes, &curve); cerr == nil {
				if unsupported := curveError(curve); unsupported != nil {
					return unsupported
				}
			}
		}
		if !alg.Equal(oidKeyRSA) && !alg.Equal(oidKeyEC) && !alg.Equal(oidKeyEd25519) && !alg.Equal(oidKeyX25519) {
			return fmt.Errorf("keys with algorithm OID %s are not supported; use an RSA, ECDSA (P-256, P-384, P-521) or Ed25519 key", alg)
		}
	}
	var sec1 sec1Envelope
	if _, serr := asn1.Unmarshal(der, &sec1); serr == nil && len(sec1.NamedCurveOID) > 0 {
		if unsupported := curveError(sec1.NamedCurveOID); unsupported != nil {
			return unsupported
		}
	}
	format := map[string]string{
		"RSA PRIVATE KEY": "PKCS#1 RSA",
		"EC PRIVATE KEY":  "SEC 1 EC",
	}[blockType]
	if format == "" {
		format = "PKCS#8"
	}
	return fmt.Errorf("not a valid %s private key (%v); export the key again", format, err)
}

// curveError names an elliptic curve crypto/tls cannot use, or returns nil for one it can.
func curveError(oid asn1.ObjectIdentifier) error {
	for _, c := range curveNames {
		if oid.Equal(c.oid) {
			return fmt.Errorf("ECDSA keys on curve %s are not supported; use P-256, P-384 or P-521", c.name)
		}
	}
	for _, known := range []asn1.ObjectIdentifier{
		{1, 2, 840, 10045, 3, 1, 7}, // P-256
		{1, 3, 132, 0, 34},          // P-384
		{1, 3, 132, 0, 35},          // P-521
	} {
		if oid.Equal(known) {
			return nil
		}
	}
	return fmt.Errorf("ECDSA keys on the curve with OID %s are not supported; use P-256, P-384 or P-521", oid)
}

// privateKeyType is CertInfo.PrivateKeyType for key.
func privateKeyType(key crypto.Signer) string {
	switch key.(type) {
	case *rsa.PrivateKey:
		return "rsa"
	case *ecdsa.PrivateKey:
		return "ecdsa"
	case ed25519.PrivateKey:
		return "ed25519"
	default:
		return "unknown"
	}
}

// describePublicKey names a public key's type in errors: "an ECDSA P-256 key".
func describePublicKey(pub crypto.PublicKey) string {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return fmt.Sprintf("an RSA %d-bit key", k.N.BitLen())
	case *ecdsa.PublicKey:
		return fmt.Sprintf("an ECDSA %s key", k.Curve.Params().Name)
	case ed25519.PublicKey:
		return "an Ed25519 key"
	case *ecdh.PublicKey:
		return "an ECDH key"
	default:
		return fmt.Sprintf("a %T key", pub)
	}
}
