package diagnose_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ferrytunnel/ferry/agent/diagnose"
	"github.com/ferrytunnel/ferry/relay/cert/certtest"
	"github.com/ferrytunnel/ferry/relay/server/servertest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// quic-go keeps a package-level ticker goroutine for its connection ID pool.
		goleak.IgnoreAnyFunction("github.com/quic-go/quic-go.(*Transport).runSendQueue"),
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
	)
}

// newRelay starts a relay whose certificate covers names. With samePort, QUIC (UDP) and
// TLS (TCP) listen on one port number, as a production relay on 443 does.
func newRelay(t *testing.T, samePort bool, names ...string) *servertest.Relay {
	t.Helper()
	return servertest.Start(t, servertest.Options{Names: names, SamePort: samePort})
}

func port(addr net.Addr) string {
	_, p, _ := net.SplitHostPort(addr.String())
	return p
}

// run runs the checks and returns the results by name, and the printed output.
func run(t *testing.T, o diagnose.Options) (map[string]diagnose.Result, string) {
	t.Helper()
	var out bytes.Buffer
	results := diagnose.Run(t.Context(), o, &out)
	t.Logf("diagnose %s:\n%s", o.Relay, out.String())
	names := []string{diagnose.CheckDNS, diagnose.CheckTCP, diagnose.CheckTLS, diagnose.CheckQUIC, diagnose.CheckAuth, diagnose.CheckRTT}
	if len(results) != len(names) {
		t.Fatalf("Run returned %d results, want %d", len(results), len(names))
	}
	byName := make(map[string]diagnose.Result)
	for i, r := range results {
		if r.Name != names[i] {
			t.Errorf("result %d is %q, want %q", i, r.Name, names[i])
		}
		byName[r.Name] = r
	}
	if lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n"); len(lines) != len(names) {
		t.Errorf("Run wrote %d lines, want %d:\n%s", len(lines), len(names), out.String())
	}
	return byName, out.String()
}

func wantOK(t *testing.T, rs map[string]diagnose.Result, names ...string) {
	t.Helper()
	for _, n := range names {
		if r := rs[n]; !r.OK || r.Skipped {
			t.Errorf("%s: OK=%v Skipped=%v (%s; %s), want OK", n, r.OK, r.Skipped, r.Detail, r.Fix)
		}
	}
}

func wantFail(t *testing.T, rs map[string]diagnose.Result, names ...string) {
	t.Helper()
	for _, n := range names {
		if r := rs[n]; r.OK || r.Skipped {
			t.Errorf("%s: OK=%v Skipped=%v (%s), want FAIL", n, r.OK, r.Skipped, r.Detail)
		}
	}
}

func wantSkipped(t *testing.T, rs map[string]diagnose.Result, names ...string) {
	t.Helper()
	for _, n := range names {
		if r := rs[n]; !r.Skipped || r.OK || r.Detail == "" {
			t.Errorf("%s: OK=%v Skipped=%v Detail=%q, want skipped with a reason", n, r.OK, r.Skipped, r.Detail)
		}
	}
}

func TestAllOK(t *testing.T) {
	r := newRelay(t, true, "localhost", "127.0.0.1")
	addr := net.JoinHostPort("localhost", port(r.Srv.QUICAddr()))
	rs, out := run(t, diagnose.Options{Relay: addr, Authtoken: r.Token, RootCAs: r.CA.Pool})
	wantOK(t, rs, diagnose.CheckDNS, diagnose.CheckTCP, diagnose.CheckTLS, diagnose.CheckQUIC, diagnose.CheckAuth, diagnose.CheckRTT)
	if d := rs[diagnose.CheckDNS].Detail; !strings.HasPrefix(d, "localhost -> ") {
		t.Errorf("DNS detail = %q, want localhost -> ADDRESSES", d)
	}
	if d := rs[diagnose.CheckAuth].Detail; !strings.Contains(d, `account "test"`) || !strings.Contains(d, "over quic") {
		t.Errorf("authtoken detail = %q, want the account \"test\" over quic", d)
	}
	if d := rs[diagnose.CheckRTT].Detail; !strings.Contains(d, "min ") || !strings.Contains(d, "avg ") {
		t.Errorf("round trip detail = %q, want min and avg", d)
	}
	if !strings.HasPrefix(out, "[ OK ] DNS            localhost -> ") {
		t.Errorf("first line of output = %q, want it to start %q", strings.SplitN(out, "\n", 2)[0], "[ OK ] DNS            localhost -> ")
	}
	if strings.Contains(out, "\x1b[") {
		t.Errorf("output has colour codes without Color set:\n%q", out)
	}
	if diagnose.Failed(slicesOf(rs)) {
		t.Errorf("Failed = true, want false")
	}
}

