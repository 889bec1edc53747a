// Package dnszone is a small authoritative DNS zone held in memory: the zone the relay serves so that
// users can delegate ACME DNS-01 challenges to it with one CNAME record.
//
// The zone answers, with the AA bit set:
//   - SOA and NS at the apex (certmagic finds the zone of a challenge record by asking for its SOA);
//   - A and AAAA for name servers inside the zone, when addresses for them are configured;
//   - TXT records added through the libdns interface (AppendRecords / DeleteRecords), which is how
//     certmagic's DNS-01 solver publishes challenge tokens;
//   - NODATA (NOERROR, SOA in the authority section) for names that exist but lack the asked type;
//   - NXDOMAIN (SOA in the authority section) for names inside the zone that do not exist;
//   - REFUSED for names outside the zone: it is not a recursive resolver.
//
// Only TXT records can be added; everything else is fixed by Config. Nothing is persisted: challenge
// tokens live only while a challenge is being solved.
package dnszone

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/libdns/libdns"
	"github.com/miekg/dns"
)

// Defaults for the zone's timers, in seconds. Challenge records are short-lived, so every TTL is
// short: a resolver must not keep an old token (or the absence of one) for long.
const (
	defaultTXTTTL = 10 * time.Second
	apexTTL       = 300 // SOA, NS and name-server addresses
	soaRefresh    = 300
	soaRetry      = 60
	soaExpire     = 86400
	soaMinTTL     = 10 // negative-caching TTL (RFC 2308)
	maxTXTChunk   = 255
)

// Config describes a zone.
type Config struct {
	// Name is the zone apex, e.g. "acme.relay.example.com". Required.
	Name string
	// NameServers are the host names answered for NS at the apex; the first is the SOA's MNAME.
	// Required: they should match the NS records that delegate Name in its parent zone.
	NameServers []string
	// NameServerAddrs are answered as A/AAAA for every name server that lies inside the zone (glue).
	// Optional.
	NameServerAddrs []netip.Addr
	// Hostmaster is the SOA RNAME as a domain name. Default: "hostmaster.<Name>".
	Hostmaster string
}

// Zone is an authoritative zone held in memory. It is safe for concurrent use. It implements
// libdns.RecordGetter, RecordAppender and RecordDeleter for TXT records.
type Zone struct {
	apex        string   // canonical FQDN, lower case, trailing dot
	nameServers []string // canonical FQDNs
	addrs       []netip.Addr
	hostmaster  string

	mu     sync.RWMutex
	serial uint32
	txt    map[string][]txtRecord // canonical FQDN → records, in insertion order
}

type txtRecord struct {
	text string
	ttl  time.Duration
}

// New checks cfg and returns an empty zone.
func New(cfg Config) (*Zone, error) {
	apex, err := canonical(cfg.Name)
	if err != nil {
		return nil, fmt.Errorf("zone name: %w", err)
	}
	if apex == "." {
		return nil, errors.New("zone name: the root zone cannot be served")
	}
	if len(cfg.NameServers) == 0 {
		return nil, errors.New("zone needs at least one name server")
	}
	z := &Zone{
		apex:   apex,
		addrs:  slices.Clone(cfg.NameServerAddrs),
		serial: uint32(time.Now().Unix()),
		txt:    make(map[string][]txtRecord),
	}
	for _, ns := range cfg.NameServers {
		c, err := canonical(ns)
		if err != nil {
			return nil, fmt.Errorf("name server %q: %w", ns, err)
		}
		z.nameServers = append(z.nameServers, c)
	}
	hm := cfg.Hostmaster
	if hm == "" {
		hm = "hostmaster." + apex
	}
	if z.hostmaster, err = canonical(hm); err != nil {
		return nil, fmt.Errorf("hostmaster %q: %w", hm, err)
	}
	return z, nil
}

// Name returns the zone apex as a fully qualified name with a trailing dot.
func (z *Zone) Name() string { return z.apex }

// Contains reports whether name is the apex or lies below it.
func (z *Zone) Contains(name string) bool {
	c, err := canonical(name)
	return err == nil && dns.IsSubDomain(z.apex, c)
}

// canonical returns name in lower case with a trailing dot, or an error if it is not a domain name.
func canonical(name string) (string, error) {
	name = strings.TrimSpace(name)
	if name == "" {
		return "", errors.New("empty name")
	}
	c := dns.CanonicalName(name)
	if c == "." {
		return c, nil
	}
	if len(c) > 254 {
		return "", fmt.Errorf("%q is longer than 253 characters", name)
	}
	for _, label := range strings.Split(strings.TrimSuffix(c, "."), ".") {
		if label == "" || len(label) > 63 {
			return "", fmt.Errorf("%q is not a domain name: empty or over-long label", name)
		}
		for i := 0; i < len(label); i++ {
			ch := label[i]
			if !('a' <= ch && ch <= 'z' || '0' <= ch && ch <= '9' || ch == '-' || ch == '_') {
				return "", fmt.Errorf("%q is not a host name: character %q", name, ch)
			}
		}
	}
	return c, nil
}

