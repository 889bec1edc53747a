package cert

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io/fs"
	"testing"
	"time"

	"github.com/ferrytunnel/ferry/relay/cert/certtest"
)

func TestLoadKeyPair(t *testing.T) {
	ca := certtest.NewCA(t, "Test CA")
	good := ca.Server(t, "relay.example.com", "127.0.0.1")
	goodKey := good.PrivateKey.(*ecdsa.PrivateKey)
	now := time.Now()
	rk := rsaKey(t)
	rsaCert := signedFor(t, rk, leafTemplate("rsa.example.com"), now.Add(-time.Hour), now.Add(time.Hour), ca.Cert, ca.Key)

	tests := []struct {
		name    string
		certPEM []byte
		keyPEM  []byte
		wantCN  string
		wantLen int // chain length
	}{
		{"pkcs8 key with chain", encodeCertsPEM(good.Certificate...), keyPEM(t, goodKey), "relay.example.com", 2},
		{"leaf only", encodeCertsPEM(good.Certificate[0]), keyPEM(t, goodKey), "relay.example.com", 1},
		{"SEC 1 EC key", encodeCertsPEM(good.Certificate...), ecKeyPEM(t, goodKey), "relay.example.com", 2},
		{"PKCS#1 RSA key", encodeCertsPEM(rsaCert.Raw), pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rk)}), "rsa.example.com", 1},
		{"mislabelled key block", encodeCertsPEM(good.Certificate...), relabel(ecKeyPEM(t, goodKey), "PRIVATE KEY"), "relay.example.com", 2},
		{"comments around blocks", append(append([]byte("# relay cert\n"), encodeCertsPEM(good.Certificate...)...), "trailing text\n"...), keyPEM(t, goodKey), "relay.example.com", 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFile(t, join(dir, "relay.pem"), tt.certPEM)
			writeFile(t, join(dir, "relay-key.pem"), tt.keyPEM)
			c, err := LoadKeyPair(join(dir, "relay.pem"), join(dir, "relay-key.pem"), "--tls-cert", "--tls-key")
			if err != nil {
				t.Fatalf("LoadKeyPair: %v", err)
			}
			if c.Leaf == nil {
				t.Fatal("Leaf = nil, want the parsed leaf")
			}
			if got := c.Leaf.Subject.CommonName; got != tt.wantCN {
				t.Errorf("Leaf CN = %q, want %q", got, tt.wantCN)
			}
			if got := len(c.Certificate); got != tt.wantLen {
				t.Errorf("chain length = %d, want %d", got, tt.wantLen)
			}
			if !bytes.Equal(c.Certificate[0], c.Leaf.Raw) {
				t.Error("Certificate[0] is not Leaf.Raw")
			}
		})
	}
}

