//go:build linux

package transport

import (
	"net"
	"strings"
	"syscall"
	"testing"
)

// TestUDPBufferProblem: a socket the OS kept small is reported with the sysctl that fixes
// it; one with the buffers quic-go wants is not.
func TestUDPBufferProblem(t *testing.T) {
	small, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer small.Close()
	small.SetReadBuffer(64 << 10)
	small.SetWriteBuffer(64 << 10)
	p := UDPBufferProblem(small)
	if !strings.Contains(p, "net.core.rmem_max=7500000") || !strings.Contains(p, "128 KiB receive") {
		t.Fatalf("small buffers: %q, want the sizes and the sysctl", p)
	}

	big, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer big.Close()
	rc, _ := big.SyscallConn()
	var serr error
	rc.Control(func(fd uintptr) { //nolint:errcheck
		// SO_*BUFFORCE passes the sysctl limits; it needs CAP_NET_ADMIN.
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUFFORCE, WantUDPBuffer)
		if serr == nil {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_SNDBUFFORCE, WantUDPBuffer)
		}
	})
	if serr != nil {
		t.Skipf("cannot force large buffers here (%v): the no-warning case needs CAP_NET_ADMIN", serr)
	}
	if p := UDPBufferProblem(big); p != "" {
		t.Fatalf("large buffers: %q, want no problem", p)
	}
}
