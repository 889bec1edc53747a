package forward

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/ferrytunnel/ferry/protocol"
	"github.com/ferrytunnel/ferry/relay/cert/certtest"
)

func TestParseAddr(t *testing.T) {
	tests := []struct {
		in      string
		want    string
		wantErr string // substring; "" means success

	}{
		{"8080", "localhost:8080", ""},
		{"1", "localhost:1", ""},
		{"65535", "localhost:65535", ""},
		{"0", "", "port 0: want 1-65535"},
		{"70000", "", "port 70000: want 1-65535"},
		{"65536", "", "port 65536"},
		{"-1", "", "port -1"},
		{"example.com:3000", "example.com:3000", ""},
		{"127.0.0.1:80", "127.0.0.1:80", ""},
		{"[::1]:8080", "[::1]:8080", ""},
		{":8080", "localhost:8080", ""},
		{"host:0", "", "port must be 1-65535"},
		{"host:65536", "", "port must be 1-65535"},
		{"host:http", "", "port must be 1-65535"},
		{"http://host", "host:80", ""},
		{"http://host/", "host:80", ""},
		{"http://host:8081", "host:8081", ""},
		{"http://[::1]:3000", "[::1]:3000", ""},
		{"http://h:81/path", "", "a path is not supported"},
		{"http://h/index.html", "", "a path is not supported"},
		{"http://:8080", "", "want http://HOST:PORT"},
		{"tcp://db:5432", "db:5432", ""},
		{"tcp://db", "", "want tcp://HOST:PORT"},
		{"tls://api:8443", "api:8443", ""},
		{"ftp://h", "", `scheme "ftp" is not supported`},
		{"https://h", "h:443", ""},
		{"http://%zz", "", `upstream "http://%zz"`},
		// The URL form takes the port as written: out-of-range ports are not refused.
		{"http://h:0", "", "port"},
		{"http://h:99999", "", "port"},
		{"garbage", "", "want a port (8080), HOST:PORT or a URL"},
		{"a:b:c", "", "want a port (8080), HOST:PORT or a URL"},
		{"8080 ", "", "want a port"},
		{"", "", "missing upstream"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseAddr("http", tt.in)
			if tt.wantErr == "" {
				if err != nil || got != tt.want {
					t.Fatalf("ParseAddr(%q) = %q, %v; want %q, nil", tt.in, got, err, tt.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("ParseAddr(%q) = %q, nil; want an error containing %q", tt.in, got, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseAddr(%q) error = %q, want it to contain %q", tt.in, err, tt.wantErr)
			}
		})
	}
}

func TestPrepare(t *testing.T) {
	ca := certtest.NewCA(t, "Test CA")
	crt := ca.Server(t, "api.example.com")
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	pemCAs := ca.PEM
	client := ca.Client(t, "alice")
	stranger := certtest.NewCA(t, "Other CA").Client(t, "mallory")

	tests := []struct {
		name    string
		tun     *Tunnel
		wantErr string // substring; "" means success
		// On success:
		wantTerminate string
		wantTLS       bool // the agent terminates TLS
		wantMutual    bool // ... and requires client certificates
		wantPEM       bool // ClientCAsPEM is still there, for the relay's edge
	}{
		{name: "http", tun: &Tunnel{Proto: "http", Addr: "localhost:80"}},
		{name: "tcp", tun: &Tunnel{Proto: "tcp", Addr: "localhost:22"}},
		{name: "http with --crt", tun: &Tunnel{Proto: "http", Cert: &crt}, wantErr: "are for tls tunnels"},
		{name: "http with --terminate-at", tun: &Tunnel{Proto: "http", TerminateAt: "edge"}, wantErr: "are for tls tunnels"},
		{name: "tcp with --mutual-tls-cas", tun: &Tunnel{Proto: "tcp", ClientCAs: pool}, wantErr: "are for tls tunnels"},
		{name: "tls default without crt is upstream", tun: &Tunnel{Proto: "tls"}, wantTerminate: "upstream"},
		{name: "tls default with crt is agent", tun: &Tunnel{Proto: "tls", Cert: &crt}, wantTerminate: "agent", wantTLS: true},
		{name: "tls agent with crt and mutual TLS", tun: &Tunnel{Proto: "tls", TerminateAt: "agent", Cert: &crt, ClientCAs: pool, ClientCAsPEM: pemCAs},
			wantTerminate: "agent", wantTLS: true, wantMutual: true},
		{name: "tls default with crt and mutual TLS", tun: &Tunnel{Proto: "tls", Cert: &crt, ClientCAs: pool, ClientCAsPEM: pemCAs},
			wantTerminate: "agent", wantTLS: true, wantMutual: true},
		{name: "tls agent without crt", tun: &Tunnel{Proto: "tls", TerminateAt: "agent"}, wantErr: "--terminate-at agent needs --crt and --key"},
		{name: "tls upstream", tun: &Tunnel{Proto: "tls", TerminateAt: "upstream"}, wantTerminate: "upstream"},
		{name: "tls upstream with crt", tun: &Tunnel{Proto: "tls", TerminateAt: "upstream", Cert: &crt}, wantErr: "--terminate-at upstream passes TLS through untouched"},
		{name: "tls upstream with mutual-tls-cas", tun: &Tunnel{Proto: "tls", TerminateAt: "upstream", ClientCAs: pool, ClientCAsPEM: pemCAs}, wantErr: "--mutual-tls-cas needs TLS terminated by ferry"},
		{name: "tls default without crt, with mutual-tls-cas", tun: &Tunnel{Proto: "tls", ClientCAs: pool, ClientCAsPEM: pemCAs}, wantErr: "--mutual-tls-cas needs TLS terminated by ferry"},
		{name: "tls edge", tun: &Tunnel{Proto: "tls", TerminateAt: "edge"}, wantTerminate: "edge"},
		{name: "tls edge with mutual TLS", tun: &Tunnel{Proto: "tls", TerminateAt: "edge", ClientCAs: pool, ClientCAsPEM: pemCAs}, wantTerminate: "edge", wantPEM: true},
		{name: "tls edge with crt", tun: &Tunnel{Proto: "tls", TerminateAt: "edge", Cert: &crt}, wantErr: "never holds your key"},
		{name: "tls bad terminate-at", tun: &Tunnel{Proto: "tls", TerminateAt: "client"}, wantErr: `--terminate-at "client": want edge, agent or upstream`},
		{name: "unknown proto", tun: &Tunnel{Proto: "udp"}, wantErr: `proto "udp": want http, tcp, tls or labeled`},
		{name: "empty proto", tun: &Tunnel{}, wantErr: `proto "": want http, tcp, tls or labeled`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tun := tt.tun
			err := tun.Prepare()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Prepare() = %v, want an error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Prepare() = %v, want nil", err)
			}
			if tun.TerminateAt != tt.wantTerminate {
				t.Errorf("TerminateAt = %q, want %q", tun.TerminateAt, tt.wantTerminate)
			}
			if got := tun.tlsConf != nil; got != tt.wantTLS {
				t.Errorf("agent terminates TLS = %v, want %v", got, tt.wantTLS)
			}
			if tun.tlsConf != nil {
				if len(tun.tlsConf.Certificates) != 1 || tun.tlsConf.MinVersion != tls.VersionTLS12 {
					t.Errorf("tls.Config: %d certificates, MinVersion %x; want 1, TLS 1.2", len(tun.tlsConf.Certificates), tun.tlsConf.MinVersion)
				}
				// Behaviour, not fields: a real handshake over a pipe.
				for _, maxVersion := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
					err := handshake(t, tun.tlsConf, pool, nil, maxVersion)
					if tt.wantMutual && err == nil {
						t.Errorf("TLS %x handshake without a client certificate succeeded, want it refused", maxVersion)
					}
					if !tt.wantMutual && err != nil {
						t.Errorf("TLS %x handshake without a client certificate = %v, want nil", maxVersion, err)
					}
					if tt.wantMutual {
						if err := handshake(t, tun.tlsConf, pool, &client, maxVersion); err != nil {
							t.Errorf("TLS %x handshake with a client certificate from the CA = %v, want nil", maxVersion, err)
						}
						if err := handshake(t, tun.tlsConf, pool, &stranger, maxVersion); err == nil {
							t.Errorf("TLS %x handshake with a client certificate from another CA succeeded, want it refused", maxVersion)
						}
					}
				}
			}
			if got := tun.ClientCAsPEM != nil; got != tt.wantPEM {
				t.Errorf("ClientCAsPEM sent to the relay = %v, want %v", got, tt.wantPEM)
			}
			b := tun.Bind(4)
			if b.TunnelID != 4 || b.Proto != tun.Proto || b.TerminateAt != tt.wantTerminate || (b.MutualTLSCAs != "") != tt.wantPEM {
				t.Errorf("Bind(4) = %+v, want tunnel 4, proto %s, terminate_at %q, mutual_tls_cas set %v", b, tun.Proto, tt.wantTerminate, tt.wantPEM)
			}
		})
	}
}

