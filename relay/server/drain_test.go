package server_test

import (
	"net"
	"testing"
	"time"

	"github.com/ferrytunnel/ferry/agent/forward"
	"github.com/ferrytunnel/ferry/relay/config"
)

// TestGracefulDrain: a stopping relay refuses new connections, tells its agent to go
// away, and lets a connection in flight carry on until it closes; then it stops, well
// before the drain timeout. Run for both agent transports.
func TestGracefulDrain(t *testing.T) {
	for _, tr := range []string{"quic", "tcp"} {
		t.Run(tr, func(t *testing.T) {
			r := newRelayConfigured(t, tr, func(c *config.Config) { c.DrainTimeout = "8s" })
			a := r.startAgent(&forward.Tunnel{Name: "echo", Proto: "tcp", Addr: echoServer(t)})
			addr := tcpAddrOf(t, a.url(t, "tcp"))
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if got, err := echoOnce(conn, "before"); err != nil || got != "before" {
				t.Fatalf("echo before the stop: %q %v", got, err)
			}
			stopped := make(chan struct{})
			go func() { r.Stop(); close(stopped) }()
			waitFor(t, "new connections refused", func() bool {
				c, err := net.Dial("tcp", addr)
				if err != nil {
					return true
				}
				c.Close()
				return false
			})
			// The connection in flight still works, several times, while the relay drains.
			for _, msg := range []string{"during 1", "during 2"} {
				if got, err := echoOnce(conn, msg); err != nil || got != msg {
					t.Fatalf("echo while draining: %q %v, want %q", got, err, msg)
				}
			}
			select {
			case <-stopped:
				t.Fatal("relay stopped while a connection was still in flight")
			case <-time.After(200 * time.Millisecond):
			}
			start := time.Now()
			conn.Close()
			select {
			case <-stopped:
				if d := time.Since(start); d > 3*time.Second {
					t.Errorf("relay took %v to stop after the last connection closed", d)
				}
			case <-time.After(6 * time.Second):
				t.Fatal("relay did not stop after the last connection closed")
			}
		})
	}
}