func slicesOf(rs map[string]diagnose.Result) []diagnose.Result {
	var out []diagnose.Result
	for _, r := range rs {
		out = append(out, r)
	}
	return out
}

func TestIPAddressSkipsDNS(t *testing.T) {
	r := newRelay(t, true)
	rs, _ := run(t, diagnose.Options{Relay: r.Srv.QUICAddr().String(), Authtoken: r.Token, RootCAs: r.CA.Pool})
	wantSkipped(t, rs, diagnose.CheckDNS)
	wantOK(t, rs, diagnose.CheckTCP, diagnose.CheckTLS, diagnose.CheckQUIC, diagnose.CheckAuth, diagnose.CheckRTT)
}

func TestColor(t *testing.T) {
	r := newRelay(t, true)
	_, out := run(t, diagnose.Options{Relay: r.Srv.QUICAddr().String(), RootCAs: r.CA.Pool, Color: true})
	if !strings.Contains(out, "\x1b[") {
		t.Errorf("output has no colour codes with Color set:\n%q", out)
	}
}

func TestNoAuthtoken(t *testing.T) {
	r := newRelay(t, true)
	rs, _ := run(t, diagnose.Options{Relay: r.Srv.QUICAddr().String(), RootCAs: r.CA.Pool})
	wantOK(t, rs, diagnose.CheckTCP, diagnose.CheckTLS, diagnose.CheckQUIC)
	wantSkipped(t, rs, diagnose.CheckAuth, diagnose.CheckRTT)
	if d := rs[diagnose.CheckAuth].Detail; !strings.Contains(d, "--authtoken") {
		t.Errorf("authtoken skip reason = %q, want it to name --authtoken", d)
	}
}

func TestUnknownCA(t *testing.T) {
	r := newRelay(t, true)
	other := certtest.NewCA(t, "Some Other CA")
	rs, out := run(t, diagnose.Options{Relay: r.Srv.QUICAddr().String(), Authtoken: r.Token, RootCAs: other.Pool})
	wantOK(t, rs, diagnose.CheckTCP)
	wantFail(t, rs, diagnose.CheckTLS, diagnose.CheckQUIC)
	wantSkipped(t, rs, diagnose.CheckAuth, diagnose.CheckRTT)
	for _, n := range []string{diagnose.CheckTLS, diagnose.CheckQUIC} {
		if r := rs[n]; !strings.Contains(r.Fix, "--relay-ca FILE") || !strings.Contains(r.Detail, "unknown authority") {
			t.Errorf("%s = %q; %q, want an unknown authority and the --relay-ca fix", n, r.Detail, r.Fix)
		}
	}
	if !strings.Contains(out, "[FAIL] TLS (TCP)") || !strings.Contains(out, "pass --relay-ca FILE (a dev relay writes DATA/ca.pem)") {
		t.Errorf("output does not show the TLS failure with its fix:\n%s", out)
	}
	if !diagnose.Failed(slicesOf(rs)) {
		t.Errorf("Failed = false, want true")
	}
}

func TestNameMismatch(t *testing.T) {
	r := newRelay(t, true, "ferry.test", "127.0.0.1")
	addr := net.JoinHostPort("localhost", port(r.Srv.QUICAddr()))
	rs, _ := run(t, diagnose.Options{Relay: addr, Authtoken: r.Token, RootCAs: r.CA.Pool})
	wantOK(t, rs, diagnose.CheckDNS, diagnose.CheckTCP)
	wantFail(t, rs, diagnose.CheckTLS)
	if d := rs[diagnose.CheckTLS].Detail; !strings.Contains(d, "name mismatch") || !strings.Contains(d, "ferry.test") {
		t.Errorf("TLS detail = %q, want a name mismatch naming ferry.test", d)
	}
}

func TestBadAuthtoken(t *testing.T) {
	r := newRelay(t, true)
	rs, _ := run(t, diagnose.Options{Relay: r.Srv.QUICAddr().String(), Authtoken: "fy_not-a-token", RootCAs: r.CA.Pool})
	wantOK(t, rs, diagnose.CheckTCP, diagnose.CheckTLS, diagnose.CheckQUIC)
	wantFail(t, rs, diagnose.CheckAuth)
	wantSkipped(t, rs, diagnose.CheckRTT)
	a := rs[diagnose.CheckAuth]
	if !strings.Contains(a.Detail, "auth_failed") || !strings.Contains(a.Fix, "create one with `ferry-relay token create` on the relay") {
		t.Errorf("authtoken = %q; %q, want auth_failed and the token create fix", a.Detail, a.Fix)
	}
}

