package transport

import (
	"fmt"
	"net"
	"os"
)

// WantUDPBuffer is the UDP socket buffer quic-go asks for (each way) so a fast QUIC
// session does not drop packets at the socket; below it, throughput suffers under load.
const WantUDPBuffer = 7 << 20

func init() {
	// quic-go prints its own note through the standard logger when it cannot raise the
	// buffers; ferry says it once, in its own log, with the fix (see UDPBufferProblem).
	if os.Getenv("QUIC_GO_DISABLE_RECEIVE_BUFFER_WARNING") == "" {
		os.Setenv("QUIC_GO_DISABLE_RECEIVE_BUFFER_WARNING", "true") //nolint:errcheck // cannot fail for a valid name
	}
}

// UDPBufferProblem says, in one line with the fix, when the OS gave a QUIC socket smaller
// buffers than WantUDPBuffer (after quic-go tried to raise them); "" when they are fine
// or cannot be read on this OS.
func UDPBufferProblem(c *net.UDPConn) string {
	rcv, snd, ok := udpBuffers(c)
	if !ok || rcv >= WantUDPBuffer && snd >= WantUDPBuffer {
		return ""
	}
	return fmt.Sprintf("the OS limits this QUIC socket's buffers to %d KiB receive / %d KiB send (wanted %d KiB each): "+
		"fast transfers will drop packets and slow down; raise the limits with "+
		"`sysctl -w net.core.rmem_max=7500000 net.core.wmem_max=7500000` (keep them in /etc/sysctl.d/), "+
		"or give the process CAP_NET_ADMIN", rcv>>10, snd>>10, WantUDPBuffer>>10)
}
