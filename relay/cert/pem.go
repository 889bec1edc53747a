package cert

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

const (
	blockCertificate = "CERTIFICATE"
	blockPrivateKey  = "PRIVATE KEY"
)

// encodeCertsPEM returns the DER certificates as concatenated CERTIFICATE blocks.
func encodeCertsPEM(ders ...[]byte) []byte {
	var buf bytes.Buffer
	for _, der := range ders {
		// pem.Encode only fails on writer errors; bytes.Buffer has none.
		_ = pem.Encode(&buf, &pem.Block{Type: blockCertificate, Bytes: der})
	}
	return buf.Bytes()
}

// encodeKeyPEM returns key as a PKCS#8 "PRIVATE KEY" block.
func encodeKeyPEM(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("marshal private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: blockPrivateKey, Bytes: der}), nil
}

// writeFileAtomic writes data to path through a temporary file in the same directory,
// so a crash never leaves a truncated file behind, and sets perm on the result.
func writeFileAtomic(path string, data []byte, perm fs.FileMode) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(f.Name())
		}
	}()
	if err := f.Chmod(perm); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// ReadError turns an os.ReadFile error into "<what>: <reason>; <fix>" without repeating the
// path that what already names. The result still matches errors.Is(err, fs.ErrNotExist) etc.
func ReadError(what string, err error) error {
	var pe *fs.PathError
	reason := err
	if errors.As(err, &pe) {
		reason = pe.Err
	}
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%s: %w; check the path", what, reason)
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("%s: %w; make the file readable by the user running ferry", what, reason)
	default:
		return fmt.Errorf("%s: read: %w", what, reason)
	}
}

// label names a file in errors: "--tls-cert relay.pem", or just the path without a flag.
func label(flag, path string) string {
	if flag == "" {
		return path
	}
	return flag + " " + path
}

// pemBlocks returns every PEM block in data, in order.
func pemBlocks(data []byte) []*pem.Block {
	var blocks []*pem.Block
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return blocks
		}
		blocks = append(blocks, b)
	}
}

func isKeyBlock(b *pem.Block) bool { return strings.HasSuffix(b.Type, blockPrivateKey) }

// parseCertChain parses every CERTIFICATE block in data (other blocks are ignored).
// file is only used in the conversion command an error suggests.
func parseCertChain(data []byte, file string) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for _, b := range pemBlocks(data) {
		if b.Type != blockCertificate {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %w; the PEM block is damaged, export the certificate again", len(certs)+1, err)
		}
		certs = append(certs, c)
	}
	if len(certs) > 0 {
		return certs, nil
	}
	switch {
	case len(bytes.TrimSpace(data)) == 0:
		return nil, errors.New("file is empty; pass a PEM file that starts with -----BEGIN CERTIFICATE-----")
	case isDERCert(data):
		return nil, fmt.Errorf("certificate is DER-encoded, not PEM; convert it with: openssl x509 -inform der -in %s -out %s.pem", file, strings.TrimSuffix(file, filepath.Ext(file)))
	default:
		return nil, errors.New("no CERTIFICATE block found; pass a PEM file that starts with -----BEGIN CERTIFICATE-----")
	}
}

func isDERCert(data []byte) bool {
	_, err := x509.ParseCertificate(data)
	return err == nil
}

// parseKey parses the first private key block in data: PKCS#8 ("PRIVATE KEY"), SEC 1
// ("EC PRIVATE KEY") or PKCS#1 ("RSA PRIVATE KEY"). file is only used in suggested commands.
func parseKey(data []byte, file string) (crypto.Signer, error) {
	for _, b := range pemBlocks(data) {
		if !isKeyBlock(b) {
			continue
		}
		if b.Type == "ENCRYPTED "+blockPrivateKey || strings.Contains(b.Headers["Proc-Type"], "ENCRYPTED") {
			return nil, fmt.Errorf("key is encrypted with a passphrase; ferry needs an unencrypted key, decrypt it with: openssl pkey -in %s -out %s.plain (and keep that file mode 0600)", file, file)
		}
		if b.Type == "OPENSSH "+blockPrivateKey {
			return nil, errors.New("key is in OpenSSH format; pass a PEM key that starts with -----BEGIN PRIVATE KEY----- (for example from openssl genpkey)")
		}
		key, err := parseKeyDER(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s block: %w; the PEM block is damaged, export the key again", b.Type, err)
		}
		return key, nil
	}
	blocks := pemBlocks(data)
	switch {
	case len(bytes.TrimSpace(data)) == 0:
		return nil, errors.New("file is empty; pass a PEM file that starts with -----BEGIN PRIVATE KEY-----")
	case len(blocks) > 0 && blocks[0].Type == blockCertificate:
		return nil, errors.New("file holds a certificate, not a private key; pass the key file that starts with -----BEGIN PRIVATE KEY-----")
	default:
		if _, err := parseKeyDER(data); err == nil {
			return nil, fmt.Errorf("key is DER-encoded, not PEM; convert it with: openssl pkey -inform der -in %s -out %s.pem", file, strings.TrimSuffix(file, filepath.Ext(file)))
		}
		return nil, errors.New("no PRIVATE KEY block found; pass a PEM file that starts with -----BEGIN PRIVATE KEY-----")
	}
}

// parseKeyDER tries PKCS#8, SEC 1 and PKCS#1 in turn, as crypto/tls does, because block
// labels are often wrong. It accepts only key types crypto/tls can sign with.
func parseKeyDER(der []byte) (crypto.Signer, error) {
	key, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		if key, err = x509.ParseECPrivateKey(der); err != nil {
			if key, err = x509.ParsePKCS1PrivateKey(der); err != nil {
				// The three parsers' ASN.1 complaints say nothing useful to an operator.
				return nil, errors.New("not a PKCS#8, SEC 1 (EC) or PKCS#1 (RSA) private key")
			}
		}
	}
	switch k := key.(type) {
	case *ecdsa.PrivateKey, *rsa.PrivateKey, ed25519.PrivateKey:
		return k.(crypto.Signer), nil
	default:
		return nil, fmt.Errorf("key type %T cannot sign TLS handshakes; use an ECDSA, RSA or Ed25519 key", key)
	}
}

// publicKeyEqual reports whether a and b are the same public key.
func publicKeyEqual(a, b crypto.PublicKey) bool {
	eq, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && eq.Equal(b)
}
