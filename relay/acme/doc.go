// Package acme gives the relay's reserved domains automated certificates (ngrok's "Automated TLS
// Certificates"): obtained from an ACME CA (Let's Encrypt by default) in the background, renewed
// before they expire, with a status per domain for the API's certificate_management_status.
// certmagic (v0.25) does the ACME work: account, orders, retries with backoff, renewal, locking and
// file storage; this package adds the relay's hooks, the status, and the DNS zone that makes
// wildcard certificates possible without DNS-provider credentials.
//
// # Challenges
//
//   - Plain names ("app.example.com") use HTTP-01 on :80 and TLS-ALPN-01 on :443 (certmagic picks
//     one, and tries the other if the first fails). The relay's listeners answer them through
//     HTTPHandler and ServeTLSALPN.
//   - Wildcards ("*.example.com") need DNS-01. The user adds one record,
//     "_acme-challenge.example.com CNAME <ChallengeTarget(domain)>", a name in ChallengeZone, a zone
//     this relay serves itself (ServeDNS / ListenDNS, --dns-addr) and the operator delegated to it
//     with NS records. certmagic's DNS01Solver writes the token as a TXT record into that zone,
//     at the CNAME target (OverrideDomain); the CA's resolver follows the CNAME to it.
//
// # Flow
//
//	m, _ := acme.New(acme.Config{StorageDir: data + "/acme", ChallengeZone: "acme.relay.example.com",
//	        Email: ..., OnStatus: store.SaveCertStatus, Log: log})
//	defer m.Close()
//	m.ListenDNS(cfg.DNSAddr)                          // before the first wildcard is managed
//	http80 := m.HTTPHandler(redirectOrRoute)          // :80
//	// :443, after sni.Peek:
//	if acme.IsTLSALPN(hello.ServerName, hello.ALPN) { m.ServeTLSALPN(conn); return }
//	tlsCfg.GetCertificate = func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
//	        if c, ok := m.Certificate(h.ServerName); ok { return c, nil } ... }
//	// when a reserved domain with automated certificates is created (and for each one at start-up):
//	m.Manage(domain)       // status pending → provisioning → issued, or failed with the CA's reason
//	m.ChallengeTarget(domain)                         // the domain's acme_challenge_cname_target
//	m.Unmanage(domain)     // when it is deleted or switched to an uploaded certificate
//
// Manage returns at once; one goroutine per domain loads the certificate from storage or obtains
// it, retrying on certmagic's schedule (1, 2, 2, 5, 10 ... minutes, at most 6 hours apart, for up
// to 30 days). certmagic's cache then renews it when RenewalWindowRatio of its lifetime is left (or
// when the CA's ARI says so). Status and OnStatus report each step; Error keeps certmagic's and the
// CA's words ("... dial tcp 203.0.113.7:80: connect: connection refused").
//
// # Storage
//
// StorageDir is certmagic's FileStorage (account, certificates, keys, locks). With StorageKey, the
// private keys in it are sealed with NaCl secretbox, as the relay's store seals uploaded keys.
// Relays that share the directory coordinate through certmagic's lock files and can answer each
// other's HTTP-01 and TLS-ALPN-01 challenges (certmagic's distributed solving).
//
// # Not done here
//
// No on-demand issuance: Certificate never triggers an order, so a stranger's SNI cannot make the
// relay ask the CA for anything. IP addresses are not managed. Names must be in their ASCII
// (xn--) form.
package acme
