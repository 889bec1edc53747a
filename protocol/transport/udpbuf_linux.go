package transport

import (
	"net"
	"syscall"
)

// udpBuffers reads a UDP socket's receive and send buffer sizes (as Linux reports them:
// twice what was set, the kernel's bookkeeping included, which is what quic-go compares).
func udpBuffers(c *net.UDPConn) (rcv, snd int, ok bool) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, 0, false
	}
	var rerr, serr error
	if err := rc.Control(func(fd uintptr) {
		rcv, rerr = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF)
		snd, serr = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_SNDBUF)
	}); err != nil {
		return 0, 0, false
	}
	return rcv, snd, rerr == nil && serr == nil
}
