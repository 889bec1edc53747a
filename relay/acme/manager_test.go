package acme

import (
	"bytes"
	"crypto/x509"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

const issueTimeout = 30 * time.Second

// states returns the sequence of states a domain went through, repeats folded.
func states(h []Status) []string {
	var out []string
	for _, st := range h {
		if len(out) == 0 || out[len(out)-1] != st.State {
			out = append(out, st.State)
		}
	}
	return out
}

// checkIssued checks a freshly issued certificate for domain: served by Certificate for name with
// the right SAN, chaining to Pebble's root, and served on the relay's :443.
func checkIssued(t *testing.T, e *env, m *Manager, domain, name string) *x509.Certificate {
	t.Helper()
	st := m.Status(domain)
	if st.State != StateIssued || st.Error != "" || st.RenewsAt == nil || st.ExpiresAt == nil || st.StartedAt != nil || st.RetriesAt != nil {
		t.Fatalf("status %+v, want issued with renews_at and expires_at only", st)
	}
	cert, ok := m.Certificate(name)
	if !ok {
		t.Fatalf("Certificate(%q) not found after issuance", name)
	}
	leaf := cert.Leaf
	if !slices.Equal(leaf.DNSNames, []string{domain}) {
		t.Errorf("SANs %v, want [%s]", leaf.DNSNames, domain)
	}
	if !st.ExpiresAt.Equal(leaf.NotAfter) {
		t.Errorf("ExpiresAt %v, want NotAfter %v", st.ExpiresAt, leaf.NotAfter)
	}
	if !st.RenewsAt.After(leaf.NotBefore) || !st.RenewsAt.Before(leaf.NotAfter) {
		t.Errorf("RenewsAt %v outside the validity %v..%v", st.RenewsAt, leaf.NotBefore, leaf.NotAfter)
	}
	inter := x509.NewCertPool()
	for _, der := range cert.Certificate[1:] {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: e.caRoots, Intermediates: inter}); err != nil {
		t.Errorf("certificate for %s does not verify against Pebble's root: %v", name, err)
	}
	served := e.dialTLS(t, name)
	if !served.Equal(leaf) {
		t.Errorf("relay :443 served serial %v for %s, want the managed certificate's %v", served.SerialNumber, name, leaf.SerialNumber)
	}
	return leaf
}

