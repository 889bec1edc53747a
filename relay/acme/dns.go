package acme

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
)

var errNoZone = errors.New("acme: no ChallengeZone configured, no DNS to serve")

// ServeDNS answers DNS queries for ChallengeZone arriving on pc (UDP) until pc is closed or Close
// is called; it returns nil then. The zone holds SOA and NS at the apex and the TXT records of
// DNS-01 challenges under way at their ChallengeTarget names.
func (m *Manager) ServeDNS(pc net.PacketConn) error {
	if m.zone == nil {
		return errNoZone
	}
	if err := m.trackDNS(pc, pc.LocalAddr()); err != nil {
		return err
	}
	defer m.untrackDNS(pc)
	return m.zone.ServeUDP(pc)
}

// ServeDNSTCP is ServeDNS over TCP (RFC 7766) on the connections accepted from ln.
func (m *Manager) ServeDNSTCP(ln net.Listener) error {
	if m.zone == nil {
		return errNoZone
	}
	if err := m.trackDNS(ln, nil); err != nil {
		return err
	}
	defer m.untrackDNS(ln)
	return m.zone.ServeTCP(ln)
}

// ListenDNS listens on addr (e.g. ":53", the relay's --dns-addr) over UDP and TCP on the same port
// and serves ChallengeZone on both until Close. With port 0 a free port is picked for both. It
// returns the UDP address.
func (m *Manager) ListenDNS(addr string) (net.Addr, error) {
	if m.zone == nil {
		return nil, errNoZone
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("acme: dns address %q: %w", addr, err)
	}
	var (
		pc net.PacketConn
		ln net.Listener
	)
	for attempt := 0; ; attempt++ {
		if pc, err = net.ListenPacket("udp", addr); err != nil {
			return nil, fmt.Errorf("acme: dns: %w", err)
		}
		tcpAddr := net.JoinHostPort(host, strconv.Itoa(pc.LocalAddr().(*net.UDPAddr).Port))
		if ln, err = net.Listen("tcp", tcpAddr); err == nil {
			break
		}
		pc.Close()
		if port != "0" || attempt == 10 { // a free UDP port may be taken over TCP: pick another
			return nil, fmt.Errorf("acme: dns: %w", err)
		}
	}
	// Registered and counted under the lock, so that Close either sees them or they see Close.
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		pc.Close()
		ln.Close()
		return nil, ErrClosed
	}
	m.wg.Add(2)
	m.dnsConns = append(m.dnsConns, pc, ln)
	m.noteDNSAddrLocked(pc.LocalAddr())
	m.mu.Unlock()
	go func() {
		defer m.wg.Done()
		defer m.untrackDNS(pc)
		if err := m.zone.ServeUDP(pc); err != nil {
			m.log.Error("dns server stopped", "net", "udp", "addr", pc.LocalAddr(), "error", err)
		}
	}()
	go func() {
		defer m.wg.Done()
		defer m.untrackDNS(ln)
		if err := m.zone.ServeTCP(ln); err != nil {
			m.log.Error("dns server stopped", "net", "tcp", "addr", ln.Addr(), "error", err)
		}
	}()
	return pc.LocalAddr(), nil
}

// trackDNS registers c to be closed by Close and, for a UDP socket, notes where our own DNS
// answers.
func (m *Manager) trackDNS(c io.Closer, local net.Addr) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		_ = c.Close()
		return ErrClosed
	}
	m.dnsConns = append(m.dnsConns, c)
	m.noteDNSAddrLocked(local)
	return nil
}

// noteDNSAddrLocked remembers the first UDP address our DNS answers on (loopback for a wildcard
// address), for certmagic's lookups. m.mu must be held.
func (m *Manager) noteDNSAddrLocked(local net.Addr) {
	ua, ok := local.(*net.UDPAddr)
	if !ok || m.dnsAddr != "" {
		return
	}
	ip, _ := netip.AddrFromSlice(ua.IP)
	switch {
	case !ip.IsValid() || ip.Unmap() == netip.IPv4Unspecified():
		ip = netip.MustParseAddr("127.0.0.1")
	case ip == netip.IPv6Unspecified():
		ip = netip.IPv6Loopback()
	}
	m.dnsAddr = netip.AddrPortFrom(ip.Unmap(), uint16(ua.Port)).String()
}

func (m *Manager) untrackDNS(c io.Closer) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i, x := range m.dnsConns {
		if x == c {
			m.dnsConns = append(m.dnsConns[:i], m.dnsConns[i+1:]...)
			break
		}
	}
}
