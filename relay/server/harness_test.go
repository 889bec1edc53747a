package server_test

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ferrytunnel/ferry/agent/forward"
	"github.com/ferrytunnel/ferry/agent/session"
	"github.com/ferrytunnel/ferry/relay/acme/acmetest"
	"github.com/ferrytunnel/ferry/relay/config"
	"github.com/ferrytunnel/ferry/relay/server/servertest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, append(acmetest.LeakOptions(),
		// quic-go keeps a package-level ticker goroutine for its connection ID pool.
		goleak.IgnoreAnyFunction("github.com/quic-go/quic-go.(*Transport).runSendQueue"),
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
	)...)
}

const domain = servertest.Domain

// relayEnv is one relay on loopback (servertest) and the transport its agents use.
type relayEnv struct {
	*servertest.Relay
	t *testing.T
	// transport is what agents use: "quic" or "tcp".
	transport string
}

func newRelay(t *testing.T) *relayEnv { return newRelayTransport(t, "quic") }

// bothTransports runs a test once with agents on QUIC and once on the TCP fallback.
func bothTransports(t *testing.T, test func(t *testing.T, r *relayEnv)) {
	for _, tr := range []string{"quic", "tcp"} {
		t.Run(tr, func(t *testing.T) { test(t, newRelayTransport(t, tr)) })
	}
}

func newRelayTransport(t *testing.T, transport string) *relayEnv {
	t.Helper()
	return newRelayConfigured(t, transport, nil)
}

// newRelayConfigured starts a relay whose configuration configure adjusts (nil: as is).
func newRelayConfigured(t *testing.T, transport string, configure func(*config.Config)) *relayEnv {
	t.Helper()
	return &relayEnv{Relay: servertest.Start(t, servertest.Options{Log: testLogger(t), Configure: configure}), t: t, transport: transport}
}

func testLogger(t *testing.T) *slog.Logger {
	if os.Getenv("FERRY_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(t.Output(), nil))
}

// agentEnv is one running agent session.
type agentEnv struct {
	client *session.Client
	urls   []string
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
}

func (r *relayEnv) agentConfig(tunnels ...*forward.Tunnel) session.Config {
	addr := r.Srv.QUICAddr().String()
	if r.transport == "tcp" {
		addr = r.Srv.HTTPSAddr().String()
	}
	return session.Config{
		Transport: r.transport, Relay: addr, Authtoken: r.Token, RootCAs: r.CA.Pool,
		Tunnels: tunnels, Log: testLogger(r.t), Version: "test", ConnectAttempts: 1,
		Backoff: 50 * time.Millisecond,
	}
}

// startAgent runs an agent and waits until its tunnels are bound.
func (r *relayEnv) startAgent(tunnels ...*forward.Tunnel) *agentEnv {
	r.t.Helper()
	a, err := r.tryAgent(r.agentConfig(tunnels...))
	if err != nil {
		r.t.Fatalf("agent: %v", err)
	}
	return a
}

func (r *relayEnv) tryAgent(cfg session.Config) (*agentEnv, error) {
	ready := make(chan []session.Status, 1)
	cfg.OnReady = func(st []session.Status) {
		select {
		case ready <- st:
		default:
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	a := &agentEnv{client: session.New(cfg), cancel: cancel, done: make(chan error, 1)}
	go func() { a.done <- a.client.Run(ctx) }()
	select {
	case st := <-ready:
		for _, s := range st {
			a.urls = append(a.urls, s.URLs...)
		}
		r.t.Cleanup(func() { a.stop(r.t) })
		return a, nil
	case err := <-a.done:
		cancel()
		return nil, err
	case <-time.After(15 * time.Second):
		cancel()
		return nil, errors.New("agent not ready within 15s")
	}
}

func (a *agentEnv) stop(t *testing.T) {
	a.once.Do(func() {
		a.cancel()
		select {
		case err := <-a.done:
			if err != nil {
				t.Errorf("agent Run = %v, want nil after cancel", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("agent did not stop within 10s of cancel")
		}
	})
}

// waitEnded waits up to 10 s for the agent to end on its own (what stands for it) and
// returns what Run returned.
func (a *agentEnv) waitEnded(t *testing.T, what string) error {
	t.Helper()
	select {
	case err := <-a.done:
		a.once.Do(a.cancel) // it has ended: nothing for the cleanup to wait for
		return err
	case <-time.After(10 * time.Second):
		t.Fatalf("%s is still running after 10s", what)
		return nil
	}
}

// url returns the agent's public URL with the given scheme.
func (a *agentEnv) url(t *testing.T, scheme string) string {
	t.Helper()
	for _, u := range a.urls {
		if strings.HasPrefix(u, scheme+"://") {
			return u
		}
	}
	t.Fatalf("no %s URL in %v", scheme, a.urls)
	return ""
}

// httpClient talks to the relay's public listeners whatever the URL's host resolves to.
func (r *relayEnv) httpClient(h2 bool) *http.Client {
	https, plain := r.Srv.HTTPSAddr().String(), r.Srv.HTTPAddr().String()
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			target := plain
			if strings.HasSuffix(addr, ":"+port(https)) {
				target = https
			}
			var d net.Dialer
			return d.DialContext(ctx, "tcp", target)
		},
		TLSClientConfig:   &tls.Config{RootCAs: r.CA.Pool},
		ForceAttemptHTTP2: h2,
	}
	if !h2 {
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	r.t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

func port(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}

// dialTLS opens a TLS connection to the relay's public TLS port with the given SNI.
func (r *relayEnv) dialTLS(conf *tls.Config) (*tls.Conn, error) {
	d := &net.Dialer{Timeout: 5 * time.Second}
	return tls.DialWithDialer(d, "tcp", r.Srv.HTTPSAddr().String(), conf)
}

// echoServer is a TCP upstream that echoes and propagates half-close.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return serveConns(t, ln, func(c net.Conn) {
		io.Copy(c, c) //nolint:errcheck
		c.(*net.TCPConn).CloseWrite()
	})
}

// serveConns runs handle for each connection on ln (closing it after) until the test ends.
func serveConns(t *testing.T, ln net.Listener, handle func(net.Conn)) string {
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				handle(c)
			})
		}
	})
	return ln.Addr().String()
}

// tlsEchoServer terminates TLS with cert and echoes.
func tlsEchoServer(t *testing.T, cert tls.Certificate) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	return serveConns(t, ln, func(c net.Conn) { io.Copy(c, c) }) //nolint:errcheck
}

// echoOnce writes msg, reads the same number of bytes back and returns them.
func echoOnce(c net.Conn, msg string) (string, error) {
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, msg); err != nil {
		return "", err
	}
	buf := make([]byte, len(msg))
	_, err := io.ReadFull(c, buf)
	return string(buf), err
}

func tcpAddrOf(t *testing.T, url string) string {
	t.Helper()
	_, hp, ok := strings.Cut(url, "://")
	if !ok {
		t.Fatalf("bad url %q", url)
	}
	return net.JoinHostPort("127.0.0.1", port(hp))
}
