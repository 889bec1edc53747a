package tlsconf

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferrytunnel/ferry/relay/cert/certtest"
)

func TestLoadCAs(t *testing.T) {
	a, b := certtest.NewCA(t, "CA A"), certtest.NewCA(t, "CA B")
	dir := t.TempDir()
	path := filepath.Join(dir, "cas.pem")
	bundle := "# Ferry client CAs\n" + string(a.PEM) + "\nsome comment between blocks\n" + string(b.PEM)
	writeFile(t, path, []byte(bundle))

	pool, raw, err := LoadCAs(path, "--mutual-tls-cas")
	if err != nil {
		t.Fatalf("LoadCAs: %v", err)
	}
	if want := append(append([]byte{}, a.PEM...), b.PEM...); !bytes.Equal(raw, want) {
		t.Errorf("PEM = %q, want the two CERTIFICATE blocks only:\n%q", raw, want)
	}
	for _, ca := range []*certtest.CA{a, b} {
		opts := x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
		if _, err := ca.Client(t, "client").Leaf.Verify(opts); err != nil {
			t.Errorf("client of %s does not verify against the pool: %v", ca.Cert.Subject, err)
		}
	}
	other := certtest.NewCA(t, "CA C").Client(t, "stranger").Leaf
	if _, err := other.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err == nil {
		t.Error("client of an unlisted CA verifies, want refusal")
	}

	// The relay re-checks what the agent sends.
	relayPool, err := ParseCAs(raw, "agent web-1")
	if err != nil {
		t.Fatalf("ParseCAs of LoadCAs output: %v", err)
	}
	if !relayPool.Equal(pool) {
		t.Error("ParseCAs pool differs from LoadCAs pool")
	}
}

func TestLoadCAsErrors(t *testing.T) {
	ca := certtest.NewCA(t, "Client CA")
	nonCA := certtest.NewNonCA(t, "client")
	leaf := ca.Client(t, "agent-1")
	noBC := selfSignedWithoutBasicConstraints(t, "legacy")
	key := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte("secret")})
	damaged := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("not DER")})
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

	tests := []struct {
		name   string
		data   []byte // nil: no file
		want   string // %s is replaced by the file's path
		wantIs error
	}{
		{"missing file", nil, "--mutual-tls-cas %s: no such file or directory; check the path", fs.ErrNotExist},
		{"empty file", []byte(" \n"), "--mutual-tls-cas %s: file is empty; pass a PEM file with one or more CA certificates, each starting with -----BEGIN CERTIFICATE-----", nil},
		{"garbage", []byte("not pem at all"), "--mutual-tls-cas %s: no CERTIFICATE block found; pass a PEM file with one or more CA certificates", nil},
		{"DER", ca.Cert.Raw, "--mutual-tls-cas %s: certificate is DER-encoded, not PEM; convert it with: openssl x509 -inform der", nil},
		{"non-CA second", cat(ca.PEM, nonCA.PEM),
			"--mutual-tls-cas %s: certificate 2 (CN=client) is not a CA: its basicConstraints cA is false (RFC 5280 §4.2.1.9); list only CA certificates in this file", nil},
		{"leaf signed by the CA", cat(pemOf(leaf.Certificate[0]), ca.PEM),
			"--mutual-tls-cas %s: certificate 1 (CN=agent-1) is not a CA: its basicConstraints cA is false (RFC 5280 §4.2.1.9); list only CA certificates in this file", nil},
		{"no basicConstraints extension", cat(ca.PEM, ca.PEM, noBC),
			"--mutual-tls-cas %s: certificate 3 (CN=legacy) is not a CA: its basicConstraints cA is false (RFC 5280 §4.2.1.9); list only CA certificates in this file", nil},
		{"damaged certificate", cat(ca.PEM, damaged), "--mutual-tls-cas %s: certificate 2: x509: ", nil},
		{"private key", cat(ca.PEM, key), "--mutual-tls-cas %s: PEM block 2 is a PRIVATE KEY, not a CERTIFICATE; remove it: this file holds only CA certificates and is sent to the relay, so it must never contain a private key", nil},
		{"other block", cat(pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: []byte{1}}), ca.PEM), "--mutual-tls-cas %s: PEM block 1 is a X509 CRL, not a CERTIFICATE; remove it; list only CA certificates in this file", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "cas.pem")
			if tt.data != nil {
				writeFile(t, path, tt.data)
			}
			pool, raw, err := LoadCAs(path, "--mutual-tls-cas")
			if pool != nil || raw != nil {
				t.Errorf("LoadCAs = %v, %d bytes, want nil, nil on error", pool, len(raw))
			}
			want := strings.ReplaceAll(tt.want, "%s", path)
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("LoadCAs error = %v, want it to contain %q", err, want)
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("errors.Is(%v, %v) = false, want true", err, tt.wantIs)
			}
		})
	}
}

