//go:build !linux

package transport

import "net"

// udpBuffers is not read on this OS: quic-go's own sizing applies, unreported.
func udpBuffers(*net.UDPConn) (rcv, snd int, ok bool) { return 0, 0, false }
