package transport

import (
	"crypto/tls"
	"net"
	"syscall"
	"testing"
)

// TestDataConnsKeepAlive: both ends of every data connection probe it on dataKeepAlive's
// schedule, so a path that dies silently is found (and skipped) in seconds, not minutes.
func TestDataConnsKeepAlive(t *testing.T) {
	r, conf := newDataRelay(t)
	agent, relay := r.connect(t, conf, "")
	waitIdle(t, relay, DataIdle)
	want := map[string][2]int{
		"SO_KEEPALIVE":  {syscall.SOL_SOCKET, 1},
		"TCP_KEEPIDLE":  {syscall.IPPROTO_TCP, int(dataKeepAlive.Idle.Seconds())},
		"TCP_KEEPINTVL": {syscall.IPPROTO_TCP, int(dataKeepAlive.Interval.Seconds())},
		"TCP_KEEPCNT":   {syscall.IPPROTO_TCP, dataKeepAlive.Count},
	}
	opt := map[string]int{"SO_KEEPALIVE": syscall.SO_KEEPALIVE, "TCP_KEEPIDLE": syscall.TCP_KEEPIDLE,
		"TCP_KEEPINTVL": syscall.TCP_KEEPINTVL, "TCP_KEEPCNT": syscall.TCP_KEEPCNT}
	for side, s := range map[string]*TCPSession{"agent": agent, "relay": relay} {
		s.data.mu.Lock()
		conns := make([]*tls.Conn, 0, len(s.data.all))
		for c := range s.data.all {
			conns = append(conns, c)
		}
		s.data.mu.Unlock()
		if len(conns) == 0 {
			t.Fatalf("%s: no data connections", side)
		}
		for _, c := range conns {
			rc, err := baseConn(c).(*net.TCPConn).SyscallConn()
			if err != nil {
				t.Fatal(err)
			}
			for name, w := range want {
				var got int
				var gerr error
				rc.Control(func(fd uintptr) { got, gerr = syscall.GetsockoptInt(int(fd), w[0], opt[name]) }) //nolint:errcheck
				if gerr != nil || got != w[1] {
					t.Fatalf("%s data connection: %s = %d (%v), want %d", side, name, got, gerr, w[1])
				}
			}
		}
	}
}
