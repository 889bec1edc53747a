package cert

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ferrytunnel/ferry/relay/cert/certtest"
)

func TestLoadOrCreateDevCACreates(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data", "tls") // created on demand
	before := time.Now()
	ca, err := LoadOrCreateDevCA(dir)
	if err != nil {
		t.Fatalf("LoadOrCreateDevCA: %v", err)
	}
	c := ca.Cert
	if got, want := c.Subject.CommonName, `^Ferry Dev CA [0-9a-f]{6}$`; !regexp.MustCompile(want).MatchString(got) {
		t.Errorf("CN = %q, want match for %s", got, want)
	}
	if !c.BasicConstraintsValid || !c.IsCA {
		t.Errorf("basicConstraints valid=%v cA=%v, want true, true", c.BasicConstraintsValid, c.IsCA)
	}
	if c.MaxPathLen != 0 || !c.MaxPathLenZero {
		t.Errorf("MaxPathLen = %d, MaxPathLenZero = %v, want 0, true", c.MaxPathLen, c.MaxPathLenZero)
	}
	if c.KeyUsage&x509.KeyUsageCertSign == 0 {
		t.Errorf("KeyUsage = %b, want keyCertSign set", c.KeyUsage)
	}
	pub, ok := c.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		t.Errorf("public key = %T, want ECDSA P-256", c.PublicKey)
	}
	if got, want := c.NotAfter.Sub(before), 10*365*24*time.Hour; got < want-time.Minute || got > want+time.Minute {
		t.Errorf("NotAfter - now = %v, want about %v", got, want)
	}
	if got := fileMode(t, join(dir, CAKeyFile)); got != 0o600 {
		t.Errorf("%s mode = %o, want 600", CAKeyFile, got)
	}
	if got := fileMode(t, dir); got != 0o700 {
		t.Errorf("dir mode = %o, want 700", got)
	}
	onDisk, err := os.ReadFile(join(dir, CACertFile))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(onDisk, ca.CertPEM) {
		t.Errorf("%s differs from DevCA.CertPEM", CACertFile)
	}
	leftovers, _ := filepath.Glob(join(dir, ".*tmp*"))
	if len(leftovers) > 0 {
		t.Errorf("temporary files left behind: %v", leftovers)
	}
}

func TestLoadOrCreateDevCAReloads(t *testing.T) {
	dir := t.TempDir()
	first, err := LoadOrCreateDevCA(dir)
	if err != nil {
		t.Fatalf("first LoadOrCreateDevCA: %v", err)
	}
	second, err := LoadOrCreateDevCA(dir)
	if err != nil {
		t.Fatalf("second LoadOrCreateDevCA: %v", err)
	}
	if !second.Cert.Equal(first.Cert) {
		t.Errorf("reloaded CA = %s (serial %s), want %s (serial %s)", second.Cert.Subject, second.Cert.SerialNumber, first.Cert.Subject, first.Cert.SerialNumber)
	}
	if !bytes.Equal(second.CertPEM, first.CertPEM) {
		t.Error("reloaded CertPEM differs from the created one")
	}
	if !publicKeyEqual(second.Key.Public(), first.Key.Public()) {
		t.Error("reloaded key differs from the created one")
	}
}

