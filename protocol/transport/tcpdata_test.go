package transport

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"math"
	"math/big"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/ferrytunnel/ferry/protocol"
)

// dataRelay is a relay in miniature: TLS with both ALPNs on one port, TCP sessions, and
// data connections joined to them by key (what relay/server and relay/session do).
type dataRelay struct {
	ln       net.Listener
	conf     *tls.Config
	sessions chan *TCPSession
	mu       sync.Mutex
	sess     *TCPSession
	key      string
	resumed  int // data connections that resumed the control connection's TLS session
	refused  int
}

func newDataRelay(t *testing.T) (*dataRelay, *tls.Config) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), DNSNames: []string{"relay.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &dataRelay{ln: ln, sessions: make(chan *TCPSession, 1), conf: &tls.Config{MinVersion: tls.VersionTLS13,
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}},
		NextProtos:   []string{protocol.ALPN, protocol.DataALPN}}}
	go r.serve()
	t.Cleanup(func() {
		ln.Close()
		r.mu.Lock()
		if r.sess != nil {
			r.sess.CloseWithError(protocol.CodeClosed, "test over")
		}
		r.mu.Unlock()
	})
	return r, &tls.Config{ServerName: "relay.test", RootCAs: pool, MinVersion: tls.VersionTLS13}
}

func (r *dataRelay) serve() {
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return
		}
		go func() {
			tc := tls.Server(BatchWrites(c), r.conf) // as relay/server does
			if err := tc.Handshake(); err != nil {
				c.Close()
				return
			}
			if tc.ConnectionState().NegotiatedProtocol == protocol.ALPN {
				s, err := NewTCPSession(tc, true)
				if err != nil {
					c.Close()
					return
				}
				r.mu.Lock()
				r.sess, r.key = s, s.AcceptDataConns()
				r.mu.Unlock()
				r.sessions <- s
				return
			}
			var j protocol.DataJoin
			if err := protocol.ReadMsg(tc, protocol.MaxPreAuthFrame, protocol.TypeDataJoin, &j); err != nil {
				c.Close()
				return
			}
			r.mu.Lock()
			s := r.sess
			if tc.ConnectionState().DidResume {
				r.resumed++
			}
			r.mu.Unlock()
			if s == nil || !s.JoinData(j.Key, tc) {
				r.mu.Lock()
				r.refused++
				r.mu.Unlock()
				c.Close()
			}
		}()
	}
}

// connect dials the relay as an agent and starts data connections with key (the
// relay's own when key is "").
func (r *dataRelay) connect(t *testing.T, conf *tls.Config, key string) (agent, relay *TCPSession) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	a, err := DialTCP(ctx, r.ln.Addr().String(), conf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.CloseWithError(protocol.CodeClosed, "test over") })
	// The relay side exists once smux has a stream; open the (control) stream.
	ctrl, err := a.OpenStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ctrl.Write([]byte("x"))
	select {
	case relay = <-r.sessions:
	case <-ctx.Done():
		t.Fatal("relay saw no session")
	}
	r.mu.Lock()
	if key == "" {
		key = r.key
	}
	r.mu.Unlock()
	a.StartDataConns("s1", key)
	return a, relay
}

func idleCount(s *TCPSession) int {
	s.data.mu.Lock()
	defer s.data.mu.Unlock()
	return len(s.data.idle)
}

