package cert

import (
	"bytes"
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"slices"
	"strings"
	"testing"
	"time"
)

// handshake serves c to a client that trusts only roots and checks serverName, over an
// in-memory connection.
func handshake(t *testing.T, c tls.Certificate, roots *x509.CertPool, serverName string) error {
	t.Helper()
	sconn, cconn := net.Pipe()
	defer func() { _ = sconn.Close() }()
	defer func() { _ = cconn.Close() }()
	deadline := time.Now().Add(10 * time.Second)
	_ = sconn.SetDeadline(deadline)
	_ = cconn.SetDeadline(deadline)
	served := make(chan error, 1)
	go func() {
		srv := tls.Server(sconn, &tls.Config{Certificates: []tls.Certificate{c}})
		served <- srv.Handshake()
		_ = srv.Close()
	}()
	err := tls.Client(cconn, &tls.Config{RootCAs: roots, ServerName: serverName}).Handshake()
	_ = cconn.Close()
	if serr := <-served; err == nil && serr != nil {
		err = serr
	}
	return err
}

func TestParseBundleKeyEncodings(t *testing.T) {
	pki := newTestPKI(t)
	roots := x509.NewCertPool()
	roots.AddCert(pki.root)
	ecKey, edKey, rsaKey := newECKey(t), newEd25519Key(t), uploadRSAKey()
	ecParams := pem.EncodeToMemory(&pem.Block{Type: "EC PARAMETERS", Bytes: []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07}})

	tests := []struct {
		name     string
		key      crypto.Signer
		keyPEM   []byte
		wantType string
	}{
		{"RSA PKCS#1", rsaKey, pemKey(t, rsaKey, "pkcs1"), "rsa"},
		{"RSA PKCS#8", rsaKey, pemKey(t, rsaKey, "pkcs8"), "rsa"},
		{"ECDSA SEC 1", ecKey, pemKey(t, ecKey, "sec1"), "ecdsa"},
		{"ECDSA PKCS#8", ecKey, pemKey(t, ecKey, "pkcs8"), "ecdsa"},
		{"Ed25519 PKCS#8", edKey, pemKey(t, edKey, "pkcs8"), "ed25519"},
		{"ECDSA SEC 1 after EC PARAMETERS", ecKey, append(ecParams, pemKey(t, ecKey, "sec1")...), "ecdsa"},
		{"PKCS#8 mislabelled RSA PRIVATE KEY", ecKey, bytes.Replace(pemKey(t, ecKey, "pkcs8"), []byte(" PRIVATE KEY"), []byte(" RSA PRIVATE KEY"), 2), "ecdsa"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			leaf := pki.leaf(t, tt.key, nil)
			b, err := ParseBundle(pemCerts(leaf, pki.inter), tt.keyPEM)
			if err != nil {
				t.Fatalf("ParseBundle: %v", err)
			}
			if got := b.Info.PrivateKeyType; got != tt.wantType {
				t.Errorf("PrivateKeyType = %q, want %q", got, tt.wantType)
			}
			signer, ok := b.Certificate.PrivateKey.(crypto.Signer)
			if !ok || !publicKeyEqual(signer.Public(), tt.key.Public()) {
				t.Errorf("Certificate.PrivateKey = %T, want the uploaded key", b.Certificate.PrivateKey)
			}
			if b.Certificate.Leaf != b.Leaf || !bytes.Equal(b.Leaf.Raw, leaf.Raw) {
				t.Error("Leaf / Certificate.Leaf is not the uploaded leaf")
			}
			if err := handshake(t, b.Certificate, roots, "www.example.com"); err != nil {
				t.Errorf("TLS handshake with the bundle: %v", err)
			}
		})
	}
}

