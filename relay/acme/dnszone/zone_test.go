package dnszone

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/libdns/libdns"
	"github.com/miekg/dns"
	"go.uber.org/goleak"
)

// TestMain fails the package if any test leaves a goroutine behind.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// serve starts z on loopback UDP and TCP (same port) and returns the address.
func serve(t *testing.T, z *Zone) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", pc.LocalAddr().String())
	if err != nil {
		pc.Close()
		t.Fatalf("listen tcp on the udp port: %v", err)
	}
	udpDone, tcpDone := make(chan error, 1), make(chan error, 1)
	go func() { udpDone <- z.ServeUDP(pc) }()
	go func() { tcpDone <- z.ServeTCP(ln) }()
	t.Cleanup(func() {
		pc.Close()
		ln.Close()
		if err := <-udpDone; err != nil {
			t.Errorf("ServeUDP = %v, want nil after close", err)
		}
		if err := <-tcpDone; err != nil {
			t.Errorf("ServeTCP = %v, want nil after close", err)
		}
	})
	return pc.LocalAddr().String()
}

func newZone(t *testing.T) *Zone {
	t.Helper()
	z, err := New(Config{
		Name:            "ACME.relay.example.test",
		NameServers:     []string{"ns1.acme.relay.example.test", "relay.example.test."},
		NameServerAddrs: []netip.Addr{netip.MustParseAddr("192.0.2.53"), netip.MustParseAddr("2001:db8::53")},
	})
	if err != nil {
		t.Fatal(err)
	}
	return z
}

func query(t *testing.T, network, addr, name string, qtype uint16) *dns.Msg {
	t.Helper()
	c := &dns.Client{Net: network, Timeout: 5 * time.Second}
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.SetEdns0(1232, false)
	r, _, err := c.ExchangeContext(t.Context(), m, addr)
	if err != nil {
		t.Fatalf("%s %s %s: %v", network, name, dns.TypeToString[qtype], err)
	}
	return r
}

func TestZoneAnswers(t *testing.T) {
	z := newZone(t)
	addr := serve(t, z)
	ctx := t.Context()

	token := "Xv3nKq0_9u2hS1yPbq6mN4wZt8cE5rLdA7fGjHkUoIY"
	long := strings.Repeat("a", 300)
	if _, err := z.AppendRecords(ctx, "acme.relay.example.test.", []libdns.Record{
		libdns.TXT{Name: "k7q2", Text: token},
		libdns.TXT{Name: "k7q2", Text: "second"},
		libdns.RR{Type: "TXT", Name: "deep.below.x.acme.relay.example.test.", Data: long, TTL: time.Minute},
	}); err != nil {
		t.Fatalf("AppendRecords: %v", err)
	}

	for _, network := range []string{"udp", "tcp"} {
		t.Run(network, func(t *testing.T) {
			// SOA at the apex, as certmagic's zone lookup asks for it.
			r := query(t, network, addr, "acme.relay.example.test.", dns.TypeSOA)
			if r.Rcode != dns.RcodeSuccess || !r.Authoritative || len(r.Answer) != 1 {
				t.Fatalf("SOA apex: rcode %s aa %v answers %d, want NOERROR aa 1", dns.RcodeToString[r.Rcode], r.Authoritative, len(r.Answer))
			}
			soa, ok := r.Answer[0].(*dns.SOA)
			if !ok || soa.Ns != "ns1.acme.relay.example.test." || soa.Mbox != "hostmaster.acme.relay.example.test." {
				t.Fatalf("SOA apex = %v, want mname ns1.acme.relay.example.test.", r.Answer[0])
			}

			// NS at the apex, and glue for the in-zone name server.
			r = query(t, network, addr, "acme.relay.example.test.", dns.TypeNS)
			if len(r.Answer) != 2 {
				t.Fatalf("NS apex: %d answers, want 2: %v", len(r.Answer), r.Answer)
			}
			r = query(t, network, addr, "ns1.acme.relay.example.test.", dns.TypeA)
			if len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != "192.0.2.53" {
				t.Fatalf("A ns1 = %v, want 192.0.2.53", r.Answer)
			}
			r = query(t, network, addr, "ns1.acme.relay.example.test.", dns.TypeAAAA)
			if len(r.Answer) != 1 || r.Answer[0].(*dns.AAAA).AAAA.String() != "2001:db8::53" {
				t.Fatalf("AAAA ns1 = %v, want 2001:db8::53", r.Answer)
			}

			// TXT at a challenge name, asked in mixed case: answered in the asker's case.
			r = query(t, network, addr, "K7Q2.Acme.Relay.Example.Test.", dns.TypeTXT)
			if r.Rcode != dns.RcodeSuccess || !r.Authoritative || len(r.Answer) != 2 {
				t.Fatalf("TXT: rcode %s answers %v, want 2 records", dns.RcodeToString[r.Rcode], r.Answer)
			}
			var got []string
			for _, rr := range r.Answer {
				if rr.Header().Name != "K7Q2.Acme.Relay.Example.Test." {
					t.Errorf("owner %q, want the question's case", rr.Header().Name)
				}
				got = append(got, strings.Join(rr.(*dns.TXT).Txt, ""))
			}
			if got[0] != token || got[1] != "second" {
				t.Errorf("TXT = %q, want [%q second]", got, token)
			}

			// A long value is split into 255-byte strings and joins back.
			r = query(t, network, addr, "deep.below.x.acme.relay.example.test.", dns.TypeTXT)
			if len(r.Answer) != 1 || strings.Join(r.Answer[0].(*dns.TXT).Txt, "") != long || r.Answer[0].Header().Ttl != 60 {
				t.Fatalf("long TXT = %v, want 300 bytes with TTL 60", r.Answer)
			}

			// NODATA: the name exists, not with this type; and an empty non-terminal.
			for _, name := range []string{"k7q2.acme.relay.example.test.", "below.x.acme.relay.example.test."} {
				r = query(t, network, addr, name, dns.TypeA)
				if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 0 || len(r.Ns) != 1 {
					t.Fatalf("A %s: rcode %s answer %v ns %v, want NODATA with SOA", name, dns.RcodeToString[r.Rcode], r.Answer, r.Ns)
				}
			}

			// NXDOMAIN below the zone, with the SOA for negative caching (certmagic walks up on it).
			r = query(t, network, addr, "nothing.acme.relay.example.test.", dns.TypeSOA)
			if r.Rcode != dns.RcodeNameError || len(r.Ns) != 1 || r.Ns[0].Header().Rrtype != dns.TypeSOA {
				t.Fatalf("SOA nothing: rcode %s ns %v, want NXDOMAIN with SOA", dns.RcodeToString[r.Rcode], r.Ns)
			}

			// Outside the zone: refused, never recursion.
			r = query(t, network, addr, "example.com.", dns.TypeA)
			if r.Rcode != dns.RcodeRefused || r.Authoritative {
				t.Fatalf("outside: rcode %s aa %v, want REFUSED", dns.RcodeToString[r.Rcode], r.Authoritative)
			}
		})
	}

	// Deleting by name and value leaves the other value; deleting by name only removes the rest.
	del, err := z.DeleteRecords(ctx, "acme.relay.example.test.", []libdns.Record{libdns.TXT{Name: "k7q2", Text: token}})
	if err != nil || len(del) != 1 {
		t.Fatalf("DeleteRecords = %v, %v; want 1 record", del, err)
	}
	r := query(t, "udp", addr, "k7q2.acme.relay.example.test.", dns.TypeTXT)
	if len(r.Answer) != 1 || r.Answer[0].(*dns.TXT).Txt[0] != "second" {
		t.Fatalf("after delete: %v, want only %q", r.Answer, "second")
	}
	if _, err := z.DeleteRecords(ctx, "acme.relay.example.test.", []libdns.Record{libdns.RR{Name: "k7q2"}}); err != nil {
		t.Fatal(err)
	}
	r = query(t, "udp", addr, "k7q2.acme.relay.example.test.", dns.TypeTXT)
	if r.Rcode != dns.RcodeNameError {
		t.Fatalf("after deleting all: rcode %s, want NXDOMAIN", dns.RcodeToString[r.Rcode])
	}
}

