package acmetest

import (
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// Resolver is a recursive resolver stand-in on loopback, over UDP and TCP on one port (Pebble's
// VA asks over TCP). It answers:
//
//   - names in a forwarded zone (Forward): whatever the zone's server answers, asked without
//     recursion and only if it answers authoritatively;
//   - names with a CNAME (SetCNAME): the CNAME, followed by the target's records asked of the
//     target's forwarded zone;
//   - names with an A record (SetA): that address for A, nothing for other types;
//   - anything else: NXDOMAIN.
type Resolver struct {
	// Addr is where it listens, "127.0.0.1:PORT", for UDP and TCP.
	Addr string

	mu       sync.Mutex
	a        map[string]string // FQDN → IPv4
	cname    map[string]string // FQDN → target FQDN
	zones    map[string]string // forwarded zone (FQDN) → its server
	viaCNAME map[string]int    // TXT records answered through a CNAME, by owner
}

// StartResolver starts a Resolver, stopped at the end of the test.
func StartResolver(t testing.TB) *Resolver {
	t.Helper()
	r := &Resolver{a: map[string]string{}, cname: map[string]string{}, zones: map[string]string{}, viaCNAME: map[string]int{}}
	var (
		pc  net.PacketConn
		ln  net.Listener
		err error
	)
	for attempt := 0; ; attempt++ {
		if pc, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		if ln, err = net.Listen("tcp", pc.LocalAddr().String()); err == nil {
			break
		}
		pc.Close()
		if attempt == 10 { // the free UDP port may be taken over TCP: pick another
			t.Fatal(err)
		}
	}
	for _, srv := range []*dns.Server{{PacketConn: pc, Handler: r}, {Listener: ln, Handler: r}} {
		started, done := make(chan struct{}), make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		go func() {
			defer close(done)
			_ = srv.ActivateAndServe()
		}()
		<-started
		t.Cleanup(func() {
			_ = srv.Shutdown()
			<-done
		})
	}
	r.Addr = pc.LocalAddr().String()
	return r
}

// SetA makes name resolve to the IPv4 address ip.
func (r *Resolver) SetA(name, ip string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.a[dns.CanonicalName(name)] = ip
}

// SetCNAME makes name an alias of target (the user's "_acme-challenge.<domain> CNAME
// <acme_challenge_cname_target>").
func (r *Resolver) SetCNAME(name, target string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cname[dns.CanonicalName(name)] = dns.CanonicalName(target)
}

// Forward sends queries for zone and the names below it to server ("host:port", UDP): the
// relay's challenge zone and its --dns-addr, as the zone's NS delegation would.
func (r *Resolver) Forward(zone, server string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.zones[dns.CanonicalName(zone)] = server
}

// TXTViaCNAME counts the TXT records answered for name by following its CNAME: what the CA's
// lookups of _acme-challenge.<domain> got.
func (r *Resolver) TXTViaCNAME(name string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.viaCNAME[dns.CanonicalName(name)]
}

// serverFor returns the server of the most specific forwarded zone holding name, or "".
func (r *Resolver) serverFor(name string) string {
	best, server := -1, ""
	for zone, addr := range r.zones {
		if dns.IsSubDomain(zone, name) && dns.CountLabel(zone) > best {
			best, server = dns.CountLabel(zone), addr
		}
	}
	return server
}

// ServeDNS implements dns.Handler.
func (r *Resolver) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	resp := new(dns.Msg)
	resp.SetReply(req)
	resp.RecursionAvailable = true
	defer func() { _ = w.WriteMsg(resp) }()
	if len(req.Question) != 1 {
		resp.Rcode = dns.RcodeFormatError
		return
	}
	q := req.Question[0]
	name := dns.CanonicalName(q.Name)

	r.mu.Lock()
	ip, hasA := r.a[name]
	target, hasCNAME := r.cname[name]
	server := r.serverFor(name)
	r.mu.Unlock()

	switch {
	case server != "":
		up, err := forward(server, q.Name, q.Qtype)
		if err != nil {
			resp.Rcode = dns.RcodeServerFailure
			return
		}
		resp.Rcode, resp.Answer, resp.Ns = up.Rcode, up.Answer, up.Ns
	case hasCNAME:
		resp.Answer = append(resp.Answer, &dns.CNAME{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeCNAME, Class: dns.ClassINET, Ttl: 60}, Target: target})
		if q.Qtype == dns.TypeCNAME {
			return
		}
		r.mu.Lock()
		server := r.serverFor(target)
		r.mu.Unlock()
		if server == "" {
			return // a dangling CNAME: the target has no records here
		}
		up, err := forward(server, target, q.Qtype)
		if err != nil {
			resp.Rcode = dns.RcodeServerFailure
			return
		}
		resp.Rcode = up.Rcode
		resp.Answer = append(resp.Answer, up.Answer...)
		for _, rr := range up.Answer {
			if rr.Header().Rrtype == dns.TypeTXT {
				r.mu.Lock()
				r.viaCNAME[name]++
				r.mu.Unlock()
			}
		}
	case hasA:
		if q.Qtype == dns.TypeA {
			resp.Answer = append(resp.Answer, &dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: net.ParseIP(ip)})
		}
	default:
		resp.Rcode = dns.RcodeNameError
	}
}

// forward asks server, as a resolver asks the authority a zone is delegated to.
func forward(server, name string, qtype uint16) (*dns.Msg, error) {
	q := new(dns.Msg)
	q.SetQuestion(dns.Fqdn(name), qtype)
	q.RecursionDesired = false
	c := &dns.Client{Net: "udp", Timeout: 2 * time.Second}
	in, _, err := c.Exchange(q, server)
	if err != nil {
		return nil, err
	}
	if !in.Authoritative {
		return nil, errors.New("upstream answer is not authoritative")
	}
	return in, nil
}
