package server_test

import (
	"io"
	"net"
	"os"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrytunnel/ferry/agent/forward"
)

// TestUpstreamRestart: while the upstream is down, clients get a quick refusal (not a
// hang), and the tunnel works again as soon as the upstream is back on the same port,
// with no agent or relay restart.
func TestUpstreamRestart(t *testing.T) {
	r := newRelay(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	serve := func(ln net.Listener) {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }() //nolint:errcheck
		}
	}
	go serve(ln)
	a := r.startAgent(&forward.Tunnel{Name: "up", Proto: "tcp", Addr: addr})
	public := tcpAddrOf(t, a.url(t, "tcp"))
	try := func() (string, error) {
		c, err := net.Dial("tcp", public)
		if err != nil {
			return "", err
		}
		defer c.Close()
		return echoOnce(c, "ping")
	}
	if got, err := try(); err != nil || got != "ping" {
		t.Fatalf("before the restart: %q %v", got, err)
	}
	ln.Close()
	start := time.Now()
	if got, err := try(); err == nil && got == "ping" {
		t.Fatal("echo worked with the upstream down")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("a client took %v to learn the upstream is down, want a quick refusal", d)
	}
	ln2, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("the upstream's port was taken meanwhile: %v", err)
	}
	defer ln2.Close()
	go serve(ln2)
	if got, err := try(); err != nil || got != "ping" {
		t.Fatalf("after the upstream came back: %q %v", got, err)
	}
}

// TestLongConnectionChurn: 100,000 public connections come and go through one tunnel;
// afterwards the relay's goroutines are back to their baseline and the heap has not grown
// with the count. Run by make test-long (FERRY_LONG=1).
func TestLongConnectionChurn(t *testing.T) {
	if os.Getenv("FERRY_LONG") == "" {
		t.Skip("set FERRY_LONG=1 (make test-long)")
	}
	r := newRelay(t)
	a := r.startAgent(&forward.Tunnel{Name: "churn", Proto: "tcp", Addr: echoServer(t)})
	public := tcpAddrOf(t, a.url(t, "tcp"))
	round := func(n int) {
		errs := make(chan error, 16)
		work := make(chan struct{}, n)
		for range n {
			work <- struct{}{}
		}
		close(work)
		for range 16 {
			go func() {
				var err error
				for range work {
					var c net.Conn
					if c, err = net.Dial("tcp", public); err != nil {
						break
					}
					var got string
					got, err = echoOnce(c, "x")
					c.Close()
					if err == nil && got != "x" {
						err = io.ErrUnexpectedEOF
					}
					if err != nil {
						break
					}
				}
				errs <- err
			}()
		}
		for range 16 {
			if err := <-errs; err != nil {
				t.Fatalf("connection failed during the churn: %v", err)
			}
		}
	}
	// settle waits for the goroutines of closed connections to end (down to target).
	settle := func(target int) (int, uint64) {
		var g int
		for range 50 {
			runtime.GC()
			if g = runtime.NumGoroutine(); g <= target {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return g, ms.HeapAlloc
	}
	g0 := runtime.NumGoroutine()
	round(2000) // warm pools and buffers
	baseG, baseHeap := settle(g0 + 5)
	start := time.Now()
	round(100000)
	g, heap := settle(baseG + 5)
	t.Logf("100,000 connections in %v; goroutines %d -> %d; heap %.1f -> %.1f MiB",
		time.Since(start).Round(time.Millisecond), baseG, g, float64(baseHeap)/(1<<20), float64(heap)/(1<<20))
	if g > baseG+10 {
		t.Errorf("goroutines %d after the churn, baseline %d: a leak", g, baseG)
	}
	if heap > baseHeap+32<<20 {
		t.Errorf("heap grew from %d to %d bytes over 100,000 connections", baseHeap, heap)
	}
}

// TestAgentNoticesSilentRelay: a relay that goes silent without a word (here every packet
// between them is dropped, as when it is killed or its network is cut) is noticed within
// the heartbeat tolerance, not after the transport's idle timeout (30 s).
func TestAgentNoticesSilentRelay(t *testing.T) {
	r := newRelay(t)
	hole := newUDPBlackhole(t, r.Srv.QUICAddr().String())
	cfg := r.agentConfig(&forward.Tunnel{Name: "w", Proto: "http", Addr: named(t, "w")})
	cfg.Relay = hole.addr
	cfg.HeartbeatInterval = 100 * time.Millisecond
	cfg.HeartbeatTolerance = time.Second
	a, err := r.tryAgent(cfg)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // heartbeats answered: still connected
	if !a.client.Connected() {
		t.Fatal("agent lost a relay that answers its heartbeats")
	}
	hole.drop.Store(true)
	start := time.Now()
	for a.client.Connected() {
		if time.Since(start) > 5*time.Second {
			t.Fatal("agent still counts itself connected 5 s after the relay went silent (heartbeat tolerance 1 s)")
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("noticed after %v", time.Since(start).Round(10*time.Millisecond))
}

// udpBlackhole forwards one client's datagrams to target and back, until drop is set.
type udpBlackhole struct {
	addr string
	drop atomic.Bool
}

func newUDPBlackhole(t *testing.T, target string) *udpBlackhole {
	t.Helper()
	front, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	back, err := net.Dial("udp", target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { front.Close(); back.Close() })
	h := &udpBlackhole{addr: front.LocalAddr().String()}
	var client atomic.Pointer[net.Addr]
	go func() {
		buf := make([]byte, 64<<10)
		for {
			n, from, err := front.ReadFrom(buf)
			if err != nil {
				return
			}
			client.Store(&from)
			if !h.drop.Load() {
				back.Write(buf[:n]) //nolint:errcheck
			}
		}
	}()
	go func() {
		buf := make([]byte, 64<<10)
		for {
			n, err := back.Read(buf)
			if err != nil {
				return
			}
			if to := client.Load(); to != nil && !h.drop.Load() {
				front.WriteTo(buf[:n], *to) //nolint:errcheck
			}
		}
	}()
	return h
}