// absolute resolves a libdns record name (relative to zone, "@", or already absolute) and checks
// that it lies in this zone.
func (z *Zone) absolute(zone, name string) (string, error) {
	if zone == "" {
		zone = z.apex
	}
	zone = dns.Fqdn(zone)
	fqdn, err := canonical(libdns.AbsoluteName(name, zone))
	if err != nil {
		return "", err
	}
	if !dns.IsSubDomain(z.apex, fqdn) {
		return "", fmt.Errorf("%s is outside zone %s", fqdn, z.apex)
	}
	return fqdn, nil
}

// AppendRecords adds TXT records. zone may be any name at or above the records (certmagic passes
// the zone it found by SOA lookup); the records must end up inside this zone.
func (z *Zone) AppendRecords(ctx context.Context, zone string, recs []libdns.Record) ([]libdns.Record, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	type add struct {
		fqdn string
		rec  txtRecord
		rr   libdns.RR
	}
	adds := make([]add, 0, len(recs))
	for _, r := range recs {
		rr := r.RR()
		if !strings.EqualFold(rr.Type, "TXT") {
			return nil, fmt.Errorf("append %s %s: only TXT records can be added to %s", rr.Type, rr.Name, z.apex)
		}
		fqdn, err := z.absolute(zone, rr.Name)
		if err != nil {
			return nil, fmt.Errorf("append TXT %s: %w", rr.Name, err)
		}
		ttl := rr.TTL
		if ttl <= 0 {
			ttl = defaultTXTTTL
		}
		adds = append(adds, add{fqdn, txtRecord{text: rr.Data, ttl: ttl}, rr})
	}

	z.mu.Lock()
	defer z.mu.Unlock()
	out := make([]libdns.Record, 0, len(adds))
	for _, a := range adds {
		z.txt[a.fqdn] = append(z.txt[a.fqdn], a.rec)
		out = append(out, libdns.TXT{Name: a.rr.Name, TTL: a.rec.ttl, Text: a.rec.text})
	}
	if len(adds) > 0 {
		z.serial++
	}
	return out, nil
}

// DeleteRecords removes TXT records matching name, and the text and TTL where they are given
// (libdns semantics: an empty Data or zero TTL matches any). Records that do not exist are ignored.
func (z *Zone) DeleteRecords(ctx context.Context, zone string, recs []libdns.Record) ([]libdns.Record, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	z.mu.Lock()
	defer z.mu.Unlock()
	var out []libdns.Record
	for _, r := range recs {
		rr := r.RR()
		if rr.Type != "" && !strings.EqualFold(rr.Type, "TXT") {
			continue
		}
		fqdn, err := z.absolute(zone, rr.Name)
		if err != nil {
			continue // not ours, so it does not exist here
		}
		kept := z.txt[fqdn][:0]
		for _, t := range z.txt[fqdn] {
			if (rr.Data == "" || rr.Data == t.text) && (rr.TTL == 0 || rr.TTL == t.ttl) {
				out = append(out, libdns.TXT{Name: rr.Name, TTL: t.ttl, Text: t.text})
				continue
			}
			kept = append(kept, t)
		}
		if len(kept) == 0 {
			delete(z.txt, fqdn)
		} else {
			z.txt[fqdn] = kept
		}
	}
	if len(out) > 0 {
		z.serial++
	}
	return out, nil
}

// GetRecords returns the TXT records of the zone, named relative to zone.
func (z *Zone) GetRecords(ctx context.Context, zone string) ([]libdns.Record, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if zone == "" {
		zone = z.apex
	}
	z.mu.RLock()
	defer z.mu.RUnlock()
	var out []libdns.Record
	for fqdn, ts := range z.txt {
		for _, t := range ts {
			out = append(out, libdns.TXT{Name: libdns.RelativeName(fqdn, dns.Fqdn(zone)), TTL: t.ttl, Text: t.text})
		}
	}
	return out, nil
}

