package acme

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base32"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/mholt/acmez/v3"
	"github.com/mholt/acmez/v3/acme"
)

// ALPNProtocol is the ALPN protocol of TLS-ALPN-01 validation connections (RFC 8737).
const ALPNProtocol = acmez.ACMETLS1Protocol

// tlsALPNHandshakeTimeout bounds a TLS-ALPN-01 validation connection.
const tlsALPNHandshakeTimeout = 10 * time.Second

// normalizeDomain lower-cases domain, drops a final dot and checks that a public certificate can
// name it: a host name of at least two labels (letters, digits, hyphens; IDNs in their xn-- form),
// optionally behind "*." for a wildcard.
func normalizeDomain(domain string) (string, error) {
	name := strings.ToLower(strings.TrimSuffix(strings.TrimSpace(domain), "."))
	host := strings.TrimPrefix(name, "*.")
	if host == "" || len(host) > 253 {
		return "", fmt.Errorf("acme: %q is not a domain name", domain)
	}
	labels := strings.Split(host, ".")
	if len(labels) < 2 {
		return "", fmt.Errorf("acme: %q: a certificate needs a name with at least two labels", domain)
	}
	for _, l := range labels {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return "", fmt.Errorf("acme: %q is not a domain name", domain)
		}
		for i := 0; i < len(l); i++ {
			if c := l[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return "", fmt.Errorf("acme: %q: character %q is not allowed in a host name", domain, c)
			}
		}
	}
	if last := labels[len(labels)-1]; strings.Trim(last, "0123456789") == "" {
		return "", fmt.Errorf("acme: %q: IP addresses are not managed", domain)
	}
	return name, nil
}

// ChallengeTarget returns domain's acme_challenge_cname_target: the name in ChallengeZone that
// "_acme-challenge.<domain>" must be a CNAME to for wildcard certificates. The label is derived
// from the domain (the wildcard's base: "*.example.com" and "example.com" share it, as they share
// the CNAME's owner name), so it is stable across restarts and relays. Empty without ChallengeZone
// or for a name that cannot be managed.
func (m *Manager) ChallengeTarget(domain string) string {
	if m.cfg.ChallengeZone == "" {
		return ""
	}
	name, err := normalizeDomain(domain)
	if err != nil {
		return ""
	}
	sum := sha256.Sum256([]byte(strings.TrimPrefix(name, "*.")))
	label := strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(sum[:16]))
	return label + "." + m.cfg.ChallengeZone
}

// HTTPHandler answers HTTP-01 validation requests (/.well-known/acme-challenge/<token> with the
// Host of a managed name that has a challenge under way) and passes every other request to next.
// Mount it in front of the relay's :80 handler.
func (m *Manager) HTTPHandler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if certmagic.LooksLikeHTTPChallenge(r) && m.managed(hostOnly(r.Host)) && m.issuer.HandleHTTPChallenge(w, r) {
			return
		}
		next.ServeHTTP(w, r)
	})
}

// managed reports whether name (not a wildcard) is a managed domain.
func (m *Manager) managed(name string) bool {
	name, err := normalizeDomain(name)
	if err != nil || strings.HasPrefix(name, "*.") {
		return false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.domains[name] != nil
}

func hostOnly(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return h
	}
	return hostport
}

// IsTLSALPN reports whether a ClientHello with this SNI name and ALPN list is a TLS-ALPN-01
// validation: a server name and exactly one protocol, "acme-tls/1" (RFC 8737 §3). The relay's SNI
// dispatcher hands such connections to ServeTLSALPN instead of routing them (with sni.Peek:
// IsTLSALPN(hello.ServerName, hello.ALPN)).
func IsTLSALPN(serverName string, alpn []string) bool {
	return serverName != "" && len(alpn) == 1 && alpn[0] == ALPNProtocol
}

// IsTLSALPNChallenge is IsTLSALPN for a crypto/tls ClientHelloInfo.
func (m *Manager) IsTLSALPNChallenge(hello *tls.ClientHelloInfo) bool {
	return IsTLSALPN(hello.ServerName, hello.SupportedProtos)
}

