package sni

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

// fragmentingConn is a client-side conn that re-sends crypto/tls's first write (the ClientHello
// record) as three handshake records, one byte per Write, like a pathological slow client.
type fragmentingConn struct {
	net.Conn
	wrote   bool
	records []byte // what was actually sent for the hello
}

func (c *fragmentingConn) Write(p []byte) (int, error) {
	if c.wrote {
		return c.Conn.Write(p)
	}
	c.wrote = true
	records, err := splitRecord(p, 2, (len(p)-recordHeaderLen)/2)
	if err != nil {
		return 0, fmt.Errorf("first write is not one ClientHello record: %w", err)
	}
	c.records = records
	for i := range c.records {
		if _, err := c.Conn.Write(c.records[i : i+1]); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// oneByteConn is a server-side conn whose Reads return at most one byte, so Peek sees the
// hello arrive byte by byte regardless of how TCP coalesced it.
type oneByteConn struct{ net.Conn }

func (c oneByteConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	return c.Conn.Read(p[:1])
}

// TestPeekThenHandshake peeks real crypto/tls ClientHellos over loopback TCP and then completes
// a real crypto/tls server handshake and an exchange over the returned conn, which proves Peek
// consumed nothing.
func TestPeekThenHandshake(t *testing.T) {
	pki := newTestPKI(t)
	tests := []struct {
		name        string
		client      *tls.Config
		slow        bool // three records, one byte per write and per read
		wantHello   ClientHello
		wantVersion uint16
		wantALPN    string
	}{
		{
			name:        "tls13 sni",
			client:      &tls.Config{ServerName: "Relay.Example"},
			wantHello:   ClientHello{ServerName: "relay.example", Versions: []uint16{tls.VersionTLS13, tls.VersionTLS12}},
			wantVersion: tls.VersionTLS13,
		},
		{
			name:        "ip address no sni",
			client:      &tls.Config{ServerName: "127.0.0.1"},
			wantHello:   ClientHello{Versions: []uint16{tls.VersionTLS13, tls.VersionTLS12}},
			wantVersion: tls.VersionTLS13,
		},
		{
			name:        "alpn",
			client:      &tls.Config{ServerName: "relay.example", NextProtos: []string{"h2", "http/1.1"}},
			wantHello:   ClientHello{ServerName: "relay.example", ALPN: []string{"h2", "http/1.1"}, Versions: []uint16{tls.VersionTLS13, tls.VersionTLS12}},
			wantVersion: tls.VersionTLS13,
			wantALPN:    "h2",
		},
		{
			name:        "tls12 only",
			client:      &tls.Config{ServerName: "relay.example", MaxVersion: tls.VersionTLS12},
			wantHello:   ClientHello{ServerName: "relay.example", Versions: []uint16{tls.VersionTLS12}},
			wantVersion: tls.VersionTLS12,
		},
		{
			name:        "fragmented one byte at a time",
			client:      &tls.Config{ServerName: "relay.example", NextProtos: []string{"h2"}},
			slow:        true,
			wantHello:   ClientHello{ServerName: "relay.example", ALPN: []string{"h2"}, Versions: []uint16{tls.VersionTLS13, tls.VersionTLS12}},
			wantVersion: tls.VersionTLS13,
			wantALPN:    "h2",
		},
		{
			name:        "fragmented tls12",
			client:      &tls.Config{ServerName: "relay.example", MaxVersion: tls.VersionTLS12},
			slow:        true,
			wantHello:   ClientHello{ServerName: "relay.example", Versions: []uint16{tls.VersionTLS12}},
			wantVersion: tls.VersionTLS12,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clientRaw, serverRaw := tcpPair(t)
			var clientConn net.Conn = clientRaw
			var frag *fragmentingConn
			if tc.slow {
				frag = &fragmentingConn{Conn: clientRaw}
				clientConn = frag
			}
			cfg := tc.client.Clone()
			cfg.RootCAs = pki.pool

			clientDone := make(chan error, 1)
			go func() {
				clientDone <- runClient(tls.Client(clientConn, cfg))
			}()

			var peekConn net.Conn = serverRaw
			if tc.slow {
				peekConn = oneByteConn{serverRaw}
			}
			hello, rc, err := Peek(peekConn, 5*time.Second, DefaultMaxBytes)
			if err != nil {
				t.Fatalf("Peek = %v, want nil error", err)
			}
			if !reflect.DeepEqual(*hello, tc.wantHello) {
				t.Errorf("Peek hello = %+v, want %+v", *hello, tc.wantHello)
			}

			srv := tls.Server(rc, &tls.Config{
				Certificates: []tls.Certificate{pki.cert},
				NextProtos:   []string{"h2", "http/1.1"},
			})
			if err := srv.Handshake(); err != nil {
				t.Fatalf("server handshake over peeked conn = %v, want nil error", err)
			}
			state := srv.ConnectionState()
			if state.Version != tc.wantVersion {
				t.Errorf("negotiated version = %#x, want %#x", state.Version, tc.wantVersion)
			}
			if state.NegotiatedProtocol != tc.wantALPN {
				t.Errorf("negotiated ALPN = %q, want %q", state.NegotiatedProtocol, tc.wantALPN)
			}
			if got := Normalize(state.ServerName); got != tc.wantHello.ServerName {
				t.Errorf("crypto/tls saw server name %q, want %q", got, tc.wantHello.ServerName)
			}
			if err := serveEcho(srv); err != nil {
				t.Fatalf("server exchange: %v", err)
			}
			if err := <-clientDone; err != nil {
				t.Fatalf("client: %v", err)
			}
			if tc.slow {
				// The client really sent three records, which parse to the same hello.
				if n := int(frag.records[3])<<8 | int(frag.records[4]); n != 2 {
					t.Errorf("first record carries %d bytes, want 2 (a split handshake header)", n)
				}
				if h, err := Parse(frag.records); err != nil || !reflect.DeepEqual(h, hello) {
					t.Errorf("Parse(sent records) = %+v, %v; want %+v", h, err, hello)
				}
			}
		})
	}
}

// runClient handshakes, sends "ping" and expects "pong".
func runClient(c *tls.Conn) error {
	defer c.Close()
	if err := c.Handshake(); err != nil {
		return err
	}
	if _, err := c.Write([]byte("ping")); err != nil {
		return err
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil {
		return err
	}
	if string(buf) != "pong" {
		return errors.New("client read " + string(buf) + ", want pong")
	}
	return nil
}

// serveEcho expects "ping" and answers "pong".
func serveEcho(c *tls.Conn) error {
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil {
		return err
	}
	if string(buf) != "ping" {
		return errors.New("server read " + string(buf) + ", want ping")
	}
	_, err := c.Write([]byte("pong"))
	return err
}

// TestPeekTimeout has a client send half a ClientHello and stall: Peek must give up at its
// deadline, keep the half it read for replay, and clear the deadline.
func TestPeekTimeout(t *testing.T) {
	hello := captureHello(t, &tls.Config{ServerName: "relay.example"})
	client, server := tcpPair(t)
	half := len(hello) / 2
	if _, err := client.Write(hello[:half]); err != nil {
		t.Fatalf("client write: %v", err)
	}

	const timeout = 200 * time.Millisecond
	start := time.Now()
	h, rc, err := Peek(server, timeout, DefaultMaxBytes)
	elapsed := time.Since(start)
	if !errors.Is(err, ErrTimeout) || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Peek = %+v, %v; want ErrTimeout wrapping os.ErrDeadlineExceeded", h, err)
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("Peek error %v: net.Error Timeout() = false, want true", err)
	}
	if want := "client sent no complete ClientHello within 200ms"; !strings.Contains(err.Error(), want) {
		t.Errorf("Peek error = %q, want it to contain %q", err, want)
	}
	if elapsed < timeout || elapsed > timeout+2*time.Second {
		t.Errorf("Peek returned after %v, want about %v", elapsed, timeout)
	}

	// The deadline is cleared: once the client sends the rest, the whole hello reads back.
	if _, err := client.Write(hello[half:]); err != nil {
		t.Fatalf("client write: %v", err)
	}
	got := make([]byte, len(hello))
	if _, err := io.ReadFull(rc, got); err != nil {
		t.Fatalf("read back after timeout: %v", err)
	}
	if !bytes.Equal(got, hello) {
		t.Errorf("replayed %x, want %x", got, hello)
	}
}

func TestPeekNotTLS(t *testing.T) {
	client, server := tcpPair(t)
	const req = "GET / HTTP/1.1\r\nHost: relay.example\r\n\r\n"
	if _, err := client.Write([]byte(req)); err != nil {
		t.Fatalf("client write: %v", err)
	}
	h, rc, err := Peek(server, 5*time.Second, DefaultMaxBytes)
	if !errors.Is(err, ErrNotTLS) {
		t.Fatalf("Peek = %+v, %v; want ErrNotTLS", h, err)
	}
	// The request replays, so the relay could answer with an HTTPS redirect.
	got := make([]byte, len(req))
	if _, err := io.ReadFull(rc, got); err != nil {
		t.Fatalf("read replay: %v", err)
	}
	if string(got) != req {
		t.Errorf("replayed %q, want %q", got, req)
	}
}

func TestPeekTooLarge(t *testing.T) {
	big := helloSpec{exts: []ext{{21, make([]byte, 8000)}}}.bytes()
	declared := record(recordTypeHandshake, []byte{3, 1}, []byte{handshakeTypeClientHello, 0x01, 0x00, 0x00})
	tiny := refragment(t, helloSpec{exts: []ext{{21, make([]byte, 1000)}}}.bytes(), seq(1, 1000)...)
	tests := []struct {
		name     string
		send     []byte
		maxBytes int
	}{
		{"padded hello", big, 4096},
		{"declared length alone", declared, 4096}, // fails without waiting for the 64 KiB
		{"many one-byte records", tiny, 4096},
		{"default limit", helloSpec{exts: []ext{{21, make([]byte, 16400)}}}.bytes(), 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			client, server := tcpPair(t)
			writeDone := make(chan error, 1)
			go func() {
				_, err := client.Write(tc.send)
				writeDone <- err
			}()
			h, rc, err := Peek(server, 5*time.Second, tc.maxBytes)
			if !errors.Is(err, ErrTooLarge) {
				t.Fatalf("Peek = %+v, %v; want ErrTooLarge", h, err)
			}
			limit := tc.maxBytes
			if limit <= 0 {
				limit = DefaultMaxBytes
			}
			if want := "ClientHello larger than " + strconv.Itoa(limit) + " bytes"; err.Error() != want {
				t.Errorf("Peek error = %q, want %q", err, want)
			}
			if n := len(rc.(*Conn).buf); n > limit {
				t.Errorf("Peek buffered %d bytes, want at most %d", n, limit)
			}
			// Unblock the writer if the kernel buffers could not take everything.
			server.Close()
			<-writeDone
		})
	}
}

