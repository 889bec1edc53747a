package certtest

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func TestNewCA(t *testing.T) {
	tests := []struct {
		name   string
		newCA  func(testing.TB, string) *CA
		wantCA bool
	}{
		{"NewCA", NewCA, true},
		{"NewNonCA", NewNonCA, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ca := tt.newCA(t, "Test "+tt.name)
			if got := ca.Cert.Subject.CommonName; got != "Test "+tt.name {
				t.Errorf("CN = %q, want %q", got, "Test "+tt.name)
			}
			if !ca.Cert.BasicConstraintsValid || ca.Cert.IsCA != tt.wantCA {
				t.Errorf("basicConstraints valid=%v cA=%v, want true, %v", ca.Cert.BasicConstraintsValid, ca.Cert.IsCA, tt.wantCA)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(ca.PEM) {
				t.Error("PEM holds no certificate")
			}
			if !pool.Equal(ca.Pool) {
				t.Error("Pool differs from a pool built from PEM")
			}
		})
	}
}

func TestServerAndClient(t *testing.T) {
	ca := NewCA(t, "Test CA")
	tests := []struct {
		name      string
		cert      tls.Certificate
		usage     x509.ExtKeyUsage
		verifyFor []string
		wantDNS   []string
		wantIPs   int
	}{
		{"server names", ca.Server(t, "relay.test", "10.0.0.1", "::1"), x509.ExtKeyUsageServerAuth, []string{"relay.test", "10.0.0.1", "::1"}, []string{"relay.test"}, 2},
		{"server default", ca.Server(t), x509.ExtKeyUsageServerAuth, []string{"localhost", "127.0.0.1", "::1"}, []string{"localhost"}, 2},
		{"client", ca.Client(t, "agent-1"), x509.ExtKeyUsageClientAuth, []string{""}, nil, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			leaf := tt.cert.Leaf
			if len(tt.cert.Certificate) != 2 {
				t.Fatalf("chain length = %d, want 2", len(tt.cert.Certificate))
			}
			if !slices.Equal(leaf.DNSNames, tt.wantDNS) || len(leaf.IPAddresses) != tt.wantIPs {
				t.Errorf("SANs = %v %v, want %v and %d IPs", leaf.DNSNames, leaf.IPAddresses, tt.wantDNS, tt.wantIPs)
			}
			for _, host := range tt.verifyFor {
				opts := x509.VerifyOptions{Roots: ca.Pool, DNSName: host, KeyUsages: []x509.ExtKeyUsage{tt.usage}}
				if _, err := leaf.Verify(opts); err != nil {
					t.Errorf("Verify(%q): %v", host, err)
				}
			}
		})
	}
}

func TestNonCAChildrenDoNotVerify(t *testing.T) {
	nonCA := NewNonCA(t, "not-a-ca")
	leaf := nonCA.Client(t, "agent").Leaf
	opts := x509.VerifyOptions{Roots: nonCA.Pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	if _, err := leaf.Verify(opts); err == nil {
		t.Error("Verify of a certificate signed by a non-CA = nil error, want refusal")
	}
}

func TestWriteFiles(t *testing.T) {
	dir := t.TempDir()
	tests := []struct{ cn, want string }{
		{"Ferry Test CA", "ferry-test-ca.pem"},
		{"  a..b  ", "a-b.pem"},
		{"", "ca.pem"},
	}
	for _, tt := range tests {
		ca := NewCA(t, tt.cn)
		path := ca.WriteFiles(t, dir)
		if got := filepath.Base(path); got != tt.want {
			t.Errorf("WriteFiles for CN %q = %s, want %s", tt.cn, got, tt.want)
		}
		pem, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if string(pem) != string(ca.PEM) {
			t.Errorf("%s differs from CA.PEM", path)
		}
	}
}

// TestWriteKeyPairHandshake writes a server pair, loads it with tls.LoadX509KeyPair and
// completes a handshake against a client trusting the CA file.
func TestWriteKeyPairHandshake(t *testing.T) {
	dir := t.TempDir()
	ca := NewCA(t, "Test CA")
	certPath, keyPath := WriteKeyPair(t, dir, "server", ca.Server(t))
	if got, want := filepath.Base(keyPath), "server-key.pem"; got != want {
		t.Errorf("key file = %s, want %s", got, want)
	}
	fi, err := os.Stat(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != 0o600 {
		t.Errorf("key file mode = %o, want 600", got)
	}
	pair, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		t.Fatalf("LoadX509KeyPair: %v", err)
	}
	caPEM, err := os.ReadFile(ca.WriteFiles(t, dir))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)

	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{pair}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	served := make(chan error, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			served <- err
			return
		}
		defer func() { _ = conn.Close() }()
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		_, err = conn.Write([]byte("ok"))
		served <- err
	}()
	conn, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: roots})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer func() { _ = conn.Close() }()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(conn)
	if err != nil || string(got) != "ok" {
		t.Errorf("read = %q, %v, want \"ok\", nil", got, err)
	}
	if err := <-served; err != nil {
		t.Errorf("server: %v", err)
	}
}
