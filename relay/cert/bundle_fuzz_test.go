package cert

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"errors"
	"testing"
)

// FuzzParseBundle checks that ParseBundle never panics, refuses only with a *BundleError
// naming one of its two fields, and that what it accepts is consistent: the key matches the
// leaf, each certificate is signed by the next, and the normalised bundle (CertPEM, KeyPEM)
// parses again to the same certificates.
func FuzzParseBundle(f *testing.F) {
	pki := newTestPKI(f)
	ecKey, edKey, rsaKey := newECKey(f), newEd25519Key(f), uploadRSAKey()
	ecLeaf, edLeaf, rsaLeaf := pki.leaf(f, ecKey, nil), pki.leaf(f, edKey, nil), pki.leaf(f, rsaKey, nil)
	selfSigned := makeCert(f, serverTmpl("self.example.com"), edKey.Public(), nil, edKey)

	full, ecPEM := pemCerts(ecLeaf, pki.inter, pki.root), pemKey(f, ecKey, "sec1")
	f.Add(full, ecPEM)
	f.Add(pemCerts(ecLeaf, pki.inter), pemKey(f, ecKey, "pkcs8"))
	f.Add(pemCerts(edLeaf), pemKey(f, edKey, "pkcs8"))
	f.Add(pemCerts(selfSigned), pemKey(f, edKey, "pkcs8"))
	f.Add(pemCerts(rsaLeaf, pki.inter), pemKey(f, rsaKey, "pkcs1"))
	f.Add(pemCerts(pki.inter, ecLeaf), ecPEM)
	f.Add(ecPEM, full)
	f.Add(full, full)
	f.Add([]byte{}, []byte{})
	f.Add([]byte("garbage"), []byte("-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----\n"))
	f.Add([]byte("-----BEGIN CERTIFICATE-----\n-----BEGIN CERTIFICATE-----\n"), []byte("-----END X-----"))
	// Truncations and bit flips of a good bundle and key.
	for i := 1; i < len(full); i += len(full) / 12 {
		f.Add(full[:i], ecPEM)
		flipped := bytes.Clone(full)
		flipped[i] ^= 0x04
		f.Add(flipped, ecPEM)
	}
	for i := 1; i < len(ecPEM); i += len(ecPEM) / 6 {
		f.Add(full, ecPEM[:i])
	}

	f.Fuzz(func(t *testing.T, certPEM, keyPEM []byte) {
		b, err := ParseBundle(certPEM, keyPEM)
		if err != nil {
			var be *BundleError
			if !errors.As(err, &be) || (be.Field != FieldCertificatePEM && be.Field != FieldPrivateKeyPEM) {
				t.Fatalf("err = %T %q, want a *BundleError for certificate_pem or private_key_pem", err, err)
			}
			if b != nil {
				t.Fatal("ParseBundle returned a bundle and an error")
			}
			return
		}
		signer, ok := b.Certificate.PrivateKey.(crypto.Signer)
		if !ok || !publicKeyEqual(b.Leaf.PublicKey, signer.Public()) {
			t.Fatal("accepted a bundle whose leaf does not match the private key")
		}
		if b.Certificate.Leaf != b.Leaf || len(b.Certificate.Certificate) != 1+len(b.Chain) || !bytes.Equal(b.Certificate.Certificate[0], b.Leaf.Raw) {
			t.Fatal("Certificate is not Leaf followed by Chain")
		}
		certs := append([]*x509.Certificate{b.Leaf}, b.Chain...)
		for i := 0; i+1 < len(certs); i++ {
			if err := certs[i].CheckSignatureFrom(certs[i+1]); err != nil {
				t.Fatalf("accepted certificate %d, which certificate %d did not sign: %v", i+1, i+2, err)
			}
		}
		again, err := ParseBundle(b.CertPEM(), b.KeyPEM())
		if err != nil {
			t.Fatalf("normalised bundle does not parse again: %v", err)
		}
		if !again.Leaf.Equal(b.Leaf) || len(again.Chain) != len(b.Chain) || again.Info.SerialNumber != b.Info.SerialNumber {
			t.Fatal("normalised bundle parses to different certificates")
		}
	})
}

// FuzzParseCertificateAuthority checks that ParseCertificateAuthority never panics, refuses
// only with a ca_pem *BundleError, and accepts only CAs.
func FuzzParseCertificateAuthority(f *testing.F) {
	pki := newTestPKI(f)
	key := newECKey(f)
	f.Add(pemCerts(pki.root))
	f.Add(pemCerts(pki.inter, pki.root))
	f.Add(pemCerts(pki.leaf(f, key, nil)))
	f.Add(pemKey(f, key, "pkcs8"))
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, caPEM []byte) {
		c, info, err := ParseCertificateAuthority(caPEM)
		if err != nil {
			var be *BundleError
			if !errors.As(err, &be) || be.Field != FieldCAPEM || c != nil {
				t.Fatalf("err = %T %q, cert %v, want a ca_pem *BundleError and no certificate", err, err, c != nil)
			}
			return
		}
		if !c.IsCA || !c.BasicConstraintsValid || info.SubjectCommonName != c.Subject.CommonName {
			t.Fatal("accepted a certificate that is not a CA, or CAInfo does not describe it")
		}
	})
}
