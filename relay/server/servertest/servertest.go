// Package servertest runs a real relay on loopback for tests in any package: its own
// CA and certificate, an authtoken, listeners on free ports, and cleanup at the end of
// the test. Agents, diagnose and the command line are tested against it.
package servertest

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"testing"
	"time"

	"github.com/ferrytunnel/ferry/relay/cert/certtest"
	"github.com/ferrytunnel/ferry/relay/config"
	"github.com/ferrytunnel/ferry/relay/server"
	"github.com/ferrytunnel/ferry/relay/store"
)

// Domain is the relay's base domain in tests.
const Domain = "ferry.test"

// Options shapes a test relay.
type Options struct {
	// Names the relay certificate covers (default: Domain, *.Domain and 127.0.0.1).
	Names []string
	// SamePort puts QUIC (UDP) and TLS (TCP) on one port number, as in production.
	SamePort bool
	// Log receives the relay's log (default: the test's output).
	Log *slog.Logger
	// APIAddr turns the management API on (e.g. "127.0.0.1:0"); default off.
	APIAddr string
	// Configure, when set, edits the relay's configuration before it starts (e.g. ACME).
	Configure func(*config.Config)
}

// Relay is one running relay.
type Relay struct {
	Srv   *server.Server
	CA    *certtest.CA
	Token string
	// Store is the relay's store; Account the id of the account Token belongs to.
	Store   *store.Store
	Account string
	// Opts are the server options, editable before Restart.
	Opts server.Options

	t      testing.TB
	cancel context.CancelFunc
	done   chan error
}

// Start runs a relay until the test ends.
func Start(t testing.TB, o Options) *Relay {
	t.Helper()
	if len(o.Names) == 0 {
		o.Names = []string{Domain, "*." + Domain, "127.0.0.1"}
	}
	if o.Log == nil {
		o.Log = slog.New(slog.NewTextHandler(t.Output(), nil))
	}
	ca := certtest.NewCA(t, "Ferry Test Relay CA")
	leaf := ca.Server(t, o.Names...)
	dir := t.TempDir()
	st, err := store.Open(t.Context(), "", dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	acct, err := st.CreateAccount(t.Context(), "test")
	if err != nil {
		t.Fatal(err)
	}
	cred, err := st.CreateCredential(t.Context(), acct.ID, "servertest", "")
	if err != nil {
		t.Fatal(err)
	}
	low := 42000 + rand.IntN(200)*100
	cfg := config.Config{
		QUICAddr: "127.0.0.1:0", HTTPSAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
		TCPPorts: fmt.Sprintf("%d-%d", low, low+99), Domain: Domain, Data: dir,
		LogFormat: "logfmt", LogLevel: "info", APIAddr: o.APIAddr,
		DrainTimeout: "0s", // tests that drain set it with Configure
	}
	if o.Configure != nil {
		o.Configure(&cfg)
	}
	r := &Relay{t: t, CA: ca, Token: cred.Token, Store: st, Account: acct.ID,
		Opts: server.Options{Config: cfg, Certificate: &leaf, Store: st, Log: o.Log, Version: "test"}}
	for attempt := 0; ; attempt++ {
		if o.SamePort {
			// A free UDP port number, then both listeners on it; another process may take
			// the TCP port in between, so try again a few times.
			pc, err := net.ListenPacket("udp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			r.Opts.Config.QUICAddr = pc.LocalAddr().String()
			r.Opts.Config.HTTPSAddr = r.Opts.Config.QUICAddr
			pc.Close()
		}
		err := r.start()
		if err == nil {
			break
		}
		if !o.SamePort || attempt == 5 {
			t.Fatal(err)
		}
	}
	t.Cleanup(r.Stop)
	return r
}

func (r *Relay) start() error {
	srv, err := server.New(r.Opts)
	if err != nil {
		return err
	}
	if err := srv.Listen(); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.Srv, r.cancel, r.done = srv, cancel, make(chan error, 1)
	go func() { r.done <- srv.Serve(ctx) }()
	return nil
}

// Stop stops the relay and checks it stopped cleanly; it is safe to call twice.
func (r *Relay) Stop() {
	r.cancel()
	select {
	case err := <-r.done:
		if err != nil {
			r.t.Errorf("relay Serve = %v, want nil", err)
		}
		r.done <- nil
	case <-time.After(10 * time.Second):
		r.t.Errorf("relay did not stop within 10s")
	}
}

// Restart stops the relay and starts a new one on the same addresses.
func (r *Relay) Restart() {
	r.t.Helper()
	c := &r.Opts.Config
	c.QUICAddr, c.HTTPSAddr, c.HTTPAddr = r.Srv.QUICAddr().String(), r.Srv.HTTPSAddr().String(), r.Srv.HTTPAddr().String()
	if a := r.Srv.APIAddr(); a != nil {
		c.APIAddr = a.String()
	}
	r.Stop()
	if err := r.start(); err != nil {
		r.t.Fatal(err)
	}
}

// NewAccount creates another account with an authtoken; it returns the account id and token.
func (r *Relay) NewAccount(t testing.TB, name string) (id, token string) {
	t.Helper()
	a, err := r.Store.CreateAccount(t.Context(), name)
	if err != nil {
		t.Fatal(err)
	}
	c, err := r.Store.CreateCredential(t.Context(), a.ID, "servertest", "")
	if err != nil {
		t.Fatal(err)
	}
	return a.ID, c.Token
}

// ReserveDomain reserves domain for account (the test account when "") and tells the relay.
func (r *Relay) ReserveDomain(t testing.TB, account, domain string) store.ReservedDomain {
	t.Helper()
	if account == "" {
		account = r.Account
	}
	d, err := r.Store.CreateReservedDomain(t.Context(), store.ReservedDomain{AccountID: account, Domain: domain})
	if err != nil {
		t.Fatal(err)
	}
	r.reload(t)
	return d
}

// ReserveAddr reserves port (on the relay's domain) for account (the test account when "").
func (r *Relay) ReserveAddr(t testing.TB, account string, port int) store.ReservedAddr {
	t.Helper()
	if account == "" {
		account = r.Account
	}
	a, err := r.Store.CreateReservedAddr(t.Context(), store.ReservedAddr{AccountID: account, Addr: fmt.Sprintf("%s:%d", Domain, port)})
	if err != nil {
		t.Fatal(err)
	}
	r.reload(t)
	return a
}

// Ports returns the relay's tcp port range.
func (r *Relay) Ports() config.PortRange {
	pr, _ := config.ParsePorts(r.Opts.Config.TCPPorts)
	return pr
}

func (r *Relay) reload(t testing.TB) {
	t.Helper()
	if err := r.Srv.Reload(t.Context()); err != nil {
		t.Fatal(err)
	}
}
