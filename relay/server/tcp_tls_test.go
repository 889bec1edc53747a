package server_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferrytunnel/ferry/agent/forward"
	"github.com/ferrytunnel/ferry/agent/session"
	"github.com/ferrytunnel/ferry/protocol"
	"github.com/ferrytunnel/ferry/protocol/transport"
	"github.com/ferrytunnel/ferry/relay/cert/certtest"
)

func TestTCPTunnelHalfClose(t *testing.T) { bothTransports(t, testTCPTunnelHalfClose) }

func testTCPTunnelHalfClose(t *testing.T, r *relayEnv) {
	a := r.startAgent(&forward.Tunnel{Name: "echo", Proto: "tcp", Addr: echoServer(t)})
	size := int64(64 << 20)
	if raceEnabled {
		size = 16 << 20
	}
	in, out := transferHashed(t, tcpAddrOf(t, a.url(t, "tcp")), size)
	if in != out {
		t.Fatalf("sha256 of echoed bytes = %x, want %x", in, out)
	}
}

// TestLongTransfer1GiB moves 1 GiB each way through a tcp tunnel and checks it by hash
// (run by `make test-long`, FERRY_LONG=1, without the race detector).
func TestLongTransfer1GiB(t *testing.T) {
	if os.Getenv("FERRY_LONG") == "" {
		t.Skip("set FERRY_LONG=1 (make test-long)")
	}
	r := newRelay(t)
	a := r.startAgent(&forward.Tunnel{Name: "echo", Proto: "tcp", Addr: echoServer(t)})
	start := time.Now()
	in, out := transferHashed(t, tcpAddrOf(t, a.url(t, "tcp")), 1<<30)
	if in != out {
		t.Fatalf("sha256 of echoed bytes = %x, want %x", in, out)
	}
	t.Logf("1 GiB each way in %v (%.0f MiB/s each way)", time.Since(start).Round(time.Millisecond), 1024/time.Since(start).Seconds())
}

// transferHashed writes size random bytes, half-closes, reads the echo until EOF, and
// returns the hashes of what was sent and received.
func transferHashed(t *testing.T, addr string, size int64) (sent, got [32]byte) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Minute))
	hs, hr := sha256.New(), sha256.New()
	errc := make(chan error, 1)
	go func() {
		_, err := io.Copy(io.MultiWriter(c, hs), io.LimitReader(rand.Reader, size))
		if err == nil {
			err = c.(*net.TCPConn).CloseWrite()
		}
		errc <- err
	}()
	n, err := io.Copy(hr, c)
	if err != nil {
		t.Fatalf("read echo: %v after %d bytes", err, n)
	}
	if err := <-errc; err != nil {
		t.Fatalf("write: %v", err)
	}
	if n != size {
		t.Fatalf("echoed %d bytes, want %d", n, size)
	}
	copy(sent[:], hs.Sum(nil))
	copy(got[:], hr.Sum(nil))
	return sent, got
}

func TestTCP1000Concurrent(t *testing.T) { bothTransports(t, testTCP1000Concurrent) }