func TestParseBundleChains(t *testing.T) {
	pki := newTestPKI(t)
	key := newECKey(t)
	keyPEM := pemKey(t, key, "pkcs8")
	leaf := pki.leaf(t, key, nil)
	selfSigned := makeCert(t, serverTmpl("self.example.com"), key.Public(), nil, key)
	past := time.Now().Add(-48 * time.Hour)
	expired := pki.leaf(t, key, func(c *x509.Certificate) { c.NotBefore, c.NotAfter = past.Add(-time.Hour), past })
	withText := append([]byte("subject=CN=www.example.com\nissuer=CN=Example Intermediate\n"), pemCerts(leaf)...)
	withText = append(append(withText, "Bag Attributes\n    friendlyName: intermediate\n"...), pemCerts(pki.inter)...)
	crlf := func(b []byte) []byte { return bytes.ReplaceAll(b, []byte("\n"), []byte("\r\n")) }

	tests := []struct {
		name      string
		certPEM   []byte
		keyPEM    []byte
		wantChain int
	}{
		{"leaf, intermediate, root", pemCerts(leaf, pki.inter, pki.root), keyPEM, 2},
		{"leaf, intermediate", pemCerts(leaf, pki.inter), keyPEM, 1},
		{"leaf alone", pemCerts(leaf), keyPEM, 0},
		{"self-signed leaf", pemCerts(selfSigned), keyPEM, 0},
		{"expired leaf", pemCerts(expired, pki.inter), keyPEM, 1},
		{"openssl text before blocks", withText, keyPEM, 1},
		{"indented (copied from YAML)", bytes.ReplaceAll(pemCerts(leaf, pki.inter), []byte("\n"), []byte("\n    ")), bytes.ReplaceAll(keyPEM, []byte("\n"), []byte("\n\t")), 1},
		{"CRLF line ends", crlf(pemCerts(leaf, pki.inter)), crlf(keyPEM), 1},
		{"surrounding white space", append(append([]byte("\n\n  "), pemCerts(leaf, pki.inter)...), "\n\n\t\n"...), append(keyPEM, "  \n"...), 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := ParseBundle(tt.certPEM, tt.keyPEM)
			if err != nil {
				t.Fatalf("ParseBundle: %v", err)
			}
			if len(b.Chain) != tt.wantChain || len(b.Certificate.Certificate) != tt.wantChain+1 {
				t.Errorf("len(Chain) = %d, len(Certificate.Certificate) = %d, want %d, %d", len(b.Chain), len(b.Certificate.Certificate), tt.wantChain, tt.wantChain+1)
			}
			for i, c := range b.Chain {
				if !bytes.Equal(b.Certificate.Certificate[i+1], c.Raw) {
					t.Errorf("Certificate.Certificate[%d] is not Chain[%d]", i+1, i)
				}
			}
		})
	}
	b, err := ParseBundle(pemCerts(expired), keyPEM)
	if err != nil {
		t.Fatalf("ParseBundle(expired): %v", err)
	}
	if !b.Info.NotAfter.Equal(past.Truncate(time.Second)) {
		t.Errorf("expired Info.NotAfter = %v, want %v", b.Info.NotAfter, past.Truncate(time.Second))
	}
}