func TestZoneRejects(t *testing.T) {
	z := newZone(t)
	ctx := context.Background()
	if _, err := z.AppendRecords(ctx, "acme.relay.example.test.", []libdns.Record{libdns.RR{Type: "A", Name: "x", Data: "192.0.2.1"}}); err == nil {
		t.Error("AppendRecords(A) = nil error, want only TXT accepted")
	}
	if _, err := z.AppendRecords(ctx, "example.test.", []libdns.Record{libdns.TXT{Name: "_acme-challenge", Text: "t"}}); err == nil {
		t.Error("AppendRecords(outside the zone) = nil error, want an error")
	}
	if _, err := New(Config{Name: "acme.example.test"}); err == nil {
		t.Error("New without name servers = nil error, want an error")
	}
	if _, err := New(Config{Name: "bad name!", NameServers: []string{"ns.example.test"}}); err == nil {
		t.Error("New(bad name) = nil error, want an error")
	}

	// Responses, other opcodes and several questions.
	resp := new(dns.Msg)
	resp.SetQuestion("acme.relay.example.test.", dns.TypeSOA)
	resp.Response = true
	if z.Answer(resp) != nil {
		t.Error("Answer(response) != nil, want no answer to a response")
	}
	upd := new(dns.Msg)
	upd.SetUpdate("acme.relay.example.test.")
	if r := z.Answer(upd); r.Rcode != dns.RcodeNotImplemented {
		t.Errorf("UPDATE: rcode %s, want NOTIMP", dns.RcodeToString[r.Rcode])
	}
	two := new(dns.Msg)
	two.SetQuestion("acme.relay.example.test.", dns.TypeSOA)
	two.Question = append(two.Question, two.Question[0])
	if r := z.Answer(two); r.Rcode != dns.RcodeFormatError {
		t.Errorf("two questions: rcode %s, want FORMERR", dns.RcodeToString[r.Rcode])
	}
}

// FuzzRespond feeds arbitrary packets to the query path: it must never panic, and whatever it
// answers must parse.
func FuzzRespond(f *testing.F) {
	z, err := New(Config{Name: "acme.example.test", NameServers: []string{"ns.acme.example.test"}, NameServerAddrs: []netip.Addr{netip.MustParseAddr("192.0.2.1")}})
	if err != nil {
		f.Fatal(err)
	}
	if _, err := z.AppendRecords(context.Background(), "", []libdns.Record{libdns.TXT{Name: "t", Text: "v"}}); err != nil {
		f.Fatal(err)
	}
	for _, q := range []struct {
		name  string
		qtype uint16
	}{{"acme.example.test.", dns.TypeSOA}, {"t.acme.example.test.", dns.TypeTXT}, {"x.example.", dns.TypeANY}} {
		m := new(dns.Msg)
		m.SetQuestion(q.name, q.qtype)
		m.SetEdns0(4096, true)
		b, _ := m.Pack()
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		for _, tcp := range []bool{false, true} {
			out := z.respond(raw, tcp)
			if out == nil {
				continue
			}
			if !tcp && len(out) > 65535 {
				t.Fatalf("udp answer of %d bytes", len(out))
			}
			var m dns.Msg
			if err := m.Unpack(out); err != nil {
				t.Fatalf("answer does not parse: %v", err)
			}
		}
	})
}