func TestLoadOrCreateDevCAErrors(t *testing.T) {
	otherCA := certtest.NewCA(t, "Other CA")
	nonCA := certtest.NewNonCA(t, "not-a-ca")
	expired, expiredKey := signed(t, &x509.Certificate{
		Subject: pkix.Name{CommonName: "Old Dev CA"}, IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}, time.Date(2014, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC), nil, nil)

	// Each setup writes into a directory that already holds a valid dev CA.
	tests := []struct {
		name  string
		setup func(t *testing.T, dir string)
		want  []string // %s is replaced by dir
	}{
		{"key missing", func(t *testing.T, dir string) { remove(t, join(dir, CAKeyFile)) },
			[]string{"dev CA: %s/ca.pem exists but its key %s/ca-key.pem is missing; restore the key, or delete %s/ca.pem to create a new dev CA"}},
		{"cert missing", func(t *testing.T, dir string) { remove(t, join(dir, CACertFile)) },
			[]string{"dev CA: %s/ca-key.pem exists but its certificate %s/ca.pem is missing; restore the certificate, or delete %s/ca-key.pem"}},
		{"cert unreadable", func(t *testing.T, dir string) { remove(t, join(dir, CACertFile)); mkdir(t, join(dir, CACertFile)) },
			[]string{"dev CA: %s/ca.pem: read: is a directory"}},
		{"key unreadable", func(t *testing.T, dir string) { remove(t, join(dir, CAKeyFile)); mkdir(t, join(dir, CAKeyFile)) },
			[]string{"dev CA: %s/ca-key.pem: read: is a directory"}},
		{"cert garbage", func(t *testing.T, dir string) { writeFile(t, join(dir, CACertFile), []byte("garbage")) },
			[]string{"dev CA: %s/ca.pem: no CERTIFICATE block found", "to start over, delete %s/ca.pem and %s/ca-key.pem"}},
		{"key garbage", func(t *testing.T, dir string) { writeFile(t, join(dir, CAKeyFile), []byte("garbage")) },
			[]string{"dev CA: %s/ca-key.pem: no PRIVATE KEY block found", "to start over, delete"}},
		{"key mismatch", func(t *testing.T, dir string) { writeFile(t, join(dir, CAKeyFile), keyPEM(t, otherCA.Key)) },
			[]string{"dev CA: %s/ca-key.pem does not match the certificate in %s/ca.pem; restore the matching pair, or to start over"}},
		{"not a CA", func(t *testing.T, dir string) {
			writeFile(t, join(dir, CACertFile), nonCA.PEM)
			writeFile(t, join(dir, CAKeyFile), keyPEM(t, nonCA.Key))
		}, []string{"dev CA: %s/ca.pem (CN=not-a-ca) is not a CA: its basicConstraints cA is false (RFC 5280 §4.2.1.9)"}},
		{"expired", func(t *testing.T, dir string) {
			writeFile(t, join(dir, CACertFile), encodeCertsPEM(expired.Raw))
			writeFile(t, join(dir, CAKeyFile), keyPEM(t, expiredKey))
		}, []string{"dev CA: %s/ca.pem: certificate expired on 2024-01-01 (CN=Old Dev CA)", "agents must then trust the new ca.pem"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if _, err := LoadOrCreateDevCA(dir); err != nil {
				t.Fatalf("create: %v", err)
			}
			tt.setup(t, dir)
			ca, err := LoadOrCreateDevCA(dir)
			if ca != nil {
				t.Errorf("CA = %v, want nil on error", ca.Cert.Subject)
			}
			var want []string
			for _, w := range tt.want {
				want = append(want, expand(w, dir))
			}
			wantErr(t, err, want...)
		})
	}
}

