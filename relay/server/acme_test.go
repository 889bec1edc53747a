package server_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrytunnel/ferry/agent/forward"
	"github.com/ferrytunnel/ferry/relay/acme/acmetest"
	"github.com/ferrytunnel/ferry/relay/cert/certtest"
	"github.com/ferrytunnel/ferry/relay/config"
	"github.com/ferrytunnel/ferry/relay/server"
	"github.com/ferrytunnel/ferry/relay/server/servertest"
	"github.com/ferrytunnel/ferry/relay/store"
)

// The ACME tests run the real relay (servertest) with automated certificates against Pebble
// (acmetest), all on loopback:
//
//	Pebble — the ACME CA; the relay trusts its API through --acme-ca-root, and its validation
//	         authority connects to the relay's real HTTP and HTTPS listeners (it is started, with
//	         their ports, once the relay has bound them);
//	acmetest.Resolver — the recursive resolver Pebble uses: A records for the test names, the
//	         user's CNAME _acme-challenge.<base> → acme_challenge_cname_target, and the relay's
//	         challenge zone forwarded to its --dns-addr (the NS delegation).
//
// Everything else is the relay's own: the management API creates the reserved domains and
// reports certificate_management_status; the edge answers HTTP-01 on its HTTP listener and
// TLS-ALPN-01 in its SNI dispatcher; agents bind the names and the edge terminates TLS with the
// issued certificates.

// acmeZone is the relay's challenge zone (--acme-zone).
const acmeZone = "challenges.ferry.test"

// acmeIssueTimeout bounds the wait for a certificate (a few seconds under -race).
const acmeIssueTimeout = 20 * time.Second

type acmeRelay struct {
	*relayEnv
	ca  *acmetest.Pebble
	dns *acmetest.Resolver
	api *apiClient
}

// newACMERelay starts Pebble, the resolver and a relay with automated certificates and its
// challenge zone on; without plainHTTP the relay has no HTTP listener (so TLS-ALPN-01 is the only
// challenge left for plain names).
func newACMERelay(t *testing.T, plainHTTP bool) *acmeRelay {
	t.Helper()
	res := acmetest.StartResolver(t)
	ca := acmetest.NewPebble(t, acmetest.PebbleOptions{Resolver: res.Addr})
	relay := servertest.Start(t, servertest.Options{Log: testLogger(t), APIAddr: "127.0.0.1:0", Configure: func(c *config.Config) {
		c.ACMEEmail = "ops@ferry.test"
		c.ACMECA = ca.Directory
		c.ACMECARoot = ca.APIRootsFile
		c.ACMEZone = acmeZone
		c.DNSAddr = "127.0.0.1:0"
		if !plainHTTP {
			c.HTTPAddr = ""
		}
	}})
	res.Forward(acmeZone, relay.Srv.ACMEDNSAddr().String())
	// Pebble validates against the relay's real listeners.
	httpPort := 0
	if a := relay.Srv.HTTPAddr(); a != nil {
		httpPort = portNum(t, a.String())
	}
	ca.Start(httpPort, portNum(t, relay.Srv.HTTPSAddr().String()))
	r := &acmeRelay{relayEnv: &relayEnv{Relay: relay, t: t, transport: "quic"}, ca: ca, dns: res}
	r.api = r.relayEnv.api(relay.Account)
	return r
}

func portNum(t *testing.T, addr string) int {
	t.Helper()
	n, err := strconv.Atoi(port(addr))
	if err != nil {
		t.Fatalf("port of %q: %v", addr, err)
	}
	return n
}

// certStatus returns a reserved domain's certificate_management_status as the API shows it.
func certStatus(d map[string]any) (renewsAt any, job map[string]any) {
	st, _ := d["certificate_management_status"].(map[string]any)
	job, _ = st["provisioning_job"].(map[string]any)
	return st["renews_at"], job
}

func isIssued(d map[string]any) bool {
	renews, job := certStatus(d)
	return renews != nil && job == nil
}

func isFailed(d map[string]any) bool {
	_, job := certStatus(d)
	return job != nil && job["error_code"] == "FERRY_ACME_FAILED"
}