func TestParseBundleRefusals(t *testing.T) {
	const C, K = FieldCertificatePEM, FieldPrivateKeyPEM
	pki := newTestPKI(t)
	key := newECKey(t)
	keyPEM := pemKey(t, key, "pkcs8")
	leaf := pki.leaf(t, key, nil)
	good := pemCerts(leaf, pki.inter)

	// An intermediate with the same name that did not sign the leaf.
	otherKey := newECKey(t)
	otherInter := makeCert(t, caTmpl("Other Intermediate"), otherKey.Public(), pki.root, pki.rootKey)
	// A non-CA "intermediate" that signed a leaf.
	nonCAKey := newECKey(t)
	nonCATmpl := serverTmpl("Not A CA")
	nonCATmpl.KeyUsage |= x509.KeyUsageCertSign
	nonCA := makeCert(t, nonCATmpl, nonCAKey.Public(), pki.root, pki.rootKey)
	leafOfNonCA := makeCert(t, serverTmpl("www.example.com"), key.Public(), nonCA, nonCAKey)
	// An intermediate whose key usage lacks keyCertSign.
	noSignKey := newECKey(t)
	noSignTmpl := caTmpl("No CertSign Intermediate")
	noSignTmpl.KeyUsage = x509.KeyUsageDigitalSignature
	noSign := makeCert(t, noSignTmpl, noSignKey.Public(), pki.root, pki.rootKey)
	leafOfNoSign := makeCert(t, serverTmpl("www.example.com"), key.Public(), noSign, noSignKey)
	// A root that allows no intermediate below it, with an intermediate below it.
	strictKey, strictInterKey := newECKey(t), newECKey(t)
	strictTmpl := caTmpl("Strict Root")
	strictTmpl.MaxPathLenZero = true
	strictRoot := makeCert(t, strictTmpl, strictKey.Public(), nil, strictKey)
	strictInter := makeCert(t, caTmpl("Strict Intermediate"), strictInterKey.Public(), strictRoot, strictKey)
	leafOfStrict := makeCert(t, serverTmpl("www.example.com"), key.Public(), strictInter, strictInterKey)
	// A leaf whose validity period is inverted.
	now := time.Now()
	inverted := pki.leaf(t, key, func(c *x509.Certificate) { c.NotBefore, c.NotAfter = now.Add(time.Hour), now.Add(-time.Hour) })
	// A leaf with an RSA key.
	rsaKey := uploadRSAKey()
	rsaLeaf := pki.leaf(t, rsaKey, nil)

	damagedDER := bytes.Clone(leaf.Raw)
	damagedDER[len(damagedDER)/3] ^= 0xff
	damaged := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: damagedDER[:len(damagedDER)/2]})
	truncated := good[:len(good)-40]
	twelve := bytes.Repeat(pemCerts(pki.inter), MaxBundleCerts+2)
	big := bytes.Repeat([]byte("A"), MaxUploadPEMSize+1)
	otherECKey := newECKey(t)
	afterGood := fmt.Sprintf("line %d", bytes.Count(good, []byte("\n"))+1)           // first line after the bundle
	afterLeaf := fmt.Sprintf("line %d", bytes.Count(pemCerts(leaf), []byte("\n"))+1) // first line after the leaf

	// Keys that must be refused.
	legacyEncrypted := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Headers: map[string]string{
		"Proc-Type": "4,ENCRYPTED", "DEK-Info": "AES-256-CBC,00112233445566778899AABBCCDDEEFF",
	}, Bytes: bytes.Repeat([]byte{0x42}, 128)})
	pkcs8Encrypted := pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: bytes.Repeat([]byte{0x42}, 128)})
	x25519, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	x25519DER, err := x509.MarshalPKCS8PrivateKey(x25519)
	if err != nil {
		t.Fatal(err)
	}
	p224, err := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8Of := func(oid asn1.ObjectIdentifier) []byte {
		der, err := asn1.Marshal(pkcs8Envelope{Algo: pkix.AlgorithmIdentifier{Algorithm: oid}, PrivateKey: []byte{0x02, 0x01, 0x05}})
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	}
	secp256k1, err := asn1.Marshal(sec1Envelope{Version: 1, PrivateKey: bytes.Repeat([]byte{1}, 32), NamedCurveOID: asn1.ObjectIdentifier{1, 3, 132, 0, 10}})
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		certPEM []byte
		keyPEM  []byte
		field   string
		want    []string
	}{
		// certificate_pem: shape.
		{"empty bundle", nil, keyPEM, C, []string{"empty; paste the certificate bundle"}},
		{"blank bundle", []byte(" \n\t\n"), keyPEM, C, []string{"empty"}},
		{"garbage bundle", []byte("hello, world"), keyPEM, C, []string{`no PEM "CERTIFICATE" block found`}},
		{"DER bundle", leaf.Raw, keyPEM, C, []string{`no PEM "CERTIFICATE" block found`, "DER", "openssl x509 -inform der"}},
		{"base64 without PEM lines", []byte(base64.StdEncoding.EncodeToString(leaf.Raw)), keyPEM, C, []string{"base64 certificate without its -----BEGIN CERTIFICATE-----"}},
		{"trailing garbage", append(bytes.Clone(good), "garbage\n"...), keyPEM, C, []string{"unexpected text after the last PEM block, at " + afterGood + `: "garbage"`}},
		{"truncated last block", truncated, keyPEM, C, []string{"PEM block 2 (" + afterLeaf + ") is damaged or incomplete"}},
		{"damaged first block", append([]byte("-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n"), good...), keyPEM, C, []string{"PEM block 1 (line 1) is damaged"}},
		{"key in the bundle", append(bytes.Clone(good), keyPEM...), keyPEM, C, []string{"PEM block 3 (" + afterGood + `) is a private key ("PRIVATE KEY")`, "belongs in private_key_pem"}},
		{"BEGIN line not at a line start", append([]byte("leaf: -----BEGIN CERTIFICATE-----\n"), good...), keyPEM, C, []string{"PEM text at line 1", "is damaged: a -----BEGIN or -----END line without its partner"}},
		{"stray END line", append(append(pemCerts(leaf), "-----END CERTIFICATE-----\n"...), pemCerts(pki.inter)...), keyPEM, C, []string{"PEM text at " + afterLeaf + ` ("-----END CERTIFICATE-----") is damaged`}},
		{"CSR in the bundle", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: []byte{1}}), keyPEM, C, []string{"PEM block 1 (line 1) is a certificate signing request"}},
		{"other block in the bundle", append(bytes.Clone(good), pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: []byte{1}})...), keyPEM, C, []string{`PEM block 3`, `"X509 CRL" block, not a "CERTIFICATE"`}},
		{"damaged certificate", damaged, keyPEM, C, []string{"certificate 1 of 1 (PEM block 1, line 1) cannot be parsed"}},
		{"too many certificates", append(pemCerts(leaf), twelve...), keyPEM, C, []string{"holds 13 certificates; at most 10"}},
		{"oversized bundle", big, keyPEM, C, []string{"262145 bytes is too large; at most 262144 bytes (256 KiB)"}},

		// certificate_pem: order, chain and key match.
		{"wrong order", pemCerts(pki.inter, leaf), keyPEM, C, []string{"certificate 1 of 2 (CN=Example Intermediate) does not match the private key, which belongs to certificate 2 (CN=www.example.com)", "the bundle must start with the leaf certificate for private_key_pem"}},
		{"key mismatch", good, pemKey(t, otherECKey, "sec1"), C, []string{"certificate 1 of 2 (CN=www.example.com) does not match the private key; the bundle must start with the leaf certificate for private_key_pem"}},
		{"key type mismatch", pemCerts(rsaLeaf, pki.inter), keyPEM, C, []string{"certificate 1 of 2 (CN=www.example.com) does not match the private key: the certificate holds an RSA 2048-bit key, private_key_pem an ECDSA P-256 key"}},
		{"intermediate did not sign the leaf", pemCerts(leaf, otherInter, pki.root), keyPEM, C, []string{"certificate 2 of 3 (CN=Other Intermediate) did not sign certificate 1 (CN=www.example.com): x509:", "certificate 1 names CN=Example Intermediate as its issuer"}},
		{"root before intermediate", pemCerts(leaf, pki.root, pki.inter), keyPEM, C, []string{"certificate 2 of 3 (CN=Example Root) did not sign certificate 1 (CN=www.example.com)", "certificate 3 (CN=Example Intermediate) did: order the bundle leaf first"}},
		{"non-CA intermediate", pemCerts(leafOfNonCA, nonCA), keyPEM, C, []string{"certificate 2 of 2 (CN=Not A CA) is not a CA: basic constraints cA=false (RFC 5280 §4.2.1.9 requires cA=true for certificates that sign others), so it cannot sign certificate 1 (CN=www.example.com)"}},
		{"intermediate without keyCertSign", pemCerts(leafOfNoSign, noSign), keyPEM, C, []string{"certificate 2 of 2 (CN=No CertSign Intermediate) cannot sign certificate 1 (CN=www.example.com): its key usage extension lacks keyCertSign (RFC 5280 §4.2.1.3)"}},
		{"path length exceeded", pemCerts(leafOfStrict, strictInter, strictRoot), keyPEM, C, []string{"certificate 3 of 3 (CN=Strict Root) allows at most 0 intermediate certificates below it (pathLenConstraint"}},
		{"inverted validity", pemCerts(inverted, pki.inter), keyPEM, C, []string{"certificate 1 of 2 (CN=www.example.com) is never valid: its not_after", "is before its not_before"}},

		// private_key_pem.
		{"empty key", good, nil, K, []string{"empty; paste the leaf certificate's private key"}},
		{"garbage key", good, []byte("not a key"), K, []string{"no PEM private key block found"}},
		{"DER key", good, func() []byte { b, _ := pem.Decode(keyPEM); return b.Bytes }(), K, []string{"DER (binary) key", "openssl pkey -inform der"}},
		{"encrypted PKCS#8 key", good, pkcs8Encrypted, K, []string{encryptedKeyMsg}},
		{"legacy encrypted key", good, legacyEncrypted, K, []string{encryptedKeyMsg}},
		{"two keys", good, append(bytes.Clone(keyPEM), pemKey(t, otherECKey, "sec1")...), K, []string{"holds more than one private key (PEM blocks 1 and 2)"}},
		{"certificate in the key field", good, pemCerts(leaf), K, []string{"PEM block 1 (line 1) is a certificate, not a private key"}},
		{"DER certificate in the key field", good, leaf.Raw, K, []string{"DER (binary) certificate, not a private key"}},
		{"public key", good, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte{1}}), K, []string{"is a public key"}},
		{"OpenSSH key", good, pem.EncodeToMemory(&pem.Block{Type: "OPENSSH PRIVATE KEY", Bytes: []byte{1}}), K, []string{"is an OpenSSH private key"}},
		{"DSA PEM key", good, pem.EncodeToMemory(&pem.Block{Type: "DSA PRIVATE KEY", Bytes: []byte{1}}), K, []string{"is a DSA key, which is not supported"}},
		{"DSA PKCS#8 key", good, pkcs8Of(asn1.ObjectIdentifier{1, 2, 840, 10040, 4, 1}), K, []string{"DSA keys are not supported"}},
		{"Ed448 PKCS#8 key", good, pkcs8Of(asn1.ObjectIdentifier{1, 3, 101, 113}), K, []string{"Ed448 keys are not supported"}},
		{"unknown PKCS#8 algorithm", good, pkcs8Of(asn1.ObjectIdentifier{1, 2, 3, 4}), K, []string{"algorithm OID 1.2.3.4 are not supported"}},
		{"X25519 key", good, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: x25519DER}), K, []string{"X25519 keys only agree on keys and cannot sign"}},
		{"P-224 key", good, pemKey(t, p224, "sec1"), K, []string{"curve P-224 cannot sign TLS handshakes"}},
		{"secp256k1 key", good, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: secp256k1}), K, []string{"curve secp256k1 are not supported"}},
		{"damaged key", good, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: []byte{0x30, 0x03, 0x02, 0x01, 0x00}}), K, []string{`PEM block 1 (line 1, "RSA PRIVATE KEY"): not a valid PKCS#1 RSA private key`}},
		{"key after garbage", good, append(bytes.Clone(keyPEM), "trailing"...), K, []string{"unexpected text after the last PEM block"}},
		{"oversized key", good, big, K, []string{"too large"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := ParseBundle(tt.certPEM, tt.keyPEM)
			if b != nil {
				t.Errorf("ParseBundle returned a bundle with error %v", err)
			}
			wantBundleError(t, err, tt.field, tt.want...)
		})
	}
}