// handshake runs a TLS handshake over a pipe between a server with conf and a client that
// trusts roots, offers cert (if not nil) and speaks at most maxVersion; it returns the
// server's error.
func handshake(t *testing.T, conf *tls.Config, roots *x509.CertPool, cert *tls.Certificate, maxVersion uint16) error {
	t.Helper()
	sc, cc := net.Pipe()
	deadline := time.Now().Add(10 * time.Second)
	sc.SetDeadline(deadline) //nolint:errcheck // net.Pipe deadlines do not fail
	cc.SetDeadline(deadline) //nolint:errcheck
	clientConf := &tls.Config{RootCAs: roots, ServerName: "api.example.com", MaxVersion: maxVersion}
	if cert != nil {
		clientConf.Certificates = []tls.Certificate{*cert}
	}
	done := make(chan error, 1)
	go func() {
		c := tls.Client(cc, clientConf)
		err := c.Handshake()
		if err == nil {
			// Read until the server's alert or close, so the server never blocks writing.
			_, err = c.Read(make([]byte, 1))
			if errors.Is(err, io.EOF) {
				err = nil
			}
		}
		cc.Close()
		done <- err
	}()
	s := tls.Server(sc, conf)
	err := s.Handshake()
	sc.Close()
	clientErr := <-done
	if err == nil && clientErr != nil && !errors.Is(clientErr, io.ErrClosedPipe) {
		t.Errorf("client side of an accepted handshake: %v", clientErr)
	}
	return err
}