func testTCP1000Concurrent(t *testing.T, r *relayEnv) {
	a := r.startAgent(&forward.Tunnel{Name: "echo", Proto: "tcp", Addr: echoServer(t)})
	addr := tcpAddrOf(t, a.url(t, "tcp"))
	const n = 1000
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	// All 1,000 open at once, then each echoes.
	for i := range n {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		conns = append(conns, c)
	}
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i, c := range conns {
		wg.Go(func() {
			msg := fmt.Sprintf("conn %04d says hello", i)
			if got, err := echoOnce(c, msg); err != nil || got != msg {
				errs <- fmt.Errorf("conn %d: echo %q, %v; want %q", i, got, err, msg)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestTCPRemoteAddr(t *testing.T) {
	r := newRelay(t)
	pr := r.Ports()
	port := pr.Low + 7
	hp := fmt.Sprintf("%s:%d", domain, port)
	// A chosen address must be reserved by the account first.
	_, err := r.tryAgent(r.agentConfig(&forward.Tunnel{Name: "a", Proto: "tcp", Addr: echoServer(t), RemoteAddr: hp}))
	var se *session.Error
	if !errors.As(err, &se) || se.Kind != session.KindBind || !strings.Contains(err.Error(), "not reserved") {
		t.Fatalf("bind of unreserved %s = %v, want a bind error saying not reserved", hp, err)
	}
	r.ReserveAddr(t, "", port)
	first := r.startAgent(&forward.Tunnel{Name: "a", Proto: "tcp", Addr: echoServer(t), RemoteAddr: hp})
	if got := first.url(t, "tcp"); got != "tcp://"+hp {
		t.Fatalf("reserved bind URL = %s, want tcp://%s", got, hp)
	}
	// The same address again is refused while bound.
	_, err = r.tryAgent(r.agentConfig(&forward.Tunnel{Name: "b", Proto: "tcp", Addr: echoServer(t), RemoteAddr: hp}))
	if !errors.As(err, &se) || se.Kind != session.KindBind || !strings.Contains(err.Error(), "already in use") {
		t.Fatalf("second bind of %s = %v, want a bind error saying already in use", hp, err)
	}
	// Another account may not bind it, even while it is free.
	_, other := r.NewAccount(t, "other")
	cfg := r.agentConfig(&forward.Tunnel{Name: "c", Proto: "tcp", Addr: echoServer(t), RemoteAddr: hp})
	cfg.Authtoken = other
	first.stop(t)
	if _, err = r.tryAgent(cfg); err == nil || !strings.Contains(err.Error(), "reserved by another account") {
		t.Fatalf("other account's bind of %s = %v, want reserved by another account", hp, err)
	}
	// Out of range is refused with the range in the message.
	cfg = r.agentConfig(&forward.Tunnel{Name: "c", Proto: "tcp", Addr: echoServer(t), RemoteAddr: domain + ":1"})
	if _, err = r.tryAgent(cfg); err == nil || !strings.Contains(err.Error(), "outside this relay's tcp range") {
		t.Fatalf("bind port 1 = %v, want outside-range error", err)
	}
	// After the first agent stopped, its address is the owner's again.
	waitFor(t, "port freed", func() bool {
		a, err := r.tryAgent(r.agentConfig(&forward.Tunnel{Name: "d", Proto: "tcp", Addr: echoServer(t), RemoteAddr: hp}))
		return err == nil && a.url(t, "tcp") == "tcp://"+hp
	})
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 5s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestTLSPassthrough(t *testing.T) { bothTransports(t, testTLSPassthrough) }

func testTLSPassthrough(t *testing.T, r *relayEnv) {
	upCA := certtest.NewCA(t, "Upstream CA")
	name := "secure." + domain
	up := tlsEchoServer(t, upCA.Server(t, name))
	r.startAgent(&forward.Tunnel{Name: "tls", Proto: "tls", Addr: up, Domain: name})
	c, err := r.dialTLS(&tls.Config{ServerName: name, RootCAs: upCA.Pool})
	if err != nil {
		t.Fatalf("handshake with the upstream's certificate through the relay: %v", err)
	}
	defer c.Close()
	if got := c.ConnectionState().PeerCertificates[0].Issuer.CommonName; got != "Upstream CA" {
		t.Errorf("certificate issued by %q, want the upstream's CA (the relay must not terminate)", got)
	}
	if got, err := echoOnce(c, "end to end"); err != nil || got != "end to end" {
		t.Errorf("echo = %q, %v", got, err)
	}
}

func TestTLSAgentTerminationAndMutualTLS(t *testing.T) {
	bothTransports(t, testTLSAgentTerminationAndMutualTLS)
}

func testTLSAgentTerminationAndMutualTLS(t *testing.T, r *relayEnv) {
	agentCA := certtest.NewCA(t, "Agent CA")
	clientCA := certtest.NewCA(t, "Client CA")
	otherCA := certtest.NewCA(t, "Other CA")
	name := "app." + domain
	cert := agentCA.Server(t, name)
	r.startAgent(&forward.Tunnel{Name: "mtls", Proto: "tls", Addr: echoServer(t), Domain: name,
		Cert: &cert, ClientCAs: clientCA.Pool, ClientCAsPEM: clientCA.PEM})

	good := clientCA.Client(t, "alice")
	c, err := r.dialTLS(&tls.Config{ServerName: name, RootCAs: agentCA.Pool, Certificates: []tls.Certificate{good}})
	if err != nil {
		t.Fatalf("handshake with a valid client certificate: %v", err)
	}
	if got, err := echoOnce(c, "plaintext at the upstream"); err != nil || got != "plaintext at the upstream" {
		t.Errorf("echo = %q, %v", got, err)
	}
	c.Close()

	for _, tc := range []struct {
		name  string
		certs []tls.Certificate
		max   uint16
		alert string
	}{
		{"no certificate TLS 1.3", nil, tls.VersionTLS13, "certificate required"},
		{"no certificate TLS 1.2", nil, tls.VersionTLS12, "bad certificate"},
		{"other CA TLS 1.3", []tls.Certificate{otherCA.Client(t, "mallory")}, tls.VersionTLS13, "bad certificate"},
		{"other CA TLS 1.2", []tls.Certificate{otherCA.Client(t, "mallory")}, tls.VersionTLS12, "bad certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := handshakeAndRead(r, withClientCert(&tls.Config{ServerName: name, RootCAs: agentCA.Pool, MaxVersion: tc.max}, tc.certs))
			if err == nil || !strings.Contains(err.Error(), tc.alert) {
				t.Errorf("err = %v, want alert %q", err, tc.alert)
			}
		})
	}
}

// withClientCert makes the client send certs even when their issuer is not among the
// server's acceptable CAs (as curl and openssl do; Go's client would otherwise send none).
func withClientCert(conf *tls.Config, certs []tls.Certificate) *tls.Config {
	if len(certs) > 0 {
		conf.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &certs[0], nil }
	}
	return conf
}

// handshakeAndRead completes a handshake and reads once: in TLS 1.3 the server's
// verdict on the client certificate arrives after the client's handshake finished.
func handshakeAndRead(r *relayEnv, conf *tls.Config) error {
	c, err := r.dialTLS(conf)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "x") //nolint:errcheck
	_, err = c.Read(make([]byte, 1))
	return err
}

func TestTLSEdgeTermination(t *testing.T) { bothTransports(t, testTLSEdgeTermination) }

func testTLSEdgeTermination(t *testing.T, r *relayEnv) {
	clientCA := certtest.NewCA(t, "Client CA")
	name := "edge." + domain
	r.startAgent(&forward.Tunnel{Name: "edge", Proto: "tls", Addr: echoServer(t), Domain: name,
		TerminateAt: "edge", ClientCAsPEM: clientCA.PEM})
	c, err := r.dialTLS(&tls.Config{ServerName: name, RootCAs: r.CA.Pool, Certificates: []tls.Certificate{clientCA.Client(t, "bob")}})
	if err != nil {
		t.Fatalf("handshake with the relay's certificate: %v", err)
	}
	if got, err := echoOnce(c, "terminated at the edge"); err != nil || got != "terminated at the edge" {
		t.Errorf("echo = %q, %v", got, err)
	}
	c.Close()
	err = handshakeAndRead(r, &tls.Config{ServerName: name, RootCAs: r.CA.Pool})
	if err == nil || !strings.Contains(err.Error(), "certificate required") {
		t.Errorf("no client certificate: err = %v, want alert certificate required", err)
	}
	err = handshakeAndRead(r, withClientCert(&tls.Config{ServerName: name, RootCAs: r.CA.Pool}, []tls.Certificate{certtest.NewCA(t, "x").Client(t, "eve")}))
	if err == nil || !strings.Contains(err.Error(), "bad certificate") {
		t.Errorf("wrong CA: err = %v, want alert bad certificate", err)
	}
	// Edge termination for a name the relay holds no certificate for is refused at bind.
	r.ReserveDomain(t, "", "app.example.com")
	_, err = r.tryAgent(r.agentConfig(&forward.Tunnel{Name: "x", Proto: "tls", Addr: echoServer(t), Domain: "app.example.com", TerminateAt: "edge"}))
	if err == nil || !strings.Contains(err.Error(), "no certificate for app.example.com") {
		t.Errorf("edge bind without a certificate = %v, want refusal naming the domain", err)
	}
}

func TestSNIRefusals(t *testing.T) {
	r := newRelay(t)
	// No SNI: Go sends none when ServerName is an IP address.
	_, err := r.dialTLS(&tls.Config{ServerName: "127.0.0.1", InsecureSkipVerify: true})
	if err == nil || !strings.Contains(err.Error(), "unrecognized name") {
		t.Errorf("no SNI: err = %v, want alert unrecognized name", err)
	}
	_, err = r.dialTLS(&tls.Config{ServerName: "unknown." + domain, InsecureSkipVerify: true})
	if err == nil || !strings.Contains(err.Error(), "unrecognized name") {
		t.Errorf("unknown SNI: err = %v, want alert unrecognized name", err)
	}
	// Plain HTTP on the TLS port gets a 400 that says to use https://, then a close.
	c, err := net.Dial("tcp", r.Srv.HTTPSAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n") //nolint:errcheck
	if b, err := io.ReadAll(c); err != nil || !strings.HasPrefix(string(b), "HTTP/1.1 400") || !strings.Contains(string(b), "use https://") {
		t.Errorf("plain HTTP on the TLS port: read %q, %v; want a 400 telling to use https://, then close", b, err)
	}
}

func TestSessionErrors(t *testing.T) {
	r := newRelay(t)
	up := echoServer(t)
	tun := func() *forward.Tunnel { return &forward.Tunnel{Name: "t", Proto: "tcp", Addr: up} }

	t.Run("bad authtoken", func(t *testing.T) {
		cfg := r.agentConfig(tun())
		cfg.Authtoken = "fy_wrong"
		_, err := r.tryAgent(cfg)
		var se *session.Error
		if !errors.As(err, &se) || se.Kind != session.KindAuth || !strings.Contains(err.Error(), "authtoken") {
			t.Errorf("err = %v, want an auth error naming the authtoken", err)
		}
	})
	t.Run("untrusted relay certificate", func(t *testing.T) {
		cfg := r.agentConfig(tun())
		cfg.RootCAs = certtest.NewCA(t, "someone else").Pool
		_, err := r.tryAgent(cfg)
		var se *session.Error
		if !errors.As(err, &se) || se.Kind != session.KindUntrusted || !strings.Contains(err.Error(), "--relay-ca") {
			t.Errorf("err = %v, want untrusted error mentioning --relay-ca", err)
		}
	})
	t.Run("not a ferry relay over TCP", func(t *testing.T) {
		// A TLS server with a certificate the agent trusts that selects no protocol of
		// ours (say, a web server on the relay's address): permanent, exit 7, no retries.
		ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{r.CA.Server(t, "127.0.0.1")}})
		if err != nil {
			t.Fatal(err)
		}
		serveConns(t, ln, func(c net.Conn) { c.(*tls.Conn).Handshake(); io.Copy(io.Discard, c) }) //nolint:errcheck
		cfg := r.agentConfig(tun())
		cfg.Transport, cfg.Relay, cfg.ConnectAttempts = "tcp", ln.Addr().String(), 4
		start := time.Now()
		_, err = r.tryAgent(cfg)
		var se *session.Error
		if !errors.As(err, &se) || se.Kind != session.KindVersion || !strings.Contains(err.Error(), "not a ferry relay") {
			t.Errorf("err = %v, want a version error saying it is not a ferry relay", err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("gave up after %v: a permanent error should not be retried", d)
		}
	})
	t.Run("unreachable relay", func(t *testing.T) {
		pc, _ := net.ListenPacket("udp", "127.0.0.1:0")
		addr := pc.LocalAddr().String()
		pc.Close()
		cfg := r.agentConfig(tun())
		cfg.Relay = addr
		cfg.ConnectAttempts = 2
		cfg.Dial = nil
		start := time.Now()
		_, err := r.tryAgent(cfg)
		var se *session.Error
		if !errors.As(err, &se) || se.Kind != session.KindUnreachable || !strings.Contains(err.Error(), "unreachable") {
			t.Errorf("err = %v, want unreachable", err)
		}
		t.Logf("gave up after %v", time.Since(start).Round(time.Millisecond))
	})
	t.Run("name already bound", func(t *testing.T) {
		r.startAgent(&forward.Tunnel{Name: "a", Proto: "http", Addr: up, Domain: "taken"})
		// The message says whose: this agent's own tunnel, another agent of the account
		// (perhaps one killed a moment ago), or another account's.
		_, other := r.NewAccount(t, "other")
		otherCfg := r.agentConfig(&forward.Tunnel{Name: "c", Proto: "http", Addr: up, Domain: "taken." + domain})
		otherCfg.Authtoken = other
		for _, c := range []struct {
			what string
			cfg  session.Config
			want string
		}{
			{"same account", r.agentConfig(&forward.Tunnel{Name: "b", Proto: "http", Addr: up, Domain: "taken." + domain}),
				"already bound by another agent of your account: stop it, or choose another --domain. (An agent killed without a word"},
			{"same agent", r.agentConfig(&forward.Tunnel{Name: "d1", Proto: "http", Addr: up, Domain: "twice"},
				&forward.Tunnel{Name: "d2", Proto: "http", Addr: up, Domain: "twice"}), "already bound by this agent's tunnel d1"},
			{"another account", otherCfg, "already bound by another agent: choose another --domain"},
		} {
			_, err := r.tryAgent(c.cfg)
			var se *session.Error
			if !errors.As(err, &se) || se.Kind != session.KindBind || !strings.Contains(err.Error(), c.want) {
				t.Errorf("%s: err = %v, want bind error %q", c.what, err, c.want)
			}
		}
	})
	t.Run("agent disconnect frees its names", func(t *testing.T) {
		a := r.startAgent(&forward.Tunnel{Name: "a", Proto: "http", Addr: up, Domain: "free-me"})
		a.stop(t)
		waitFor(t, "free-me rebound", func() bool {
			_, err := r.tryAgent(r.agentConfig(&forward.Tunnel{Name: "b", Proto: "http", Addr: up, Domain: "free-me"}))
			return err == nil
		})
	})
}

// TestVersionMismatch speaks the protocol by hand with an impossible version.
func TestVersionMismatch(t *testing.T) {
	r := newRelay(t)
	cfg := r.agentConfig()
	host, _, _ := net.SplitHostPort(cfg.Relay)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sess, err := dialQUIC(ctx, cfg.Relay, &tls.Config{ServerName: host, RootCAs: r.CA.Pool})
	if err != nil {
		t.Fatal(err)
	}
	defer sess.CloseWithError(0, "")
	st, err := sess.OpenStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	st.SetDeadline(time.Now().Add(5 * time.Second))
	if err := protocol.WriteMsg(st, protocol.TypeHello, &protocol.Hello{Version: 99, MinVersion: 98}); err != nil {
		t.Fatal(err)
	}
	var hr protocol.HelloResp
	err = transport.SessionError(protocol.ReadMsg(st, protocol.MaxControlFrame, protocol.TypeHelloResp, &hr))
	var perr *protocol.Error
	if !errors.As(err, &perr) || perr.Code != protocol.CodeVersionMismatch || !strings.Contains(perr.Message, "upgrade ferry-relay") {
		t.Fatalf("hello with version 98..99 = %v, want version_mismatch telling to upgrade ferry-relay", err)
	}
	// An oversized pre-auth frame closes the session and leaves the relay serving.
	sess2, err := dialQUIC(ctx, cfg.Relay, &tls.Config{ServerName: host, RootCAs: r.CA.Pool})
	if err != nil {
		t.Fatal(err)
	}
	st2, _ := sess2.OpenStream(ctx)
	st2.Write(protocol.AppendFrame(nil, protocol.TypeHello, bytes.Repeat([]byte("x"), protocol.MaxPreAuthFrame+1))) //nolint:errcheck
	st2.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(st2); err == nil {
		t.Errorf("oversized hello: stream ended cleanly, want the session closed with an error")
	}
	sess2.CloseWithError(0, "")
	r.startAgent(&forward.Tunnel{Name: "still", Proto: "tcp", Addr: echoServer(t)})
}