func TestParseBundleSmallRSAKey(t *testing.T) {
	t.Setenv("GODEBUG", "rsa1024min=0")
	small, err := rsaGenerateSmall()
	if err != nil {
		t.Skipf("cannot make a 512-bit RSA key here: %v", err)
	}
	pki := newTestPKI(t)
	leaf := pki.leaf(t, small, nil)
	_, err = ParseBundle(pemCerts(leaf), pemKey(t, small, "pkcs1"))
	wantBundleError(t, err, FieldPrivateKeyPEM, "the RSA key has 512 bits; TLS needs at least 1024")
}

func TestParseBundleInfo(t *testing.T) {
	pki := newTestPKI(t)
	key := newEd25519Key(t)
	nb := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	na := nb.Add(90 * 24 * time.Hour)
	leaf := pki.leaf(t, key, func(c *x509.Certificate) {
		c.SerialNumber = big.NewInt(0x0a1b2c)
		c.Subject = pkix.Name{
			CommonName: "www.example.com", Organization: []string{"Example Inc"},
			OrganizationalUnit: []string{"Web"}, Locality: []string{"Springfield"},
			Province: []string{"Oregon"}, Country: []string{"US"},
		}
		c.DNSNames = []string{"www.example.com", "example.com"}
		c.IPAddresses = []net.IP{net.ParseIP("192.0.2.1"), net.ParseIP("2001:db8::1")}
		c.KeyUsage = x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment
		c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
		c.UnknownExtKeyUsage = []asn1.ObjectIdentifier{{1, 2, 3, 4}}
		c.NotBefore, c.NotAfter = nb, na
	})
	b, err := ParseBundle(pemCerts(leaf, pki.inter), pemKey(t, key, "pkcs8"))
	if err != nil {
		t.Fatalf("ParseBundle: %v", err)
	}
	want := CertInfo{
		SubjectCommonName: "www.example.com",
		SubjectAlternativeNames: CertSANs{
			DNSNames: []string{"www.example.com", "example.com"},
			IPs:      []string{"192.0.2.1", "2001:db8::1"},
		},
		NotBefore:                 nb,
		NotAfter:                  na,
		KeyUsages:                 []string{"digital_signature", "key_encipherment"},
		ExtendedKeyUsages:         []string{"server_auth", "client_auth", "1.2.3.4"},
		PrivateKeyType:            "ed25519",
		IssuerCommonName:          "Example Intermediate",
		SerialNumber:              "0a1b2c",
		SubjectOrganization:       "Example Inc",
		SubjectOrganizationalUnit: "Web",
		SubjectLocality:           "Springfield",
		SubjectProvince:           "Oregon",
		SubjectCountry:            "US",
	}
	gotJSON, _ := json.Marshal(b.Info)
	wantJSON, _ := json.Marshal(want)
	if !bytes.Equal(gotJSON, wantJSON) {
		t.Errorf("Info =\n%s\nwant\n%s", gotJSON, wantJSON)
	}

	var fields map[string]any
	if err := json.Unmarshal(gotJSON, &fields); err != nil {
		t.Fatal(err)
	}
	wantKeys := []string{"extended_key_usages", "issuer_common_name", "key_usages", "not_after", "not_before",
		"private_key_type", "serial_number", "subject_alternative_names", "subject_common_name", "subject_country",
		"subject_locality", "subject_organization", "subject_organizational_unit", "subject_province"}
	var gotKeys []string
	for k := range fields {
		gotKeys = append(gotKeys, k)
	}
	slices.Sort(gotKeys)
	if !slices.Equal(gotKeys, wantKeys) {
		t.Errorf("JSON keys = %v, want %v", gotKeys, wantKeys)
	}
	if got, want := fields["not_before"], "2026-01-02T03:04:05Z"; got != want {
		t.Errorf("not_before = %v, want %v", got, want)
	}

	// Empty lists encode as [], not null.
	plain := pki.leaf(t, key, func(c *x509.Certificate) { c.DNSNames, c.KeyUsage, c.ExtKeyUsage = nil, 0, nil })
	b, err = ParseBundle(pemCerts(plain), pemKey(t, key, "pkcs8"))
	if err != nil {
		t.Fatalf("ParseBundle: %v", err)
	}
	js, _ := json.Marshal(b.Info)
	for _, w := range []string{`"dns_names":[]`, `"ips":[]`, `"key_usages":[]`, `"extended_key_usages":[]`} {
		if !strings.Contains(string(js), w) {
			t.Errorf("Info JSON = %s, want it to contain %s", js, w)
		}
	}
}

