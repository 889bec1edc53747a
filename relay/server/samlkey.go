package server

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// SAMLKeyFile holds the relay's SAML service-provider key and certificate (PEM, 0600),
// made on first use: identity providers pin the certificate from the SP metadata, so
// it must outlive restarts.
const SAMLKeyFile = "saml-sp.pem"

type samlKey struct {
	once sync.Once
	key  crypto.Signer
	cert *x509.Certificate
	err  error
}

// load returns the key and certificate in dir, creating them the first time.
func (k *samlKey) load(dir string) (crypto.Signer, *x509.Certificate, error) {
	k.once.Do(func() { k.key, k.cert, k.err = loadOrCreateSAMLKey(filepath.Join(dir, SAMLKeyFile)) })
	return k.key, k.cert, k.err
}

func loadOrCreateSAMLKey(path string) (crypto.Signer, *x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return createSAMLKey(path)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("SAML key %s: %w", path, err)
	}
	var key crypto.Signer
	var cert *x509.Certificate
	for blk, rest := pem.Decode(data); blk != nil; blk, rest = pem.Decode(rest) {
		switch blk.Type {
		case "PRIVATE KEY":
			k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
			if err != nil {
				return nil, nil, fmt.Errorf("SAML key %s: %w", path, err)
			}
			key, _ = k.(crypto.Signer)
		case "CERTIFICATE":
			if cert, err = x509.ParseCertificate(blk.Bytes); err != nil {
				return nil, nil, fmt.Errorf("SAML key %s: %w", path, err)
			}
		}
	}
	if key == nil || cert == nil {
		return nil, nil, fmt.Errorf("SAML key %s: want a PRIVATE KEY and a CERTIFICATE block (delete the file to make a new pair, then give identity providers the new SP metadata)", path)
	}
	return key, cert, nil
}

func createSAMLKey(path string) (crypto.Signer, *x509.Certificate, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, nil, err
	}
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: "ferry-relay SAML service provider"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().AddDate(10, 0, 0),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	cert, _ := x509.ParseCertificate(der)
	pk, _ := x509.MarshalPKCS8PrivateKey(key)
	out := append(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pk}), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		return loadOrCreateSAMLKey(path) // another relay made it first
	}
	if err != nil {
		return nil, nil, fmt.Errorf("SAML key %s: %w", path, err)
	}
	if _, err := f.Write(out); err != nil {
		f.Close()
		return nil, nil, err
	}
	return key, cert, f.Close()
}