// TestPlainHTTP01 obtains a certificate for a plain name over HTTP-01 (the only challenge left on),
// checks status, SAN, chain and what :443 serves, then restarts the Manager on the same storage:
// the certificate comes back from disk without an order, and its private key was sealed on disk.
func TestPlainHTTP01(t *testing.T) {
	var key [32]byte
	copy(key[:], "0123456789abcdef0123456789abcdef")
	e := newEnv(t, envOptions{tweak: func(c *Config) {
		c.DisableTLSALPN01 = true
		c.StorageKey = &key
	}})
	const domain = "app.example.test"
	e.dns.setA(domain, "127.0.0.1")

	if err := e.m.Manage(domain); err != nil {
		t.Fatalf("Manage: %v", err)
	}
	if err := e.m.Manage("APP.example.test."); err != nil {
		t.Fatalf("Manage again: %v", err)
	}
	e.waitState(t, e.m, domain, StateIssued, issueTimeout)
	leaf := checkIssued(t, e, e.m, domain, domain)

	if got, want := states(e.history(domain)), []string{StatePending, StateProvisioning, StateIssued}; !slices.Equal(got, want) {
		t.Errorf("states %v, want %v", got, want)
	}
	if h := e.history(domain); h[1].StartedAt == nil {
		t.Errorf("provisioning status %+v has no StartedAt", h[1])
	}
	if _, ok := e.m.Certificate("other.example.test"); ok {
		t.Error("Certificate(other.example.test) found, want none for an unmanaged name")
	}
	if _, ok := e.m.Certificate("x.app.example.test"); ok {
		t.Error("Certificate(x.app.example.test) found, want none: app.example.test is not a wildcard")
	}

	// Private keys are sealed on disk; certificates are plain PEM.
	var keys, sealed int
	err := filepath.WalkDir(e.cfg.StorageDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".key") {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		keys++
		if bytes.HasPrefix(b, sealedMagic) && !bytes.Contains(b, []byte("PRIVATE KEY")) {
			sealed++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if keys < 2 || sealed != keys {
		t.Errorf("%d of %d .key files sealed, want all of at least 2 (account and certificate)", sealed, keys)
	}

	// Restart: same storage, same key. The certificate is loaded, not ordered again.
	e.m.Close()
	m2 := e.newManager(t, e.cfg)
	e.setManager(m2)
	e.mu.Lock()
	delete(e.statuses, domain)
	e.mu.Unlock()
	if err := m2.Manage(domain); err != nil {
		t.Fatal(err)
	}
	e.waitState(t, m2, domain, StateIssued, 5*time.Second)
	if got, want := states(e.history(domain)), []string{StatePending, StateIssued}; !slices.Equal(got, want) {
		t.Errorf("after restart: states %v, want %v (no new order)", got, want)
	}
	if again := checkIssued(t, e, m2, domain, domain); !again.Equal(leaf) {
		t.Errorf("after restart: serial %v, want the stored %v", again.SerialNumber, leaf.SerialNumber)
	}

	// Unmanage: the certificate is no longer served and the status is gone.
	m2.Unmanage(domain)
	if _, ok := m2.Certificate(domain); ok {
		t.Error("Certificate after Unmanage found, want none")
	}
	if st := m2.Status(domain); st.State != "" {
		t.Errorf("Status after Unmanage = %+v, want zero", st)
	}
	// Managed again at once: the stored certificate is reused.
	if err := m2.Manage(domain); err != nil {
		t.Fatal(err)
	}
	e.waitState(t, m2, domain, StateIssued, 5*time.Second)
	if cert, ok := m2.Certificate(domain); !ok || !cert.Leaf.Equal(leaf) {
		t.Errorf("after Unmanage and Manage: certificate %v, want the stored one", ok)
	}
	// Keep: a domain in the list stays (its case and a trailing dot do not matter), one
	// outside it goes.
	m2.Keep([]string{strings.ToUpper(domain) + "."})
	if _, ok := m2.Certificate(domain); !ok {
		t.Error("Keep dropped a domain it was given")
	}
	m2.Keep(nil)
	if st := m2.Status(domain); st.State != "" {
		t.Errorf("Status after Keep(nil) = %+v, want zero", st)
	}
	m2.Close()

	// A wrong storage key cannot read the sealed keys: loading fails, visibly.
	var wrong [32]byte
	cfg := e.cfg
	cfg.StorageKey = &wrong
	cfg.OnStatus = nil
	m3 := e.newManager(t, cfg)
	if err := m3.Manage(domain); err != nil {
		t.Fatal(err)
	}
	st := e.waitState(t, m3, domain, StateFailed, 5*time.Second)
	if !strings.Contains(st.Error, "StorageKey") {
		t.Errorf("wrong key: error %q, want it to name the StorageKey", st.Error)
	}
}

// TestPlainTLSALPN01 obtains a certificate with TLS-ALPN-01 only: the CA's validation connection
// (ALPN acme-tls/1) is dispatched to the Manager by the relay's :443.
func TestPlainTLSALPN01(t *testing.T) {
	e := newEnv(t, envOptions{tweak: func(c *Config) { c.DisableHTTP01 = true }})
	const domain = "alpn.example.test"
	e.dns.setA(domain, "127.0.0.1")
	if err := e.m.Manage(domain); err != nil {
		t.Fatal(err)
	}
	e.waitState(t, e.m, domain, StateIssued, issueTimeout)
	checkIssued(t, e, e.m, domain, domain)
}

// TestWildcardDNS01 obtains "*.wild.example.test" over DNS-01: the user's only DNS change is the
// CNAME _acme-challenge.wild.example.test → ChallengeTarget, and the CA finds the token in the
// Manager's own zone through it.
func TestWildcardDNS01(t *testing.T) {
	e := newEnv(t, envOptions{})
	const domain = "*.wild.example.test"
	target := e.m.ChallengeTarget(domain)
	if !strings.HasSuffix(target, "."+challengeZone) || target != e.m.ChallengeTarget("wild.example.test") {
		t.Fatalf("ChallengeTarget = %q, want <label>.%s, the same for the base name", target, challengeZone)
	}
	e.dns.setCNAME("_acme-challenge.wild.example.test", target)

	if err := e.m.Manage(domain); err != nil {
		t.Fatal(err)
	}
	e.waitState(t, e.m, domain, StateIssued, issueTimeout)
	checkIssued(t, e, e.m, domain, "x.wild.example.test")
	if got, want := states(e.history(domain)), []string{StatePending, StateProvisioning, StateIssued}; !slices.Equal(got, want) {
		t.Errorf("states %v, want %v", got, want)
	}
	if e.dns.txtViaCNAME("_acme-challenge.wild.example.test") == 0 {
		t.Errorf("no TXT answer for _acme-challenge.wild.example.test came through the CNAME to %s", target)
	}
	// The challenge record is gone once solved.
	r := exchange(t, "udp", e.dnsAddr, target, dns.TypeTXT)
	if r.Rcode != dns.RcodeNameError {
		t.Errorf("TXT %s after issuance: %s %v, want NXDOMAIN (cleaned up)", target, dns.RcodeToString[r.Rcode], r.Answer)
	}

	for _, name := range []string{"wild.example.test", "a.b.wild.example.test", "x.other.example.test"} {
		if _, ok := e.m.Certificate(name); ok {
			t.Errorf("Certificate(%q) found, want none: *.wild.example.test covers one label only", name)
		}
	}
}

// TestFailedChallenges: a name whose address refuses connections (HTTP-01 and TLS-ALPN-01 both
// fail) and a wildcard whose owner never added the CNAME (DNS-01 fails) end in "failed" with the
// CA's reason, and a retry scheduled.
func TestFailedChallenges(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.dns.setA("refused.example.test", "127.0.0.2") // nothing listens there
	for _, domain := range []string{"refused.example.test", "*.nocname.example.test"} {
		if err := e.m.Manage(domain); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct{ domain, want string }{
		// The CA's words: "dial tcp 127.0.0.2:P: connect: connection refused" (HTTP-01) or
		// "Failed to connect to 127.0.0.2:P" (TLS-ALPN-01), whichever certmagic tried last.
		{"refused.example.test", "127.0.0.2:"},
		{"*.nocname.example.test", "_acme-challenge.nocname.example.test"},
	} {
		st := e.waitState(t, e.m, tc.domain, StateFailed, issueTimeout)
		t.Logf("%s: %s", tc.domain, st.Error)
		if !strings.Contains(st.Error, tc.want) {
			t.Errorf("%s: error %q, want it to mention %q", tc.domain, st.Error, tc.want)
		}
		if st.RetriesAt == nil || time.Until(*st.RetriesAt) < 30*time.Second || st.StartedAt == nil {
			t.Errorf("%s: status %+v, want StartedAt and RetriesAt about a minute ahead", tc.domain, st)
		}
		if _, ok := e.m.Certificate(strings.TrimPrefix(tc.domain, "*.")); ok {
			t.Errorf("%s: a certificate is served after a failure", tc.domain)
		}
	}
}

// TestRenewal issues 20-second certificates with a renewal window of 80% of the lifetime (opening
// 4 s after issuance): the renewal loop must replace the certificate before it expires, status
// going through provisioning back to issued with a later RenewsAt.
func TestRenewal(t *testing.T) {
	e := newEnv(t, envOptions{validity: 20, tweak: func(c *Config) {
		c.RenewalWindowRatio = 0.8
		c.RenewCheckInterval = 250 * time.Millisecond
	}})
	const domain = "renew.example.test"
	e.dns.setA(domain, "127.0.0.1")
	if err := e.m.Manage(domain); err != nil {
		t.Fatal(err)
	}
	first := e.waitState(t, e.m, domain, StateIssued, issueTimeout)
	firstLeaf := checkIssued(t, e, e.m, domain, domain)

	deadline := time.Now().Add(issueTimeout)
	for {
		cert, ok := e.m.Certificate(domain)
		if ok && !cert.Leaf.Equal(firstLeaf) {
			if !cert.Leaf.NotAfter.After(firstLeaf.NotAfter) {
				t.Errorf("renewed NotAfter %v not after the first %v", cert.Leaf.NotAfter, firstLeaf.NotAfter)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("certificate not renewed within %v; status %+v", issueTimeout, e.m.Status(domain))
		}
		select {
		case <-time.After(50 * time.Millisecond):
		case <-t.Context().Done():
			t.Fatal(t.Context().Err())
		}
	}
	if time.Now().After(firstLeaf.NotAfter) {
		t.Errorf("renewed only after the first certificate expired")
	}
	st := e.waitState(t, e.m, domain, StateIssued, 5*time.Second)
	if !st.RenewsAt.After(*first.RenewsAt) {
		t.Errorf("RenewsAt %v after renewal, want later than %v", st.RenewsAt, first.RenewsAt)
	}
	h := states(e.history(domain))
	if n := strings.Count(strings.Join(h, ","), StateProvisioning); n < 2 {
		t.Errorf("states %v, want a second provisioning for the renewal", h)
	}
}

// TestChallengeDNS queries the Manager's DNS directly, as the CA's resolver does after following
// the delegation: SOA and NS at the apex, a challenge TXT record at a target, NXDOMAIN beside it,
// REFUSED outside the zone; over UDP and TCP.
func TestChallengeDNS(t *testing.T) {
	m, err := New(Config{
		StorageDir:    t.TempDir(),
		ChallengeZone: "acme.relay.example.test",
		Log:           slogDiscard(),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	addr, err := m.ListenDNS("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	target := m.ChallengeTarget("*.example.test")
	// What certmagic's DNS-01 solver does when it presents a challenge.
	solver := &dns01Solver{m: m, active: map[string]*certmagicDNS01{}}
	chal := testChallenge("example.test", "tok-1")
	if err := solver.Present(t.Context(), chal); err != nil {
		t.Fatalf("Present: %v", err)
	}
	want := chal.DNS01KeyAuthorization()

	for _, network := range []string{"udp", "tcp"} {
		r := exchange(t, network, addr.String(), "acme.relay.example.test.", dns.TypeSOA)
		if r.Rcode != dns.RcodeSuccess || !r.Authoritative || len(r.Answer) != 1 || r.Answer[0].Header().Rrtype != dns.TypeSOA {
			t.Fatalf("%s SOA: %v", network, r)
		}
		if soa := r.Answer[0].(*dns.SOA); soa.Ns != "relay.example.test." {
			t.Errorf("%s SOA mname %q, want the zone's parent relay.example.test.", network, soa.Ns)
		}
		r = exchange(t, network, addr.String(), "acme.relay.example.test.", dns.TypeNS)
		if len(r.Answer) != 1 || r.Answer[0].(*dns.NS).Ns != "relay.example.test." {
			t.Errorf("%s NS: %v, want relay.example.test.", network, r.Answer)
		}
		r = exchange(t, network, addr.String(), target, dns.TypeTXT)
		if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 || strings.Join(r.Answer[0].(*dns.TXT).Txt, "") != want {
			t.Errorf("%s TXT %s: %v, want %q", network, target, r, want)
		}
		r = exchange(t, network, addr.String(), "other.acme.relay.example.test.", dns.TypeTXT)
		if r.Rcode != dns.RcodeNameError || len(r.Ns) != 1 {
			t.Errorf("%s TXT other: %s, want NXDOMAIN with SOA", network, dns.RcodeToString[r.Rcode])
		}
		r = exchange(t, network, addr.String(), "_acme-challenge.example.test.", dns.TypeTXT)
		if r.Rcode != dns.RcodeRefused {
			t.Errorf("%s outside the zone: %s, want REFUSED", network, dns.RcodeToString[r.Rcode])
		}
	}

	if err := solver.CleanUp(t.Context(), chal); err != nil {
		t.Fatalf("CleanUp: %v", err)
	}
	if r := exchange(t, "udp", addr.String(), target, dns.TypeTXT); r.Rcode != dns.RcodeNameError {
		t.Errorf("TXT after CleanUp: %s %v, want NXDOMAIN", dns.RcodeToString[r.Rcode], r.Answer)
	}
}

func exchange(t *testing.T, network, addr, name string, qtype uint16) *dns.Msg {
	t.Helper()
	c := &dns.Client{Net: network, Timeout: 5 * time.Second}
	q := new(dns.Msg)
	q.SetQuestion(dns.Fqdn(name), qtype)
	r, _, err := c.ExchangeContext(t.Context(), q, addr)
	if err != nil {
		t.Fatalf("%s %s %s: %v", network, name, dns.TypeToString[qtype], err)
	}
	return r
}

// TestRenewOnStartup: a certificate that came due while the relay was down (renewal window of 95%
// of a 20-second lifetime, renewal checks far apart) is renewed by Manage itself, not left to the
// next renewal check.
func TestRenewOnStartup(t *testing.T) {
	e := newEnv(t, envOptions{validity: 20, tweak: func(c *Config) {
		c.RenewalWindowRatio = 0.95
		c.RenewCheckInterval = time.Hour
	}})
	const domain = "startup.example.test"
	e.dns.setA(domain, "127.0.0.1")
	if err := e.m.Manage(domain); err != nil {
		t.Fatal(err)
	}
	st := e.waitState(t, e.m, domain, StateIssued, issueTimeout)
	first := checkIssued(t, e, e.m, domain, domain)
	e.m.Close()

	// Down until the certificate is due (wall-clock time has to pass, no event to wait for).
	select {
	case <-time.After(time.Until(*st.RenewsAt)):
	case <-t.Context().Done():
		t.Fatal(t.Context().Err())
	}
	m2 := e.newManager(t, e.cfg)
	e.setManager(m2)
	e.mu.Lock()
	delete(e.statuses, domain)
	e.mu.Unlock()
	if err := m2.Manage(domain); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(issueTimeout)
	for {
		if cert, ok := m2.Certificate(domain); ok && !cert.Leaf.Equal(first) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not renewed on start-up; status %+v", m2.Status(domain))
		}
		select {
		case <-time.After(20 * time.Millisecond):
		case <-t.Context().Done():
			t.Fatal(t.Context().Err())
		}
	}
	e.waitState(t, m2, domain, StateIssued, 5*time.Second)
	if got, want := states(e.history(domain)), []string{StatePending, StateIssued, StateProvisioning, StateIssued}; !slices.Equal(got, want) {
		t.Errorf("states %v, want %v", got, want)
	}
	if n := len(m2.cache.AllMatchingCertificates(domain)); n != 1 {
		t.Errorf("%d certificates cached for %s after renewal, want 1 (the old one dropped)", n, domain)
	}
}