var errNotChallenge = errors.New("acme: not a TLS-ALPN-01 validation handshake")

// TLSALPNConfig is a server configuration that completes TLS-ALPN-01 validation handshakes with
// the challenge certificate for the name asked, and fails every other handshake.
func (m *Manager) TLSALPNConfig() *tls.Config {
	return &tls.Config{
		NextProtos: []string{ALPNProtocol},
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			if !m.IsTLSALPNChallenge(hello) || !m.managed(hello.ServerName) {
				return nil, errNotChallenge
			}
			return m.plain.GetCertificate(hello) // certmagic answers acme-tls/1 from its challenge memory
		},
	}
}

// ServeTLSALPN completes a TLS-ALPN-01 validation handshake on conn (the ClientHello not yet
// consumed, e.g. replayed by the SNI dispatcher's peek) and closes conn. The CA only looks at the
// certificate, so nothing is read or written after the handshake.
func (m *Manager) ServeTLSALPN(conn net.Conn) error {
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(tlsALPNHandshakeTimeout))
	tc := tls.Server(conn, m.TLSALPNConfig())
	if err := tc.Handshake(); err != nil {
		return fmt.Errorf("acme: tls-alpn-01 handshake from %s: %w", conn.RemoteAddr(), err)
	}
	return nil
}

// dns01Solver solves DNS-01 for wildcard domains with certmagic's DNS01Solver writing into our own
// zone, one solver per challenge so that each one's record lands at its domain's ChallengeTarget
// (certmagic's OverrideDomain) rather than at _acme-challenge.<domain>, where the user's CNAME points
// from.
type dns01Solver struct {
	m      *Manager
	mu     sync.Mutex
	active map[string]*certmagic.DNS01Solver // by challenge token, from Present to CleanUp
}

func (s *dns01Solver) Present(ctx context.Context, chal acme.Challenge) error {
	target := s.m.ChallengeTarget(chal.Identifier.Value)
	if target == "" {
		return fmt.Errorf("acme: no challenge target for %q", chal.Identifier.Value)
	}
	resolvers, propagation := s.m.dnsLookup()
	sv := &certmagic.DNS01Solver{DNSManager: certmagic.DNSManager{
		DNSProvider:        s.m.zone,
		PropagationTimeout: propagation,
		Resolvers:          resolvers,
		OverrideDomain:     target,
		Logger:             s.m.zlog,
	}}
	s.mu.Lock()
	s.active[chal.Token] = sv
	s.mu.Unlock()
	return sv.Present(ctx, chal)
}

func (s *dns01Solver) solver(chal acme.Challenge) (*certmagic.DNS01Solver, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sv := s.active[chal.Token]
	if sv == nil {
		return nil, fmt.Errorf("acme: no DNS-01 challenge presented for %q", chal.Identifier.Value)
	}
	return sv, nil
}

func (s *dns01Solver) Wait(ctx context.Context, chal acme.Challenge) error {
	sv, err := s.solver(chal)
	if err != nil {
		return err
	}
	return sv.Wait(ctx, chal)
}

func (s *dns01Solver) CleanUp(ctx context.Context, chal acme.Challenge) error {
	sv, err := s.solver(chal)
	if err != nil {
		return err
	}
	defer func() {
		s.mu.Lock()
		delete(s.active, chal.Token)
		s.mu.Unlock()
	}()
	return sv.CleanUp(ctx, chal)
}

// dnsLookup returns the resolvers certmagic's DNS-01 solver asks (for the zone's SOA, and to check
// that a record is visible) and its propagation timeout (-1: no check).
func (m *Manager) dnsLookup() ([]string, time.Duration) {
	if len(m.cfg.DNSResolvers) > 0 {
		return m.cfg.DNSResolvers, 0 // certmagic's default timeout (2 minutes)
	}
	m.mu.Lock()
	self := m.dnsAddr
	m.mu.Unlock()
	if self != "" {
		// We are the authoritative server: a record is live as soon as it is written.
		return []string{self}, -1
	}
	return nil, -1 // system resolvers find the zone; the check would only test ourselves
}