func TestParseCAsName(t *testing.T) {
	nonCA := certtest.NewNonCA(t, "client")
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"agent web-1", nonCA.PEM, "agent web-1: certificate 1 (CN=client) is not a CA: its basicConstraints cA is false (RFC 5280 §4.2.1.9)"},
		{"agent web-2", nil, "agent web-2: file is empty"},
	}
	for _, tt := range tests {
		pool, err := ParseCAs(tt.data, tt.name)
		if pool != nil || err == nil || !strings.HasPrefix(err.Error(), tt.want) {
			t.Errorf("ParseCAs(%s) = %v, %v, want nil and an error starting %q", tt.name, pool, err, tt.want)
		}
	}
}

func TestLoadServerCert(t *testing.T) {
	ca := certtest.NewCA(t, "Agent CA")
	dir := t.TempDir()
	certPath, keyPath := certtest.WriteKeyPair(t, dir, "agent", ca.Server(t, "app.internal"))
	_, otherKey := certtest.WriteKeyPair(t, dir, "other", ca.Server(t, "other.internal"))

	c, err := LoadServerCert(certPath, keyPath)
	if err != nil {
		t.Fatalf("LoadServerCert: %v", err)
	}
	if c.Leaf == nil || c.Leaf.Subject.CommonName != "app.internal" {
		t.Errorf("Leaf = %v, want CN app.internal", c.Leaf)
	}

	tests := []struct {
		name              string
		certFile, keyFile string
		want              string
	}{
		{"missing cert", filepath.Join(dir, "nope.pem"), keyPath, "--crt " + filepath.Join(dir, "nope.pem") + ": no such file or directory"},
		{"missing key", certPath, filepath.Join(dir, "nope.pem"), "--key " + filepath.Join(dir, "nope.pem") + ": no such file or directory"},
		{"swapped", keyPath, certPath, "did you swap --crt and --key?"},
		{"mismatch", certPath, otherKey, "--key " + otherKey + ": key does not match the certificate in --crt " + certPath},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadServerCert(tt.certFile, tt.keyFile)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("LoadServerCert error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

// TestLoadCAsHandshake requires client certificates signed by the CAs from LoadCAs on a real
// 127.0.0.1 listener: a listed CA's client gets through, an unlisted one is refused.
func TestLoadCAsHandshake(t *testing.T) {
	serverCA, clientCA, stranger := certtest.NewCA(t, "Server CA"), certtest.NewCA(t, "Client CA"), certtest.NewCA(t, "Stranger CA")
	dir := t.TempDir()
	pool, _, err := LoadCAs(clientCA.WriteFiles(t, dir), "--mutual-tls-cas")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		Certificates: []tls.Certificate{serverCA.Server(t)},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
	})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		_ = ln.Close()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return // listener closed
			}
			wg.Go(func() {
				defer func() { _ = conn.Close() }()
				_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
				_, _ = conn.Write([]byte("ok")) // fails when the handshake refuses the client
			})
		}
	})

	tests := []struct {
		name   string
		client tls.Certificate
		wantOK bool
	}{
		{"listed CA", clientCA.Client(t, "agent-1"), true},
		{"unlisted CA", stranger.Client(t, "agent-2"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: serverCA.Pool, Certificates: []tls.Certificate{tt.client}})
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			defer func() { _ = conn.Close() }()
			_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
			got, err := io.ReadAll(conn) // TLS 1.3: the server's verdict arrives with the first read
			if ok := err == nil && string(got) == "ok"; ok != tt.wantOK {
				t.Errorf("read = %q, %v; accepted = %v, want %v", got, err, ok, tt.wantOK)
			}
		})
	}
}

func selfSignedWithoutBasicConstraints(t *testing.T, cn string) []byte {
	t.Helper()
	ca := certtest.NewCA(t, "unused") // borrow a key
	tmpl := &x509.Certificate{SerialNumber: ca.Cert.SerialNumber, Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, ca.Key.Public(), ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	return pemOf(der)
}

func pemOf(der []byte) []byte { return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}) }

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}
