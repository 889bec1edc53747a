package server_test

import (
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ferrytunnel/ferry/agent/forward"
)

// TestLongAttacksDoNotDisturbOthers: while strangers attack the relay's public side,
// another tunnel's round trips stay fast. Each attack runs on its own; the victim's p99
// echo latency during it is measured against a calm baseline in the same run. A latency
// measurement: run by make test-long (FERRY_LONG=1), without the race detector.
func TestLongAttacksDoNotDisturbOthers(t *testing.T) {
	if os.Getenv("FERRY_LONG") == "" {
		t.Skip("set FERRY_LONG=1 (make test-long)")
	}
	r := newRelay(t)
	victim := r.startAgent(&forward.Tunnel{Name: "victim", Proto: "tcp", Addr: echoServer(t)})
	target := r.startAgent(&forward.Tunnel{Name: "target", Proto: "tcp", Addr: echoServer(t)})
	victimAddr := tcpAddrOf(t, victim.url(t, "tcp"))
	targetAddr := tcpAddrOf(t, target.url(t, "tcp"))
	tlsAddr := r.Srv.HTTPSAddr().String()
	httpAddr := r.Srv.HTTPAddr().String()

	vc, err := net.Dial("tcp", victimAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer vc.Close()
	p99 := func(d time.Duration) time.Duration {
		var lat []time.Duration
		for end := time.Now().Add(d); time.Now().Before(end); {
			start := time.Now()
			if got, err := echoOnce(vc, "ping"); err != nil || got != "ping" {
				t.Fatalf("victim echo: %q %v", got, err)
			}
			lat = append(lat, time.Since(start))
		}
		slices.Sort(lat)
		return lat[len(lat)*99/100]
	}
	base := p99(500 * time.Millisecond)
	t.Logf("victim p99 calm: %v", base)

	dial := func(addr string) net.Conn {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return nil
		}
		return c
	}
	attacks := []struct {
		name string
		one  func() net.Conn // opens one attacking connection (nil when refused)
	}{
		{"slowloris: headers that never end", func() net.Conn {
			c := dial(httpAddr)
			if c != nil {
				fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x.ferry.test\r\nX-Slow: ")
			}
			return c
		}},
		{"ClientHello that never finishes", func() net.Conn {
			c := dial(tlsAddr)
			if c != nil {
				c.Write([]byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01}) //nolint:errcheck
			}
			return c
		}},
		{"garbage on :443", func() net.Conn {
			c := dial(tlsAddr)
			if c != nil {
				c.Write([]byte("\x00\xffGARBAGE\r\n\r\n")) //nolint:errcheck
			}
			return c
		}},
		{"garbage on a tcp tunnel port", func() net.Conn {
			c := dial(targetAddr)
			if c != nil {
				c.Write([]byte("\x00\xffGARBAGE")) //nolint:errcheck
			}
			return c
		}},
		{"unknown-SNI handshakes", func() net.Conn {
			c, err := tls.DialWithDialer(&net.Dialer{Timeout: time.Second}, "tcp", tlsAddr, &tls.Config{ServerName: "nobody.elsewhere.test", InsecureSkipVerify: true})
			if err == nil {
				c.Close()
			}
			return nil
		}},
	}
	for _, a := range attacks {
		var mu sync.Mutex
		var held []net.Conn
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() {
				for n := 0; n < 300; n++ {
					select {
					case <-stop:
						return
					default:
					}
					if c := a.one(); c != nil {
						mu.Lock()
						held = append(held, c)
						mu.Unlock()
					}
				}
			})
		}
		during := p99(time.Second)
		close(stop)
		wg.Wait()
		for _, c := range held {
			c.Close()
		}
		t.Logf("victim p99 during %s: %v (%d attacking connections held)", a.name, during, len(held))
		if limit := max(20*base, 100*time.Millisecond); during > limit {
			t.Errorf("during %s the victim's p99 was %v, want under %v (calm %v)", a.name, during, limit, base)
		}
	}
}