func TestLoadKeyPairErrors(t *testing.T) {
	ca := certtest.NewCA(t, "Test CA")
	good := ca.Server(t, "relay.example.com")
	other := ca.Server(t, "other.example.com")
	goodCert := encodeCertsPEM(good.Certificate...)
	goodKey := keyPEM(t, good.PrivateKey.(crypto.Signer))
	now := time.Now()
	expired, expiredKey := signed(t, leafTemplate("old.example.com"),
		time.Date(2024, 1, 2, 0, 0, 0, 0, time.UTC), time.Date(2025, 1, 2, 12, 0, 0, 0, time.UTC), ca.Cert, ca.Key)
	future, futureKey := signed(t, leafTemplate("new.example.com"), now.Add(48*time.Hour), now.Add(96*time.Hour), ca.Cert, ca.Key)
	caKey := keyPEM(t, ca.Key)
	encrypted := pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte("opaque")})
	legacyEncrypted := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Headers: map[string]string{"Proc-Type": "4,ENCRYPTED", "DEK-Info": "AES-128-CBC,00"}, Bytes: []byte("opaque")})
	openssh := pem.EncodeToMemory(&pem.Block{Type: "OPENSSH PRIVATE KEY", Bytes: []byte("opaque")})
	brokenCert := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("not DER")})
	brokenKey := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte("not DER")})
	der, _ := pem.Decode(goodKey)

	tests := []struct {
		name    string
		certPEM []byte // nil: no file
		keyPEM  []byte // nil: no file
		want    []string
		wantIs  error
	}{
		{"missing cert file", nil, goodKey, []string{"--tls-cert ", "relay.pem: no such file or directory; check the path"}, fs.ErrNotExist},
		{"missing key file", goodCert, nil, []string{"--tls-key ", "relay-key.pem: no such file or directory; check the path"}, fs.ErrNotExist},
		{"empty cert file", []byte("\n"), goodKey, []string{"--tls-cert ", "file is empty; pass a PEM file that starts with -----BEGIN CERTIFICATE-----"}, nil},
		{"garbage cert file", []byte("hello"), goodKey, []string{"relay.pem: no CERTIFICATE block found; pass a PEM file that starts with -----BEGIN CERTIFICATE-----"}, nil},
		{"DER cert file", good.Certificate[0], goodKey, []string{"DER-encoded, not PEM", "openssl x509 -inform der -in "}, nil},
		{"damaged cert block", brokenCert, goodKey, []string{"--tls-cert ", "certificate 1: x509: ", "export the certificate again"}, nil},
		{"key in cert file", goodKey, goodKey, []string{"--tls-cert ", "holds a private key, not a certificate; did you swap --tls-cert and --tls-key?"}, nil},
		{"files swapped", goodKey, goodCert, []string{"--tls-cert ", "did you swap --tls-cert and --tls-key?"}, nil},
		{"cert and key in cert file, cert in key file", append(append([]byte{}, goodCert...), goodKey...), goodCert, []string{"--tls-key ", "holds a certificate, and the private key is in --tls-cert", "did you swap"}, nil},
		{"cert in key file", goodCert, goodCert, []string{"--tls-key ", "holds a certificate, not a private key; pass the key file that starts with -----BEGIN PRIVATE KEY-----"}, nil},
		{"empty key file", goodCert, []byte{}, []string{"--tls-key ", "file is empty"}, nil},
		{"garbage key file", goodCert, []byte("hello"), []string{"--tls-key ", "no PRIVATE KEY block found; pass a PEM file that starts with -----BEGIN PRIVATE KEY-----"}, nil},
		{"DER key file", goodCert, der.Bytes, []string{"--tls-key ", "DER-encoded, not PEM", "openssl pkey -inform der"}, nil},
		{"damaged key block", goodCert, brokenKey, []string{"--tls-key ", "PRIVATE KEY block: not a PKCS#8, SEC 1 (EC) or PKCS#1 (RSA) private key; the PEM block is damaged, export the key again"}, nil},
		{"encrypted PKCS#8 key", goodCert, encrypted, []string{"--tls-key ", "encrypted with a passphrase", "openssl pkey -in "}, nil},
		{"encrypted legacy key", goodCert, legacyEncrypted, []string{"--tls-key ", "encrypted with a passphrase"}, nil},
		{"OpenSSH key", goodCert, openssh, []string{"--tls-key ", "OpenSSH format"}, nil},
		{"key mismatch", goodCert, keyPEM(t, other.PrivateKey.(crypto.Signer)), []string{"--tls-key ", "key does not match the certificate in --tls-cert ", "(CN=relay.example.com)", "pass the private key that was generated together with that certificate"}, nil},
		{"chain in wrong order", encodeCertsPEM(ca.Cert.Raw, good.Certificate[0]), goodKey, []string{"--tls-cert ", "the key matches certificate 2 (CN=relay.example.com), not the first one; put the server certificate first"}, nil},
		{"CA cert with leaf key", encodeCertsPEM(ca.Cert.Raw), goodKey, []string{"key does not match the certificate", "(CN=Test CA)"}, nil},
		{"CA key with chain", goodCert, caKey, []string{"--tls-key ", "key belongs to certificate 2 (CN=Test CA) in --tls-cert ", "a CA, not to the server certificate (CN=relay.example.com); pass the server certificate's own key"}, nil},
		{"CA key with leaf only", encodeCertsPEM(good.Certificate[0]), caKey, []string{"--tls-key ", "key does not match the certificate"}, nil},
		{"expired", encodeCertsPEM(expired.Raw), keyPEM(t, expiredKey), []string{"--tls-cert ", "certificate expired on 2025-01-02 (CN=old.example.com); renew it"}, nil},
		{"not yet valid", encodeCertsPEM(future.Raw), keyPEM(t, futureKey), []string{"--tls-cert ", "certificate is not valid until " + future.NotBefore.UTC().Format(time.DateTime) + " UTC (CN=new.example.com); check this machine's clock"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			certFile, keyFile := join(dir, "relay.pem"), join(dir, "relay-key.pem")
			if tt.certPEM != nil {
				writeFile(t, certFile, tt.certPEM)
			}
			if tt.keyPEM != nil {
				writeFile(t, keyFile, tt.keyPEM)
			}
			_, err := LoadKeyPair(certFile, keyFile, "--tls-cert", "--tls-key")
			wantErr(t, err, tt.want...)
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("errors.Is(%v, %v) = false, want true", err, tt.wantIs)
			}
		})
	}
}

func TestLoadKeyPairDirectory(t *testing.T) {
	dir := t.TempDir()
	_, err := LoadKeyPair(dir, join(dir, "key.pem"), "--tls-cert", "--tls-key")
	wantErr(t, err, "--tls-cert "+dir+": read: is a directory")
}

func TestLoadKeyPairNoFlags(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, join(dir, "k.pem"), []byte("x"))
	writeFile(t, join(dir, "c.pem"), keyPEM(t, certtest.NewCA(t, "x").Key))
	_, err := LoadKeyPair(join(dir, "c.pem"), join(dir, "k.pem"), "", "")
	wantErr(t, err, join(dir, "c.pem")+": file holds a private key, not a certificate; the certificate and key files look swapped")
}

// relabel changes the type of the single PEM block in data.
func relabel(data []byte, typ string) []byte {
	b, _ := pem.Decode(data)
	b.Type = typ
	return pem.EncodeToMemory(b)
}