func TestPeekEOF(t *testing.T) {
	hello := captureHello(t, &tls.Config{ServerName: "relay.example"})
	tests := []struct {
		name    string
		send    []byte
		wantErr error
	}{
		{"closed before sending", nil, io.EOF},
		{"closed mid hello", hello[:len(hello)-10], io.ErrUnexpectedEOF},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			client, server := tcpPair(t)
			if _, err := client.Write(tc.send); err != nil {
				t.Fatalf("client write: %v", err)
			}
			client.Close()
			h, _, err := Peek(server, 5*time.Second, DefaultMaxBytes)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Peek = %+v, %v; want %v", h, err, tc.wantErr)
			}
		})
	}
}

// TestConnHalfClose peeks over TCP, then half-closes through the returned conn: the client
// must see EOF while the server can still read what the client sends afterwards.
func TestConnHalfClose(t *testing.T) {
	hello := captureHello(t, &tls.Config{ServerName: "relay.example"})
	client, server := tcpPair(t)
	if _, err := client.Write(hello); err != nil {
		t.Fatalf("client write: %v", err)
	}
	_, rc, err := Peek(server, 5*time.Second, DefaultMaxBytes)
	if err != nil {
		t.Fatalf("Peek = %v, want nil error", err)
	}
	cw, ok := rc.(interface{ CloseWrite() error })
	if !ok {
		t.Fatalf("Peek conn %T has no CloseWrite method", rc)
	}
	if err := cw.CloseWrite(); err != nil {
		t.Fatalf("CloseWrite = %v, want nil", err)
	}
	if n, err := client.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Errorf("client Read after CloseWrite = %d, %v; want 0, EOF", n, err)
	}
	if _, err := client.Write([]byte("after")); err != nil {
		t.Fatalf("client write after half-close: %v", err)
	}
	client.CloseWrite()
	got, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("ReadAll = %v", err)
	}
	if want := append(bytes.Clone(hello), "after"...); !bytes.Equal(got, want) {
		t.Errorf("server read %q, want hello + %q", got[len(got)-min(len(got), 5):], "after")
	}
	if rc.LocalAddr().String() != server.LocalAddr().String() || rc.RemoteAddr().String() != server.RemoteAddr().String() {
		t.Errorf("addresses = %v -> %v, want %v -> %v", rc.RemoteAddr(), rc.LocalAddr(), server.RemoteAddr(), server.LocalAddr())
	}
}

