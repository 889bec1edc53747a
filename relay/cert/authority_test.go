package cert

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"slices"
	"testing"
	"time"

	"github.com/ferrytunnel/ferry/relay/cert/certtest"
)

func TestParseCertificateAuthority(t *testing.T) {
	ca := certtest.NewCA(t, "Example Client CA")
	c, info, err := ParseCertificateAuthority(append([]byte("issuer=CN=Example Client CA\n"), ca.PEM...))
	if err != nil {
		t.Fatalf("ParseCertificateAuthority: %v", err)
	}
	if !c.Equal(ca.Cert) {
		t.Error("returned certificate is not the uploaded one")
	}
	want := CAInfo{
		SubjectCommonName: "Example Client CA",
		NotBefore:         ca.Cert.NotBefore,
		NotAfter:          ca.Cert.NotAfter,
		KeyUsages:         []string{"digital_signature", "cert_sign", "crl_sign"},
		ExtendedKeyUsages: []string{},
	}
	gotJSON, _ := json.Marshal(info)
	wantJSON, _ := json.Marshal(want)
	if !bytes.Equal(gotJSON, wantJSON) {
		t.Errorf("CAInfo =\n%s\nwant\n%s", gotJSON, wantJSON)
	}
	var fields map[string]any
	if err := json.Unmarshal(gotJSON, &fields); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for k := range fields {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if want := []string{"extended_key_usages", "key_usages", "not_after", "not_before", "subject_common_name"}; !slices.Equal(keys, want) {
		t.Errorf("JSON keys = %v, want %v", keys, want)
	}

	// A client certificate it signs verifies against the returned CA.
	pool := x509.NewCertPool()
	pool.AddCert(c)
	client := ca.Client(t, "agent-1")
	if _, err := client.Leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("client certificate does not verify against the uploaded CA: %v", err)
	}

	// An expired CA is accepted.
	key := newECKey(t)
	past := time.Now().Add(-24 * time.Hour)
	expiredTmpl := caTmpl("Expired CA")
	expiredTmpl.NotBefore, expiredTmpl.NotAfter = past.Add(-time.Hour), past
	if _, info, err := ParseCertificateAuthority(pemCerts(makeCert(t, expiredTmpl, key.Public(), nil, key))); err != nil {
		t.Errorf("expired CA: %v", err)
	} else if !info.NotAfter.Equal(past.Truncate(time.Second)) {
		t.Errorf("expired CA NotAfter = %v, want %v", info.NotAfter, past.Truncate(time.Second))
	}
}

func TestParseCertificateAuthorityRefusals(t *testing.T) {
	nonCA := certtest.NewNonCA(t, "www.example.com")
	key := newECKey(t)
	noBC := makeCert(t, &x509.Certificate{Subject: caTmpl("No Constraints").Subject}, key.Public(), nil, key)
	noSignTmpl := caTmpl("No CertSign CA")
	noSignTmpl.KeyUsage = x509.KeyUsageDigitalSignature
	noSign := makeCert(t, noSignTmpl, key.Public(), nil, key)
	now := time.Now()
	invTmpl := caTmpl("Inverted CA")
	invTmpl.NotBefore, invTmpl.NotAfter = now, now.Add(-time.Hour)
	inverted := makeCert(t, invTmpl, key.Public(), nil, key)
	ca := certtest.NewCA(t, "Example CA")
	other := certtest.NewCA(t, "Other CA")

	tests := []struct {
		name string
		pem  []byte
		want []string
	}{
		{"empty", nil, []string{"ca_pem: empty; paste the CA certificate"}},
		{"garbage", []byte("garbage"), []string{`ca_pem: no PEM "CERTIFICATE" block found`}},
		{"DER", ca.Cert.Raw, []string{"DER (binary) certificate"}},
		{"trailing garbage", append(bytes.Clone(ca.PEM), "xyz"...), []string{"unexpected text after the last PEM block"}},
		{"truncated", ca.PEM[:len(ca.PEM)-30], []string{"PEM block 1 (line 1) is damaged or incomplete"}},
		{"private key", pemKey(t, key, "pkcs8"), []string{`PEM block 1 (line 1) is a private key ("PRIVATE KEY")`, "remove it: a certificate authority is uploaded without its private key"}},
		{"CA and its key", append(bytes.Clone(ca.PEM), pemKey(t, key, "sec1")...), []string{`PEM block 2`, `is a private key ("EC PRIVATE KEY")`}},
		{"two certificates", append(bytes.Clone(ca.PEM), other.PEM...), []string{"holds 2 certificates; upload exactly one"}},
		{"damaged", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{0x30, 0x00}}), []string{"certificate 1 (PEM block 1, line 1) cannot be parsed"}},
		{"not a CA", nonCA.PEM, []string{"ca_pem: certificate 1 (CN=www.example.com) is not a CA: basic constraints cA=false (RFC 5280 §4.2.1.9 requires cA=true for certificates that sign others)"}},
		{"no basic constraints", pemCerts(noBC), []string{"certificate 1 (CN=No Constraints) is not a CA: it has no basic constraints extension (RFC 5280 §4.2.1.9"}},
		{"no keyCertSign", pemCerts(noSign), []string{"certificate 1 (CN=No CertSign CA) cannot sign certificates: its key usage extension lacks keyCertSign (RFC 5280 §4.2.1.3)"}},
		{"inverted validity", pemCerts(inverted), []string{"certificate 1 (CN=Inverted CA) is never valid"}},
		{"oversized", bytes.Repeat([]byte{'-'}, MaxUploadPEMSize+1), []string{"too large"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _, err := ParseCertificateAuthority(tt.pem)
			if c != nil {
				t.Errorf("returned a certificate with error %v", err)
			}
			wantBundleError(t, err, FieldCAPEM, tt.want...)
		})
	}
}