// waitDomains polls GET /reserved_domains/ID for each id until done says so for all of them, and
// returns the last answers by id.
func (r *acmeRelay) waitDomains(done map[string]func(map[string]any) bool) map[string]map[string]any {
	r.t.Helper()
	out := map[string]map[string]any{}
	deadline := time.Now().Add(acmeIssueTimeout)
	for {
		pending := 0
		for id, ok := range done {
			d := r.api.must(200, "GET", "/reserved_domains/"+id, nil)
			out[id] = d
			if !ok(d) {
				pending++
			}
		}
		if pending == 0 {
			return out
		}
		if time.Now().After(deadline) {
			for id, d := range out {
				r.t.Logf("%s %v: certificate_management_status %v", id, d["domain"], d["certificate_management_status"])
			}
			r.t.Fatalf("%d reserved domains not in the expected state after %v", pending, acmeIssueTimeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// storedStatus waits until the relay has saved the domain's status the API shows (the store is
// written by the manager's OnStatus hook, after the in-memory status the API reads).
func (r *acmeRelay) storedStatus(id string, ok func(*store.CertStatus) bool) *store.CertStatus {
	r.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		d, err := r.Store.GetReservedDomain(r.t.Context(), r.Account, id)
		if err != nil {
			r.t.Fatal(err)
		}
		if d.CertStatus != nil && ok(d.CertStatus) {
			return d.CertStatus
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("stored cert_status of %s = %+v, never reached the state the API shows", id, d.CertStatus)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// acmeTLS dials the relay's HTTPS listener with SNI name, trusting only roots, and returns the
// certificate chain it was served (verified for name).
func (r *acmeRelay) acmeTLS(name string, roots *x509.CertPool) []*x509.Certificate {
	r.t.Helper()
	c, err := r.dialTLS(&tls.Config{ServerName: name, RootCAs: roots})
	if err != nil {
		r.t.Fatalf("TLS to %s trusting only Pebble's root: %v", name, err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates
}

// get fetches url through the relay's public listeners (whatever its host), trusting only roots.
func (r *acmeRelay) get(url string, roots *x509.CertPool) string {
	r.t.Helper()
	https, plain := r.Srv.HTTPSAddr().String(), ""
	if a := r.Srv.HTTPAddr(); a != nil {
		plain = a.String()
	}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			target := plain
			if strings.HasSuffix(addr, ":"+port(https)) {
				target = https
			}
			var d net.Dialer
			return d.DialContext(ctx, "tcp", target)
		},
		TLSClientConfig: &tls.Config{RootCAs: roots},
	}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get(url)
	if err != nil {
		r.t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		r.t.Fatalf("GET %s = %d %q", url, resp.StatusCode, body)
	}
	return string(body)
}

// TestACMEReservedDomains: reserved domains created through the management API get certificates
// from the CA on their own (policy letsencrypt by default), validated against the relay's real
// listeners, and the edge serves them to tunnels bound on the names:
//   - a plain name (HTTP-01 or TLS-ALPN-01, whichever certmagic picks);
//   - a wildcard, through the user's CNAME into the relay's challenge zone (DNS-01 served on
//     --dns-addr), its certificate served for a name below it;
//   - a name whose address refuses connections ends failed with the CA's reason;
//
// and the status is both shown by the API and saved in the store.
func TestACMEReservedDomains(t *testing.T) {
	start := time.Now()
	r := newACMERelay(t, true)
	r.dns.SetA("app.acme.test", "127.0.0.1")
	r.dns.SetA("x.wild.acme.test", "127.0.0.1")
	r.dns.SetA("down.acme.test", "127.0.0.2") // nothing listens there

	app := r.api.must(201, "POST", "/reserved_domains", map[string]any{"domain": "app.acme.test"})
	if p, _ := app["certificate_management_policy"].(map[string]any); p["authority"] != "letsencrypt" || p["private_key_type"] != "ecdsa" {
		t.Errorf("default certificate_management_policy = %v, want letsencrypt/ecdsa", app["certificate_management_policy"])
	}
	if app["acme_challenge_cname_target"] != nil {
		t.Errorf("plain name has acme_challenge_cname_target %v, want null", app["acme_challenge_cname_target"])
	}
	if _, job := certStatus(app); job == nil {
		t.Errorf("just created: certificate_management_status %v, want a provisioning_job", app["certificate_management_status"])
	}
	wild := r.api.must(201, "POST", "/reserved_domains", map[string]any{"domain": "*.wild.acme.test"})
	target, _ := wild["acme_challenge_cname_target"].(string)
	if !strings.HasSuffix(target, "."+acmeZone) {
		t.Fatalf("acme_challenge_cname_target = %v, want a name in %s", wild["acme_challenge_cname_target"], acmeZone)
	}
	r.dns.SetCNAME("_acme-challenge.wild.acme.test", target) // what the user adds at their DNS host
	down := r.api.must(201, "POST", "/reserved_domains", map[string]any{"domain": "down.acme.test"})
	appID, wildID, downID := app["id"].(string), wild["id"].(string), down["id"].(string)

	got := r.waitDomains(map[string]func(map[string]any) bool{appID: isIssued, wildID: isIssued, downID: isFailed})
	t.Logf("states reached after %v", time.Since(start).Round(time.Millisecond))

	// (c) The failure, in the CA's words, with a retry scheduled; saved too.
	renews, job := certStatus(got[downID])
	if msg := fmt.Sprint(job["msg"]); !strings.Contains(msg, "127.0.0.2:") {
		t.Errorf("down.acme.test: provisioning_job.msg %q, want the CA's error about 127.0.0.2:PORT", msg)
	}
	if renews != nil || job["retries_at"] == nil || job["started_at"] == nil {
		t.Errorf("down.acme.test: certificate_management_status %v, want started_at and retries_at, no renews_at", got[downID]["certificate_management_status"])
	}
	r.storedStatus(downID, func(st *store.CertStatus) bool {
		return st.ProvisioningJob != nil && st.ProvisioningJob.ErrorCode == "FERRY_ACME_FAILED"
	})

	// (a) and (b): saved as issued.
	for _, id := range []string{appID, wildID} {
		r.storedStatus(id, func(st *store.CertStatus) bool { return st.RenewsAt != nil && st.ProvisioningJob == nil })
	}
	if n := r.dns.TXTViaCNAME("_acme-challenge.wild.acme.test"); n == 0 {
		t.Errorf("the CA never got the TXT record through _acme-challenge.wild.acme.test's CNAME to %s", target)
	}

	// A restart loads the certificates from the relay's storage (sealed keys) instead of
	// ordering new ones: the same renews_at comes back.
	before := map[string]any{}
	for _, id := range []string{appID, wildID} {
		before[id], _ = certStatus(got[id])
	}
	r.Restart()
	got = r.waitDomains(map[string]func(map[string]any) bool{appID: isIssued, wildID: isIssued})
	for _, id := range []string{appID, wildID} {
		if after, _ := certStatus(got[id]); after != before[id] {
			t.Errorf("%v after restart: renews_at %v, want %v (the stored certificate)", got[id]["domain"], after, before[id])
		}
	}

	// Tunnels on the names: the edge terminates TLS with the issued certificates, which a client
	// trusting only Pebble's root accepts.
	r.startAgent(
		&forward.Tunnel{Name: "app", Proto: "http", Addr: named(t, "app"), Domain: "app.acme.test"},
		&forward.Tunnel{Name: "wild", Proto: "http", Addr: named(t, "wild"), Domain: "x.wild.acme.test"},
	)
	if chain := r.acmeTLS("app.acme.test", r.ca.Roots); !slices.Equal(chain[0].DNSNames, []string{"app.acme.test"}) {
		t.Errorf("app.acme.test served a certificate for %v", chain[0].DNSNames)
	}
	if chain := r.acmeTLS("x.wild.acme.test", r.ca.Roots); !slices.Equal(chain[0].DNSNames, []string{"*.wild.acme.test"}) {
		t.Errorf("x.wild.acme.test served a certificate for %v, want the wildcard's", chain[0].DNSNames)
	}
	https := port(r.Srv.HTTPSAddr().String())
	if body := r.get("https://app.acme.test:"+https+"/", r.ca.Roots); body != "app" {
		t.Errorf("GET https://app.acme.test/ = %q, want app", body)
	}
	if body := r.get("https://x.wild.acme.test:"+https+"/", r.ca.Roots); body != "wild" {
		t.Errorf("GET https://x.wild.acme.test/ = %q, want wild", body)
	}
	// The HTTP-01 handler in front of the plain listener lets ordinary requests through.
	if body := r.get("http://app.acme.test:"+port(r.Srv.HTTPAddr().String())+"/", nil); body != "app" {
		t.Errorf("GET http://app.acme.test/ = %q, want app", body)
	}

	// Dropping the policy stops the management: no status any more, and the edge falls back to
	// the relay's own certificate for the name.
	d := r.api.must(200, "DELETE", "/reserved_domains/"+appID+"/certificate_management_policy", nil)
	if d["certificate_management_policy"] != nil || d["certificate_management_status"] != nil {
		t.Errorf("after dropping the policy: policy %v, status %v, want both null", d["certificate_management_policy"], d["certificate_management_status"])
	}
	if d = r.api.must(200, "GET", "/reserved_domains/"+appID, nil); d["certificate_management_status"] != nil {
		t.Errorf("GET after dropping the policy: certificate_management_status %v, want null", d["certificate_management_status"])
	}
	c, err := r.dialTLS(&tls.Config{ServerName: "app.acme.test", InsecureSkipVerify: true})
	if err != nil {
		t.Fatalf("TLS to app.acme.test after dropping the policy: %v", err)
	}
	if leaf := c.ConnectionState().PeerCertificates[0]; leaf.Issuer.CommonName != r.CA.Cert.Subject.CommonName {
		t.Errorf("after dropping the policy, app.acme.test served a certificate from %v, want the relay's own", leaf.Issuer)
	}
	c.Close()
	t.Logf("done after %v", time.Since(start).Round(time.Millisecond))
}

// TestACMETLSALPNBehindPassthroughTunnel: on a relay without an HTTP listener (TLS-ALPN-01 is the
// only challenge for plain names), a domain whose name already carries a passthrough tls tunnel
// gets its certificate: the SNI dispatcher hands the CA's acme-tls/1 handshake to the certificate
// manager instead of routing it to the tunnel, whose upstream never sees it; ordinary TLS clients
// still reach the upstream.
func TestACMETLSALPNBehindPassthroughTunnel(t *testing.T) {
	start := time.Now()
	r := newACMERelay(t, false)
	r.dns.SetA("pass.acme.test", "127.0.0.1")

	// Reserved without a policy (behind the API's back: it would default to letsencrypt and
	// start at once), bound by a passthrough tunnel, then switched to automated certificates.
	d := r.ReserveDomain(t, "", "pass.acme.test")
	upstreamCA := certtest.NewCA(t, "Passthrough Upstream CA")
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{upstreamCA.Server(t, "pass.acme.test")}})
	if err != nil {
		t.Fatal(err)
	}
	var upstreamConns atomic.Int32
	up := serveConns(t, ln, func(c net.Conn) {
		upstreamConns.Add(1)
		io.Copy(c, c) //nolint:errcheck
	})
	r.startAgent(&forward.Tunnel{Name: "pass", Proto: "tls", Addr: up, Domain: "pass.acme.test"})

	got := r.api.must(200, "PATCH", "/reserved_domains/"+d.ID, map[string]any{"certificate_management_policy": map[string]any{"authority": "letsencrypt"}})
	if p, _ := got["certificate_management_policy"].(map[string]any); p["authority"] != "letsencrypt" {
		t.Fatalf("after PATCH, certificate_management_policy = %v", got["certificate_management_policy"])
	}
	r.waitDomains(map[string]func(map[string]any) bool{d.ID: isIssued})
	r.storedStatus(d.ID, func(st *store.CertStatus) bool { return st.RenewsAt != nil && st.ProvisioningJob == nil })
	t.Logf("issued over TLS-ALPN-01 after %v", time.Since(start).Round(time.Millisecond))
	if n := upstreamConns.Load(); n != 0 {
		t.Errorf("the passthrough upstream saw %d connections during validation, want 0", n)
	}

	// Passthrough is unchanged: the client gets the upstream's certificate and its echo.
	c, err := r.dialTLS(&tls.Config{ServerName: "pass.acme.test", RootCAs: upstreamCA.Pool})
	if err != nil {
		t.Fatalf("TLS through the passthrough tunnel: %v", err)
	}
	defer c.Close()
	if got, err := echoOnce(c, "hello"); err != nil || got != "hello" {
		t.Errorf("echo through the passthrough tunnel = %q, %v", got, err)
	}
	if n := upstreamConns.Load(); n != 1 {
		t.Errorf("upstream connections = %d, want 1", n)
	}
}

// TestACMEEdgeTermination: once a managed domain's certificate is issued, the relay counts it as a
// certificate it holds for the name: an http tunnel binds without the "no certificate" warning,
// and tls tunnels terminated at the edge (refused for names the relay has no certificate for)
// bind, on a plain name and on a wildcard, and are served the issued certificates.
func TestACMEEdgeTermination(t *testing.T) {
	r := newACMERelay(t, true)
	ids := map[string]func(map[string]any) bool{}
	for _, name := range []string{"web.acme.test", "edge.acme.test"} {
		r.dns.SetA(name, "127.0.0.1")
		ids[r.api.must(201, "POST", "/reserved_domains", map[string]any{"domain": name})["id"].(string)] = isIssued
	}
	wild := r.api.must(201, "POST", "/reserved_domains", map[string]any{"domain": "*.ew.acme.test"})
	r.dns.SetCNAME("_acme-challenge.ew.acme.test", wild["acme_challenge_cname_target"].(string))
	ids[wild["id"].(string)] = isIssued
	r.waitDomains(ids)

	var warned warnings
	echo := echoServer(t)
	cfg := r.agentConfig(
		&forward.Tunnel{Name: "web", Proto: "http", Addr: named(t, "web"), Domain: "web.acme.test"},
		&forward.Tunnel{Name: "edge", Proto: "tls", Addr: echo, Domain: "edge.acme.test", TerminateAt: "edge"},
		&forward.Tunnel{Name: "ew", Proto: "tls", Addr: echo, Domain: "*.ew.acme.test", TerminateAt: "edge"},
	)
	cfg.Log = slog.New(&warningHandler{Handler: testLogger(t).Handler(), w: &warned})
	if _, err := r.tryAgent(cfg); err != nil {
		t.Fatalf("binding edge-terminated tls tunnels on names with issued certificates: %v", err)
	}
	for _, w := range warned.all() {
		if strings.Contains(w, "no certificate") {
			t.Errorf("agent warned %q, though the relay holds an issued certificate for the name", w)
		}
	}
	for name, san := range map[string]string{"edge.acme.test": "edge.acme.test", "a.ew.acme.test": "*.ew.acme.test"} {
		c, err := r.dialTLS(&tls.Config{ServerName: name, RootCAs: r.ca.Roots})
		if err != nil {
			t.Errorf("TLS to the edge-terminated tunnel on %s trusting only Pebble's root: %v", name, err)
			continue
		}
		if got := c.ConnectionState().PeerCertificates[0].DNSNames; !slices.Equal(got, []string{san}) {
			t.Errorf("%s served a certificate for %v, want [%s]", name, got, san)
		}
		if got, err := echoOnce(c, "hello"); err != nil || got != "hello" {
			t.Errorf("echo through the edge-terminated tunnel on %s = %q, %v", name, got, err)
		}
		c.Close()
	}
}

// warnings collects the messages of warnings logged through a warningHandler.
type warnings struct {
	mu   sync.Mutex
	msgs []string
}

func (w *warnings) all() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.msgs)
}

type warningHandler struct {
	slog.Handler
	w *warnings
}

func (h *warningHandler) Handle(ctx context.Context, rec slog.Record) error {
	if rec.Level >= slog.LevelWarn {
		h.w.mu.Lock()
		h.w.msgs = append(h.w.msgs, rec.Message)
		h.w.mu.Unlock()
	}
	return h.Handler.Handle(ctx, rec)
}

func (h *warningHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &warningHandler{Handler: h.Handler.WithAttrs(as), w: h.w}
}

func (h *warningHandler) WithGroup(name string) slog.Handler {
	return &warningHandler{Handler: h.Handler.WithGroup(name), w: h.w}
}

// TestACMEFromAnotherRelay: a reserved domain with automated certificates created through
// another relay sharing the store (written there, revision bumped) is managed here within
// a poll, without a restart, and serves the issued certificate.
func TestACMEFromAnotherRelay(t *testing.T) {
	old := server.StorePoll
	server.StorePoll = 50 * time.Millisecond
	t.Cleanup(func() { server.StorePoll = old })
	r := newACMERelay(t, true)
	r.dns.SetA("elsewhere.acme.test", "127.0.0.1")
	ctx := t.Context()
	d, err := r.Store.CreateReservedDomain(ctx, store.ReservedDomain{AccountID: r.Account, Domain: "elsewhere.acme.test",
		CertPolicy: &store.CertPolicy{Authority: "letsencrypt", PrivateKeyType: "ecdsa"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Store.Bump(ctx); err != nil {
		t.Fatal(err)
	}
	r.waitDomains(map[string]func(map[string]any) bool{d.ID: isIssued})
	r.startAgent(&forward.Tunnel{Name: "elsewhere", Proto: "http", Addr: named(t, "elsewhere"), Domain: "elsewhere.acme.test"})
	if chain := r.acmeTLS("elsewhere.acme.test", r.ca.Roots); !slices.Equal(chain[0].DNSNames, []string{"elsewhere.acme.test"}) {
		t.Fatalf("served %v for the domain reserved elsewhere", chain[0].DNSNames)
	}
}