func waitIdle(t *testing.T, s *TCPSession, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for idleCount(s) < n {
		if time.Now().After(deadline) {
			t.Fatalf("relay has %d idle data connections, want %d", idleCount(s), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestDataConnsCarryStreams: the relay's streams go over the agent's data connections
// while it has idle ones (resumed TLS sessions, kept topped up), with half-close both
// ways, and over the multiplexer when it has none.
func TestDataConnsCarryStreams(t *testing.T) {
	r, conf := newDataRelay(t)
	agent, relay := r.connect(t, conf, "")
	waitIdle(t, relay, DataIdle)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	echo := func(t *testing.T, wantData bool) {
		t.Helper()
		st, err := relay.OpenStream(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		if _, isData := st.(*dataStream); isData != wantData {
			t.Fatalf("stream %T: data connection %v, want %v", st, isData, wantData)
		}
		if _, err := st.Write([]byte("ping")); err != nil {
			t.Fatal(err)
		}
		if err := st.CloseWrite(); err != nil {
			t.Fatal(err)
		}
		got, err := agent.AcceptStream(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer got.Close()
		b, err := io.ReadAll(got) // EOF: the relay's half-close arrived
		if err != nil || string(b) != "ping" {
			t.Fatalf("agent read %q, %v; want ping, EOF", b, err)
		}
		got.Write([]byte("pong"))
		got.CloseWrite()
		b, err = io.ReadAll(st)
		if err != nil || string(b) != "pong" {
			t.Fatalf("relay read %q, %v; want pong, EOF", b, err)
		}
	}
	for range 3 * DataIdle { // more than the pool holds: it is topped up as they are used
		waitIdle(t, relay, 1)
		echo(t, true)
	}
	r.mu.Lock()
	resumed := r.resumed
	r.mu.Unlock()
	if resumed == 0 {
		t.Errorf("no data connection resumed the session's TLS session")
	}

	// Take every idle one without using it: the next stream goes over the multiplexer.
	waitIdle(t, relay, DataIdle)
	var held []Stream
	for idleCount(relay) > 0 {
		st, _ := relay.OpenStream(ctx)
		held = append(held, st)
	}
	echo(t, false)
	for _, st := range held {
		st.Close()
	}
}

// TestDataConnsWrongKey: data connections with a wrong key are refused, and streams still
// flow over the multiplexer.
func TestDataConnsWrongKey(t *testing.T) {
	r, conf := newDataRelay(t)
	agent, relay := r.connect(t, conf, "AAAA")
	deadline := time.Now().Add(5 * time.Second)
	for {
		r.mu.Lock()
		refused := r.refused
		r.mu.Unlock()
		if refused >= DataIdle {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d data connections refused, want %d", refused, DataIdle)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if n := idleCount(relay); n != 0 {
		t.Fatalf("%d data connections joined with a wrong key", n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := relay.OpenStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	st.Write([]byte("hi"))
	got, err := agent.AcceptStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer got.Close()
	b := make([]byte, 2)
	if _, err := io.ReadFull(got, b); err != nil || string(b) != "hi" {
		t.Fatalf("read %q, %v", b, err)
	}
}

// TestDataConnsClosedWithSession: ending the session ends its data connections, busy
// and idle, on both sides; a dead idle one is skipped rather than handed out.
func TestDataConnsClosedWithSession(t *testing.T) {
	r, conf := newDataRelay(t)
	agent, relay := r.connect(t, conf, "")
	waitIdle(t, relay, DataIdle)

	// Kill one idle connection from the agent's side: the relay must not hand it out.
	agent.data.mu.Lock()
	var victim *tls.Conn
	for c := range agent.data.all {
		victim = c
		break
	}
	agent.data.mu.Unlock()
	victim.NetConn().Close()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	time.Sleep(50 * time.Millisecond) // the FIN reaches the relay's socket
	var held []Stream
	for idleCount(relay) > 0 {
		st, err := relay.OpenStream(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.Write([]byte("z")); err != nil {
			t.Fatal(err)
		}
		held = append(held, st)
	}
	accepted := make([]Stream, 0, len(held))
	for range held {
		st, err := agent.AcceptStream(ctx)
		if err != nil {
			t.Fatalf("accept: %v (a stream went to a dead data connection?)", err)
		}
		accepted = append(accepted, st)
	}

	relay.CloseWithError(protocol.CodeClosed, "bye")
	for _, st := range accepted {
		st.SetReadDeadline(time.Now().Add(5 * time.Second))
		b := make([]byte, 8)
		n, _ := st.Read(b) // the "z"
		if n == 0 {
			t.Fatal("lost the first byte")
		}
		if _, err := st.Read(b); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("busy data connection still open after the session ended: %v", err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		agent.data.mu.Lock()
		n := len(agent.data.all)
		agent.data.mu.Unlock()
		if n == 0 && agent.Context().Err() != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("agent still holds %d data connections after the session ended", n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestDataStreamWriteAllocs: moving bulk data over a data connection allocates nothing
// of ours per write once warm (the batch buffer is pooled; TLS reuses its record buffer),
// on the writing side and on the reading side draining it.
func TestDataStreamWriteAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector makes sync.Pool drop items: allocation counts mean nothing")
	}
	r, conf := newDataRelay(t)
	agent, relay := r.connect(t, conf, "")
	waitIdle(t, relay, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := relay.OpenStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, ok := st.(*dataStream); !ok {
		t.Fatalf("stream %T, want a data connection", st)
	}
	st.Write([]byte("x"))
	got, err := agent.AcceptStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer got.Close()
	go func() {
		buf := make([]byte, largeBufSize)
		for {
			if _, err := got.Read(buf); err != nil {
				return
			}
		}
	}()
	payload := make([]byte, largeBufSize)
	for range 20 { // warm the pools and TLS's buffers
		if _, err := st.Write(payload); err != nil {
			t.Fatal(err)
		}
	}
	waitIdle(t, relay, DataIdle) // the agent's replacement handshake is done (it allocates)
	time.Sleep(20 * time.Millisecond)
	// The one allocation is crypto/tls's own on the reading side (an atLeastReader per
	// socket read, in readFromUntil); nothing of ours allocates.
	// The count is process-wide: goroutines of earlier tests still ending can add to one
	// reading, so the least of three is taken.
	least := math.Inf(1)
	for range 3 {
		least = min(least, testing.AllocsPerRun(200, func() { st.Write(payload) }))
	}
	if least > 1 {
		t.Fatalf("%.1f allocations per 64 KiB write (writer and reader together), want at most 1", least)
	}
}