func TestIssue(t *testing.T) {
	ca, err := LoadOrCreateDevCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)

	tests := []struct {
		name     string
		dnsNames []string
		ips      []net.IP
		wantCN   string
		verify   []string // host names the certificate must verify for
	}{
		{"DNS and IPs", []string{"relay.test", "*.relay.test"}, []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}, "relay.test", []string{"relay.test", "x.relay.test", "127.0.0.1", "::1"}},
		{"IP only", nil, []net.IP{net.ParseIP("10.0.0.1")}, "10.0.0.1", []string{"10.0.0.1"}},
		{"DNS only", []string{"localhost"}, nil, "localhost", []string{"localhost"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := time.Now()
			c, err := ca.Issue(tt.dnsNames, tt.ips)
			if err != nil {
				t.Fatalf("Issue: %v", err)
			}
			leaf := c.Leaf
			if got := len(c.Certificate); got != 2 || !bytes.Equal(c.Certificate[0], leaf.Raw) || !bytes.Equal(c.Certificate[1], ca.Cert.Raw) {
				t.Fatalf("chain = %d certificates, want (leaf, CA)", got)
			}
			if leaf.Subject.CommonName != tt.wantCN {
				t.Errorf("CN = %q, want %q", leaf.Subject.CommonName, tt.wantCN)
			}
			if leaf.IsCA {
				t.Error("leaf IsCA = true, want false")
			}
			if !slices.Equal(leaf.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}) {
				t.Errorf("ExtKeyUsage = %v, want [serverAuth]", leaf.ExtKeyUsage)
			}
			if got := before.Sub(leaf.NotBefore); got < 59*time.Minute || got > 61*time.Minute {
				t.Errorf("now - NotBefore = %v, want 1h", got)
			}
			if got, want := leaf.NotAfter.Sub(before), 825*24*time.Hour; got < want-time.Minute || got > want+time.Minute {
				t.Errorf("NotAfter - now = %v, want about %v", got, want)
			}
			if pub, ok := leaf.PublicKey.(*ecdsa.PublicKey); !ok || pub.Curve != elliptic.P256() {
				t.Errorf("public key = %T, want ECDSA P-256", leaf.PublicKey)
			}
			for _, host := range tt.verify {
				if _, err := leaf.Verify(x509.VerifyOptions{DNSName: host, Roots: roots}); err != nil {
					t.Errorf("Verify(%s): %v", host, err)
				}
			}
		})
	}
}

func TestIssueClient(t *testing.T) {
	ca, err := LoadOrCreateDevCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	c, err := ca.IssueClient("agent-1")
	if err != nil {
		t.Fatalf("IssueClient: %v", err)
	}
	if c.Leaf.Subject.CommonName != "agent-1" {
		t.Errorf("CN = %q, want agent-1", c.Leaf.Subject.CommonName)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	if _, err := c.Leaf.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("Verify as client: %v", err)
	}
	if _, err := c.Leaf.Verify(x509.VerifyOptions{Roots: roots}); err == nil {
		t.Error("Verify as server = nil error, want refusal (client certificates carry clientAuth only)")
	}
}

func TestIssueErrors(t *testing.T) {
	ca, err := LoadOrCreateDevCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		issue func() (tls.Certificate, error)
		want  string
	}{
		{"no names", func() (tls.Certificate, error) { return ca.Issue(nil, nil) }, "issue server certificate: no DNS names or IPs given; pass at least one name"},
		{"empty name", func() (tls.Certificate, error) { return ca.Issue([]string{"a", ""}, nil) }, "issue server certificate: DNS name 2 is empty; remove it"},
		{"bad IP", func() (tls.Certificate, error) { return ca.Issue(nil, []net.IP{{1, 2}}) }, "issue server certificate: IP 1 is not a valid IPv4 or IPv6 address"},
		{"empty client name", func() (tls.Certificate, error) { return ca.IssueClient("") }, "issue client certificate: empty common name"},
		{"nil CA", func() (tls.Certificate, error) { return (*DevCA)(nil).IssueClient("x") }, "dev CA is not loaded; create it with LoadOrCreateDevCA"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.issue()
			wantErr(t, err, tt.want)
		})
	}
}