func TestConnCloseWriteUnsupported(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	rc := newConn(a, []byte("x"))
	if err := rc.CloseWrite(); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("CloseWrite on net.Pipe = %v, want errors.ErrUnsupported", err)
	}
}

// TestConnCopy relays a peeked TCP connection to another TCP connection with io.Copy in both
// directions (WriteTo, then ReadFrom on the underlying TCP conns, as the relay does).
func TestConnCopy(t *testing.T) {
	hello := captureHello(t, &tls.Config{ServerName: "relay.example"})
	client, public := tcpPair(t)
	agentSide, upstream := tcpPair(t)
	if _, err := client.Write(hello); err != nil {
		t.Fatalf("client write: %v", err)
	}
	_, rc, err := Peek(public, 5*time.Second, DefaultMaxBytes)
	if err != nil {
		t.Fatalf("Peek = %v, want nil error", err)
	}

	copied := make(chan error, 2)
	go func() { // public -> upstream, through the replay buffer
		_, err := io.Copy(agentSide, rc)
		agentSide.CloseWrite()
		copied <- err
	}()
	go func() { // upstream -> public, through Conn.ReadFrom
		_, err := io.Copy(rc, agentSide)
		rc.(*Conn).CloseWrite()
		copied <- err
	}()

	const tail = "rest of the stream"
	if _, err := client.Write([]byte(tail)); err != nil {
		t.Fatalf("client write: %v", err)
	}
	client.CloseWrite()
	got, err := io.ReadAll(upstream)
	if err != nil {
		t.Fatalf("upstream ReadAll = %v", err)
	}
	if want := append(bytes.Clone(hello), tail...); !bytes.Equal(got, want) {
		t.Errorf("upstream got %d bytes, want %d (hello + tail)", len(got), len(want))
	}

	const reply = "reply from upstream"
	if _, err := upstream.Write([]byte(reply)); err != nil {
		t.Fatalf("upstream write: %v", err)
	}
	upstream.CloseWrite()
	back, err := io.ReadAll(client)
	if err != nil {
		t.Fatalf("client ReadAll = %v", err)
	}
	if string(back) != reply {
		t.Errorf("client got %q, want %q", back, reply)
	}
	for range 2 {
		if err := <-copied; err != nil {
			t.Errorf("io.Copy = %v, want nil", err)
		}
	}
}

// TestConnReadSmallBuffers drains the replay buffer through tiny reads.
func TestConnReadSmallBuffers(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	rc := newConn(a, []byte("peeked"))
	go func() {
		b.Write([]byte("live"))
		b.Close()
	}()
	var got []byte
	buf := make([]byte, 4)
	for {
		n, err := rc.Read(buf)
		got = append(got, buf[:n]...)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("Read = %v", err)
		}
	}
	if string(got) != "peekedlive" {
		t.Errorf("read %q, want %q", got, "peekedlive")
	}
}

func seq(from, to int) []int {
	out := make([]int, 0, to-from)
	for i := from; i < to; i++ {
		out = append(out, i)
	}
	return out
}