// Answer builds the authoritative response to req. It returns nil when req is itself a response
// (which must not be answered, to avoid loops).
func (z *Zone) Answer(req *dns.Msg) *dns.Msg {
	if req.Response {
		return nil
	}
	resp := new(dns.Msg)
	switch {
	case req.Opcode != dns.OpcodeQuery:
		resp.SetRcode(req, dns.RcodeNotImplemented)
		return resp
	case len(req.Question) != 1:
		resp.SetRcodeFormatError(req)
		return resp
	}
	resp.SetReply(req)
	if opt := req.IsEdns0(); opt != nil {
		if opt.Version() != 0 {
			resp.Rcode = dns.RcodeBadVers
			resp.SetEdns0(dns.DefaultMsgSize, false)
			return resp
		}
		resp.SetEdns0(dns.DefaultMsgSize, false)
	}
	q := req.Question[0]
	name := dns.CanonicalName(q.Name)
	if q.Qclass != dns.ClassINET && q.Qclass != dns.ClassANY {
		resp.Rcode = dns.RcodeRefused
		return resp
	}
	if !dns.IsSubDomain(z.apex, name) {
		resp.Rcode = dns.RcodeRefused
		return resp
	}
	resp.Authoritative = true

	z.mu.RLock()
	defer z.mu.RUnlock()

	// Records are owned by the name as the client wrote it, so that resolvers that randomise the
	// case of queries (DNS 0x20) accept the answer.
	owner := q.Name
	exists := false
	if name == z.apex {
		exists = true
		if q.Qtype == dns.TypeSOA || q.Qtype == dns.TypeANY {
			resp.Answer = append(resp.Answer, z.soa(owner))
		}
		if q.Qtype == dns.TypeNS || q.Qtype == dns.TypeANY {
			for _, ns := range z.nameServers {
				resp.Answer = append(resp.Answer, &dns.NS{Hdr: hdr(owner, dns.TypeNS, apexTTL), Ns: ns})
			}
		}
	}
	if slices.Contains(z.nameServers, name) && len(z.addrs) > 0 {
		exists = true
		for _, a := range z.addrs {
			switch {
			case a.Unmap().Is4() && (q.Qtype == dns.TypeA || q.Qtype == dns.TypeANY):
				resp.Answer = append(resp.Answer, &dns.A{Hdr: hdr(owner, dns.TypeA, apexTTL), A: a.Unmap().AsSlice()})
			case a.Is6() && !a.Is4In6() && (q.Qtype == dns.TypeAAAA || q.Qtype == dns.TypeANY):
				resp.Answer = append(resp.Answer, &dns.AAAA{Hdr: hdr(owner, dns.TypeAAAA, apexTTL), AAAA: a.AsSlice()})
			}
		}
	}
	if ts, ok := z.txt[name]; ok {
		exists = true
		if q.Qtype == dns.TypeTXT || q.Qtype == dns.TypeANY {
			for _, t := range ts {
				resp.Answer = append(resp.Answer, &dns.TXT{Hdr: hdr(owner, dns.TypeTXT, uint32(t.ttl/time.Second)), Txt: chunk(t.text)})
			}
		}
	}
	if len(resp.Answer) > 0 {
		return resp
	}
	if !exists && !z.hasDescendant(name) {
		resp.Rcode = dns.RcodeNameError
	}
	// NXDOMAIN or NODATA: the SOA in the authority section carries the negative-caching TTL.
	soa := z.soa(z.apex)
	soa.Hdr.Ttl = soaMinTTL
	resp.Ns = append(resp.Ns, soa)
	return resp
}

// hasDescendant reports whether some record lives below name (name is then an "empty
// non-terminal": it exists, with no records of its own). z.mu must be held.
func (z *Zone) hasDescendant(name string) bool {
	suffix := "." + name
	for fqdn := range z.txt {
		if strings.HasSuffix(fqdn, suffix) {
			return true
		}
	}
	if len(z.addrs) > 0 {
		for _, ns := range z.nameServers {
			if strings.HasSuffix(ns, suffix) {
				return true
			}
		}
	}
	return false
}

// soa returns the zone's SOA owned by owner. z.mu must be held (for the serial).
func (z *Zone) soa(owner string) *dns.SOA {
	return &dns.SOA{
		Hdr:     hdr(owner, dns.TypeSOA, apexTTL),
		Ns:      z.nameServers[0],
		Mbox:    z.hostmaster,
		Serial:  z.serial,
		Refresh: soaRefresh,
		Retry:   soaRetry,
		Expire:  soaExpire,
		Minttl:  soaMinTTL,
	}
}

func hdr(owner string, t uint16, ttl uint32) dns.RR_Header {
	return dns.RR_Header{Name: owner, Rrtype: t, Class: dns.ClassINET, Ttl: ttl}
}

// chunk splits s into the at most 255-byte character-strings a TXT record is made of.
func chunk(s string) []string {
	if len(s) <= maxTXTChunk {
		return []string{s}
	}
	var out []string
	for len(s) > maxTXTChunk {
		out = append(out, s[:maxTXTChunk])
		s = s[maxTXTChunk:]
	}
	return append(out, s)
}