func TestLoadOrCreateDevLeaf(t *testing.T) {
	localhost := []string{"localhost"}
	loopback := []net.IP{net.IPv4(127, 0, 0, 1)}
	now := time.Now()

	tests := []struct {
		name      string
		prepare   func(t *testing.T, dir string, ca *DevCA) // after a first LoadOrCreateDevLeaf(localhost, loopback)
		dnsNames  []string
		ips       []net.IP
		wantReuse bool
	}{
		{"same names", nil, localhost, loopback, true},
		{"same names, other order and case", nil, []string{"LOCALHOST", "localhost"}, []net.IP{net.ParseIP("127.0.0.1")}, true},
		{"DNS name added", nil, []string{"localhost", "relay.test"}, loopback, false},
		{"IP removed", nil, localhost, nil, false},
		{"IP changed", nil, localhost, []net.IP{net.IPv4(10, 0, 0, 1)}, false},
		{"key missing", func(t *testing.T, dir string, _ *DevCA) { remove(t, join(dir, LeafKeyFile)) }, localhost, loopback, false},
		{"cert missing", func(t *testing.T, dir string, _ *DevCA) { remove(t, join(dir, LeafCertFile)) }, localhost, loopback, false},
		{"cert damaged", func(t *testing.T, dir string, _ *DevCA) { writeFile(t, join(dir, LeafCertFile), []byte("garbage")) }, localhost, loopback, false},
		{"signed by another CA", func(t *testing.T, dir string, _ *DevCA) {
			other := certtest.NewCA(t, "Other CA")
			certtest.WriteKeyPair(t, dir, "relay", other.Server(t, "localhost", "127.0.0.1"))
		}, localhost, loopback, false},
		{"expires within 30 days", func(t *testing.T, dir string, ca *DevCA) {
			tmpl := leafTemplate("localhost")
			tmpl.IPAddresses = loopback
			c, key := signed(t, tmpl, now.Add(-time.Hour), now.Add(29*24*time.Hour), ca.Cert, ca.Key)
			writeFile(t, join(dir, LeafCertFile), encodeCertsPEM(c.Raw, ca.Cert.Raw))
			writeFile(t, join(dir, LeafKeyFile), keyPEM(t, key))
		}, localhost, loopback, false},
		{"client certificate on disk", func(t *testing.T, dir string, ca *DevCA) {
			c, err := ca.IssueClient("localhost")
			if err != nil {
				t.Fatal(err)
			}
			certtest.WriteKeyPair(t, dir, "relay", c)
		}, localhost, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			ca, err := LoadOrCreateDevCA(dir)
			if err != nil {
				t.Fatal(err)
			}
			first, err := LoadOrCreateDevLeaf(dir, ca, localhost, loopback)
			if err != nil {
				t.Fatalf("first LoadOrCreateDevLeaf: %v", err)
			}
			if tt.prepare != nil {
				tt.prepare(t, dir, ca)
			}
			onDiskBefore := readOrNil(t, join(dir, LeafCertFile))

			got, err := LoadOrCreateDevLeaf(dir, ca, tt.dnsNames, tt.ips)
			if err != nil {
				t.Fatalf("LoadOrCreateDevLeaf: %v", err)
			}
			if reused := got.Leaf.Equal(first.Leaf); reused != tt.wantReuse {
				t.Errorf("reused the existing leaf = %v, want %v", reused, tt.wantReuse)
			}
			if !leafFits(got.Leaf, ca, tt.dnsNames, tt.ips, time.Now()) {
				t.Errorf("leaf covers %v %v, want exactly %v %v, signed by the dev CA", got.Leaf.DNSNames, got.Leaf.IPAddresses, tt.dnsNames, tt.ips)
			}
			if len(got.Certificate) != 2 || !bytes.Equal(got.Certificate[1], ca.Cert.Raw) {
				t.Errorf("chain = %d certificates, want (leaf, CA)", len(got.Certificate))
			}
			onDisk, err := LoadKeyPair(join(dir, LeafCertFile), join(dir, LeafKeyFile), "", "")
			if err != nil {
				t.Fatalf("reading back: %v", err)
			}
			if !onDisk.Leaf.Equal(got.Leaf) {
				t.Errorf("%s holds %s, want the returned leaf", LeafCertFile, onDisk.Leaf.Subject)
			}
			if tt.wantReuse && !bytes.Equal(readOrNil(t, join(dir, LeafCertFile)), onDiskBefore) {
				t.Errorf("%s was rewritten, want it untouched", LeafCertFile)
			}
			if got := fileMode(t, join(dir, LeafKeyFile)); got != 0o600 {
				t.Errorf("%s mode = %o, want 600", LeafKeyFile, got)
			}
		})
	}
}