func TestBundleCertPEMAndKeyPEM(t *testing.T) {
	pki := newTestPKI(t)
	for _, tc := range []struct {
		name   string
		key    crypto.Signer
		format string
	}{
		{"RSA PKCS#1", uploadRSAKey(), "pkcs1"},
		{"ECDSA SEC 1", newECKey(t), "sec1"},
		{"Ed25519 PKCS#8", newEd25519Key(t), "pkcs8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			leaf := pki.leaf(t, tc.key, nil)
			upload := append([]byte("leaf:\n"), pemCerts(leaf, pki.inter, pki.root)...)
			b, err := ParseBundle(upload, pemKey(t, tc.key, tc.format))
			if err != nil {
				t.Fatalf("ParseBundle: %v", err)
			}
			if got, want := b.CertPEM(), pemCerts(leaf, pki.inter, pki.root); !bytes.Equal(got, want) {
				t.Errorf("CertPEM =\n%s\nwant\n%s", got, want)
			}
			keyPEM := b.KeyPEM()
			blk, rest := pem.Decode(keyPEM)
			if blk == nil || blk.Type != "PRIVATE KEY" || len(rest) != 0 {
				t.Fatalf("KeyPEM = %q, want one PRIVATE KEY block", keyPEM)
			}
			k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
			if err != nil {
				t.Fatalf("KeyPEM does not hold PKCS#8: %v", err)
			}
			if !publicKeyEqual(k.(crypto.Signer).Public(), tc.key.Public()) {
				t.Error("KeyPEM holds another key")
			}
			if _, err := ParseBundle(b.CertPEM(), keyPEM); err != nil {
				t.Errorf("ParseBundle(CertPEM, KeyPEM): %v", err)
			}
		})
	}
}

// rsaGenerateSmall makes a 512-bit RSA key, which Go only allows with GODEBUG=rsa1024min=0.
func rsaGenerateSmall() (crypto.Signer, error) {
	return rsaGenerate(512)
}