func TestBind(t *testing.T) {
	tun := &Tunnel{Name: "web", Proto: "http", Addr: "localhost:8080", Domain: "web.example.com", RemoteAddr: ":1"}
	got := tun.Bind(9)
	want := protocol.Bind{TunnelID: 9, Name: "web", Proto: "http", Domain: "web.example.com", RemoteAddr: ":1"}
	if got.TunnelID != want.TunnelID || got.Name != want.Name || got.Proto != want.Proto || got.Domain != want.Domain ||
		got.RemoteAddr != want.RemoteAddr || got.TerminateAt != "" || got.MutualTLSCAs != "" || got.Labels != nil {
		t.Errorf("Bind(9) = %+v, want %+v", *got, want)
	}
}

func TestUpstream(t *testing.T) {
	crt := certtest.NewCA(t, "Test CA").Server(t)
	tests := []struct {
		tun  *Tunnel
		want string
	}{
		{&Tunnel{Proto: "http", Addr: "localhost:8080"}, "http://localhost:8080"},
		{&Tunnel{Proto: "tcp", Addr: "db:5432"}, "tcp://db:5432"},
		{&Tunnel{Proto: "tls", Addr: "api:8443"}, "tls://api:8443"},
		{&Tunnel{Proto: "tls", Addr: "api:8080", Cert: &crt}, "tcp://api:8080 (TLS terminated by the agent)"},
		{&Tunnel{Proto: "tls", Addr: "api:8080", TerminateAt: "edge"}, "tcp://api:8080 (TLS terminated at the relay)"},
	}
	for _, tt := range tests {
		if got := tt.tun.Upstream(); got != tt.want {
			t.Errorf("Upstream(%s %s) = %q, want %q", tt.tun.Proto, tt.tun.Addr, got, tt.want)
		}
	}
}