func TestLoadOrCreateDevLeafErrors(t *testing.T) {
	dir := t.TempDir()
	ca, err := LoadOrCreateDevCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		setup func(t *testing.T, dir string)
		ca    *DevCA
		names []string
		want  string
	}{
		{"nil CA", nil, nil, []string{"localhost"}, "dev certificate: dev CA is not loaded"},
		{"no names", nil, ca, nil, "dev certificate: issue server certificate: no DNS names or IPs given"},
		{"cert unreadable", func(t *testing.T, dir string) { mkdir(t, join(dir, LeafCertFile)) }, ca, []string{"localhost"}, "dev certificate: %s/relay.pem: read: is a directory"},
		{"key unreadable", func(t *testing.T, dir string) {
			writeFile(t, join(dir, LeafCertFile), ca.CertPEM)
			mkdir(t, join(dir, LeafKeyFile))
		}, ca, []string{"localhost"}, "dev certificate: %s/relay-key.pem: read: is a directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if tt.setup != nil {
				tt.setup(t, dir)
			}
			_, err := LoadOrCreateDevLeaf(dir, tt.ca, tt.names, nil)
			wantErr(t, err, expand(tt.want, dir))
		})
	}
}

// TestDevHandshake serves a dev leaf on 127.0.0.1 and completes a mutual TLS handshake
// with a client that trusts only ca.pem as read from disk.
func TestDevHandshake(t *testing.T) {
	dir := t.TempDir()
	ca, err := LoadOrCreateDevCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	serverCert, err := LoadOrCreateDevLeaf(dir, ca, []string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	clientCert, err := ca.IssueClient("agent-1")
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(join(dir, CACertFile))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		t.Fatalf("%s: no certificates", CACertFile)
	}

	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		Certificates: []tls.Certificate{serverCert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    roots,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })

	type result struct {
		peer string
		err  error
	}
	served := make(chan result, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			served <- result{err: err}
			return
		}
		defer func() { _ = conn.Close() }()
		tc := conn.(*tls.Conn)
		_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
		if err := tc.HandshakeContext(t.Context()); err != nil {
			served <- result{err: err}
			return
		}
		_, err = tc.Write([]byte("ok"))
		served <- result{peer: tc.ConnectionState().PeerCertificates[0].Subject.CommonName, err: err}
	}()

	dialer := &tls.Dialer{Config: &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{clientCert}}}
	conn, err := dialer.DialContext(t.Context(), "tcp", ln.Addr().String()) // verifies 127.0.0.1
	if err != nil {
		t.Fatalf("dial %s: %v", ln.Addr(), err)
	}
	defer func() { _ = conn.Close() }()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(conn)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if string(got) != "ok" {
		t.Errorf("read %q, want %q", got, "ok")
	}
	res := <-served
	if res.err != nil {
		t.Fatalf("server: %v", res.err)
	}
	if res.peer != "agent-1" {
		t.Errorf("server saw client %q, want agent-1", res.peer)
	}
	if cs := conn.(*tls.Conn).ConnectionState(); cs.PeerCertificates[0].Subject.CommonName != "localhost" {
		t.Errorf("client saw server %q, want localhost", cs.PeerCertificates[0].Subject.CommonName)
	}
}

func remove(t *testing.T, path string) {
	t.Helper()
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
}

func mkdir(t *testing.T, path string) {
	t.Helper()
	if err := os.Mkdir(path, 0o700); err != nil {
		t.Fatal(err)
	}
}

func readOrNil(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return b
}

// expand replaces every %s in s with dir.
func expand(s, dir string) string { return strings.ReplaceAll(s, "%s", dir) }