func TestNothingListens(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	rs, _ := run(t, diagnose.Options{Relay: addr, Authtoken: "fy_x", Timeout: 500 * time.Millisecond})
	wantFail(t, rs, diagnose.CheckTCP, diagnose.CheckQUIC)
	wantSkipped(t, rs, diagnose.CheckDNS, diagnose.CheckTLS, diagnose.CheckAuth, diagnose.CheckRTT)
	if f := rs[diagnose.CheckQUIC].Fix; !strings.Contains(f, "--transport tcp") {
		t.Errorf("QUIC fix = %q, want it to suggest --transport tcp", f)
	}
}

func TestUDPBlocked(t *testing.T) {
	r := newRelay(t, false)
	https := r.Srv.HTTPSAddr().String()
	// Swallow UDP on the HTTPS port: QUIC goes nowhere while TCP works.
	pc, err := net.ListenPacket("udp", https)
	if err != nil {
		t.Fatalf("bind UDP on the relay's HTTPS port %s: %v", https, err)
	}
	defer pc.Close()
	rs, out := run(t, diagnose.Options{Relay: https, Authtoken: r.Token, RootCAs: r.CA.Pool, Timeout: 500 * time.Millisecond})
	wantOK(t, rs, diagnose.CheckTCP, diagnose.CheckTLS, diagnose.CheckAuth, diagnose.CheckRTT)
	wantFail(t, rs, diagnose.CheckQUIC)
	q := rs[diagnose.CheckQUIC]
	if !strings.Contains(q.Detail, "no answer within 500ms") || !strings.Contains(q.Detail, "UDP to port "+port(r.Srv.HTTPSAddr())+" may be blocked") {
		t.Errorf("QUIC detail = %q, want no answer and UDP may be blocked", q.Detail)
	}
	if !strings.Contains(q.Fix, "--transport auto") || !strings.Contains(q.Fix, "--transport tcp") {
		t.Errorf("QUIC fix = %q, want --transport auto and --transport tcp", q.Fix)
	}
	if d := rs[diagnose.CheckAuth].Detail; !strings.Contains(d, "over tcp") {
		t.Errorf("authtoken detail = %q, want over tcp", d)
	}
	if d := rs[diagnose.CheckRTT].Detail; !strings.HasSuffix(d, "(tcp)") {
		t.Errorf("round trip detail = %q, want it to end (tcp)", d)
	}
	if !strings.Contains(out, "[FAIL] QUIC (UDP)     no answer within 500ms — UDP to port") {
		t.Errorf("output does not show the QUIC failure:\n%s", out)
	}
}

func TestNotFerryTLS(t *testing.T) {
	// A TLS server that speaks no ferry/1: the TLS check must say so.
	ca := certtest.NewCA(t, "Plain CA")
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{ca.Server(t)}})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.(*tls.Conn).Handshake() //nolint:errcheck
			c.Close()
		}
	}()
	defer func() { ln.Close(); <-done }()
	rs, _ := run(t, diagnose.Options{Relay: ln.Addr().String(), RootCAs: ca.Pool, Timeout: 500 * time.Millisecond})
	wantFail(t, rs, diagnose.CheckTLS)
	if d := rs[diagnose.CheckTLS].Detail; !strings.Contains(d, "ferry/1") {
		t.Errorf("TLS detail = %q, want it to name ferry/1", d)
	}
}

func TestBadRelayAddress(t *testing.T) {
	rs, _ := run(t, diagnose.Options{Relay: "relay.example.com"})
	wantFail(t, rs, diagnose.CheckDNS)
	wantSkipped(t, rs, diagnose.CheckTCP, diagnose.CheckTLS, diagnose.CheckQUIC, diagnose.CheckAuth, diagnose.CheckRTT)
	if f := rs[diagnose.CheckDNS].Fix; !strings.Contains(f, "HOST:PORT") {
		t.Errorf("DNS fix = %q, want HOST:PORT", f)
	}
}

func TestInterrupted(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	results := diagnose.Run(ctx, diagnose.Options{Relay: "127.0.0.1:1"}, io.Discard)
	for _, r := range results {
		if !r.Skipped || r.Detail != "interrupted" {
			t.Errorf("%s: Skipped=%v Detail=%q, want skipped: interrupted", r.Name, r.Skipped, r.Detail)
		}
	}
}
