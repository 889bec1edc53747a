package sni

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"testing"
	"time"
)

// testPKI is a self-signed certificate for "relay.example" and 127.0.0.1, and a pool trusting it.
type testPKI struct {
	cert tls.Certificate
	pool *x509.CertPool
}

func newTestPKI(t testing.TB) testPKI {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("generate key: %v", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "relay.example"},
		DNSNames:              []string{"relay.example"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatalf("create certificate: %v", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("parse certificate: %v", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return testPKI{
		cert: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf},
		pool: pool,
	}
}

// tcpPair returns both ends of a real loopback TCP connection, closed at cleanup.
func tcpPair(t testing.TB) (client, server *net.TCPConn) {
	t.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	defer ln.Close()
	type accepted struct {
		c   *net.TCPConn
		err error
	}
	ch := make(chan accepted, 1)
	go func() {
		c, err := ln.AcceptTCP()
		ch <- accepted{c, err}
	}()
	client, err = net.DialTCP("tcp", nil, ln.Addr().(*net.TCPAddr))
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	a := <-ch
	if a.err != nil {
		client.Close()
		t.Fatalf("accept: %v", a.err)
	}
	t.Cleanup(func() {
		client.Close()
		a.c.Close()
	})
	return client, a.c
}

// captureHello runs a crypto/tls client handshake against a net.Pipe and returns the first
// record it writes: its ClientHello, exactly as it would reach the relay.
func captureHello(t testing.TB, cfg *tls.Config) []byte {
	t.Helper()
	clientEnd, serverEnd := net.Pipe()
	done := make(chan error, 1)
	go func() {
		defer clientEnd.Close()
		done <- tls.Client(clientEnd, cfg).Handshake()
	}()
	hdr := make([]byte, recordHeaderLen)
	if _, err := io.ReadFull(serverEnd, hdr); err != nil {
		t.Fatalf("read record header: %v", err)
	}
	if hdr[0] != recordTypeHandshake {
		t.Fatalf("first record type = %d, want %d", hdr[0], recordTypeHandshake)
	}
	rec := make([]byte, recordHeaderLen+(int(hdr[3])<<8|int(hdr[4])))
	copy(rec, hdr)
	if _, err := io.ReadFull(serverEnd, rec[recordHeaderLen:]); err != nil {
		t.Fatalf("read record body: %v", err)
	}
	serverEnd.Close()
	if err := <-done; err == nil {
		t.Fatalf("client handshake against a closed pipe succeeded, want an error")
	}
	return rec
}

// refragment re-sends the handshake message carried in the single record rec as several
// records, cut at the given offsets into the handshake message.
func refragment(t testing.TB, rec []byte, cuts ...int) []byte {
	t.Helper()
	out, err := splitRecord(rec, cuts...)
	if err != nil {
		t.Fatalf("refragment: %v", err)
	}
	return out
}

// splitRecord is refragment for use off the test goroutine.
func splitRecord(rec []byte, cuts ...int) ([]byte, error) {
	if len(rec) < recordHeaderLen {
		return nil, fmt.Errorf("%d bytes, want a record", len(rec))
	}
	msg := rec[recordHeaderLen:]
	if n := int(rec[3])<<8 | int(rec[4]); n != len(msg) {
		return nil, fmt.Errorf("record length %d, have %d bytes: want exactly one record", n, len(msg))
	}
	var out []byte
	prev := 0
	for _, cut := range append(cuts, len(msg)) {
		if cut < prev || cut > len(msg) {
			return nil, fmt.Errorf("cut %d outside [%d, %d]", cut, prev, len(msg))
		}
		out = append(out, record(recordTypeHandshake, rec[1:3], msg[prev:cut])...)
		prev = cut
	}
	return out, nil
}

// record frames payload as one TLS record.
func record(typ byte, vers []byte, payload []byte) []byte {
	out := []byte{typ, vers[0], vers[1], byte(len(payload) >> 8), byte(len(payload))}
	return append(out, payload...)
}

// handshakeMsg frames body as a ClientHello handshake message.
func handshakeMsg(body []byte) []byte {
	out := []byte{handshakeTypeClientHello, byte(len(body) >> 16), byte(len(body) >> 8), byte(len(body))}
	return append(out, body...)
}

// ext is one raw extension for helloSpec.
type ext struct {
	typ  uint16
	data []byte
}

// helloSpec describes a hand-built ClientHello; its zero value plus defaults is valid.
type helloSpec struct {
	vers        uint16 // legacy_version; 0x0303 if zero
	sessionID   []byte
	suites      []byte // cipher_suites vector body; one suite if nil
	compression []byte // compression_methods body; {0} if nil
	noExts      bool   // omit the extensions block entirely
	exts        []ext
	trailing    []byte // bytes after the extensions block
}

func (s helloSpec) body() []byte {
	vers := s.vers
	if vers == 0 {
		vers = 0x0303
	}
	suites := s.suites
	if suites == nil {
		suites = []byte{0x13, 0x01}
	}
	comp := s.compression
	if comp == nil {
		comp = []byte{0}
	}
	b := []byte{byte(vers >> 8), byte(vers)}
	b = append(b, make([]byte, 32)...)
	b = append(b, byte(len(s.sessionID)))
	b = append(b, s.sessionID...)
	b = append(b, byte(len(suites)>>8), byte(len(suites)))
	b = append(b, suites...)
	b = append(b, byte(len(comp)))
	b = append(b, comp...)
	if !s.noExts {
		var exts []byte
		for _, e := range s.exts {
			exts = append(exts, byte(e.typ>>8), byte(e.typ), byte(len(e.data)>>8), byte(len(e.data)))
			exts = append(exts, e.data...)
		}
		b = append(b, byte(len(exts)>>8), byte(len(exts)))
		b = append(b, exts...)
	}
	return append(b, s.trailing...)
}

// bytes returns the spec as one handshake record.
func (s helloSpec) bytes() []byte {
	return record(recordTypeHandshake, []byte{3, 1}, handshakeMsg(s.body()))
}

// sniExt builds a server_name extension with one entry per name, each of type host_name unless
// given as a nameEntry.
func sniExt(entries ...nameEntry) ext {
	var list []byte
	for _, e := range entries {
		list = append(list, e.typ, byte(len(e.name)>>8), byte(len(e.name)))
		list = append(list, e.name...)
	}
	return ext{extServerName, append([]byte{byte(len(list) >> 8), byte(len(list))}, list...)}
}

type nameEntry struct {
	typ  byte
	name string
}

func host(name string) nameEntry { return nameEntry{nameTypeHostName, name} }

func alpnExt(protos ...string) ext {
	var list []byte
	for _, p := range protos {
		list = append(list, byte(len(p)))
		list = append(list, p...)
	}
	return ext{extALPN, append([]byte{byte(len(list) >> 8), byte(len(list))}, list...)}
}

func versionsExt(vs ...uint16) ext {
	list := []byte{byte(2 * len(vs))}
	for _, v := range vs {
		list = append(list, byte(v>>8), byte(v))
	}
	return ext{extSupportedVersions, list}
}

// encodeHello is Parse's inverse for the fields ClientHello keeps.
func encodeHello(h *ClientHello) []byte {
	var s helloSpec
	if h.ServerName != "" {
		s.exts = append(s.exts, sniExt(host(h.ServerName)))
	}
	if h.ALPN != nil {
		s.exts = append(s.exts, alpnExt(h.ALPN...))
	}
	s.exts = append(s.exts, versionsExt(h.Versions...))
	return s.bytes()
}

// isKnownError reports whether err is one of the errors Parse documents.
func isKnownError(err error) bool {
	return errors.Is(err, ErrIncomplete) || errors.Is(err, ErrNotTLS) || errors.Is(err, ErrMalformed)
}
