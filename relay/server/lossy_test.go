package server_test

import (
	"crypto/sha256"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/ferrytunnel/ferry/agent/forward"
)

// lossyUDP forwards datagrams between one client and target, dropping each with
// probability loss and delivering the rest after delay: the kernel here has no netem.
type lossyUDP struct {
	pc     net.PacketConn
	target *net.UDPAddr
	loss   float64
	delay  time.Duration

	mu      sync.Mutex
	client  net.Addr
	up      *net.UDPConn // to target
	dropped int
	passed  int
}

func newLossyUDP(t *testing.T, target string, loss float64, delay time.Duration) *lossyUDP {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ta, _ := net.ResolveUDPAddr("udp", target)
	up, err := net.DialUDP("udp", nil, ta)
	if err != nil {
		t.Fatal(err)
	}
	p := &lossyUDP{pc: pc, target: ta, loss: loss, delay: delay, up: up}
	t.Cleanup(func() { pc.Close(); up.Close() })
	go p.pump(func(b []byte, from net.Addr) {
		p.mu.Lock()
		p.client = from
		p.mu.Unlock()
		p.send(b, func(b []byte) { up.Write(b) }) //nolint:errcheck
	}, pc)
	go p.pump(func(b []byte, _ net.Addr) {
		p.mu.Lock()
		c := p.client
		p.mu.Unlock()
		if c != nil {
			p.send(b, func(b []byte) { pc.WriteTo(b, c) }) //nolint:errcheck
		}
	}, up)
	return p
}

func (p *lossyUDP) pump(handle func([]byte, net.Addr), from net.PacketConn) {
	buf := make([]byte, 65536)
	for {
		n, addr, err := from.ReadFrom(buf)
		if err != nil {
			return
		}
		handle(append([]byte(nil), buf[:n]...), addr)
	}
}

func (p *lossyUDP) send(b []byte, write func([]byte)) {
	p.mu.Lock()
	drop := rand.Float64() < p.loss
	if drop {
		p.dropped++
	} else {
		p.passed++
	}
	p.mu.Unlock()
	if !drop {
		time.AfterFunc(p.delay, func() { write(b) })
	}
}

// TestLongLossyLink: with 2% packet loss and 50 ms delay each way between agent and
// relay (QUIC, through a proxy in the test: this kernel has no netem), the agent binds
// and 2 MiB each way arrive intact; the throughput is logged (about 0.17 MiB/s here, as
// loss-based congestion control allows at 100 ms RTT). Run by make test-long.
func TestLongLossyLink(t *testing.T) {
	if os.Getenv("FERRY_LONG") == "" {
		t.Skip("set FERRY_LONG=1 (make test-long)")
	}
	r := newRelay(t)
	proxy := newLossyUDP(t, r.Srv.QUICAddr().String(), 0.02, 50*time.Millisecond)
	cfg := r.agentConfig(&forward.Tunnel{Name: "sink", Proto: "tcp", Addr: echoServer(t)})
	cfg.Relay = proxy.pc.LocalAddr().String()
	a, err := r.tryAgent(cfg)
	if err != nil {
		t.Fatalf("agent through a lossy link: %v", err)
	}
	const size = 2 << 20
	d := echoIntact(t, tcpAddrOf(t, a.url(t, "tcp")), size)
	proxy.mu.Lock()
	dropped, passed := proxy.dropped, proxy.passed
	proxy.mu.Unlock()
	t.Logf("2 MiB each way over 2%% loss, 50 ms each way: %v, %.2f MiB/s; datagrams dropped %d of %d",
		d.Round(time.Millisecond), float64(size)/d.Seconds()/(1<<20), dropped, dropped+passed)
	if dropped == 0 {
		t.Error("the proxy dropped nothing: the link was not lossy")
	}
}

// delayTCP forwards TCP connections to target, delivering every chunk after delay in
// each direction (what toxiproxy's latency toxic does), in order.
func delayTCP(t *testing.T, target string, delay time.Duration) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	pipe := func(dst, src net.Conn) {
		type chunk struct {
			at time.Time
			b  []byte
		}
		q := make(chan chunk, 1024)
		go func() {
			for c := range q {
				time.Sleep(time.Until(c.at))
				if _, err := dst.Write(c.b); err != nil {
					break
				}
			}
			dst.Close()
		}()
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				q <- chunk{time.Now().Add(delay), append([]byte(nil), buf[:n]...)}
			}
			if err != nil {
				close(q)
				return
			}
		}
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			go pipe(up, c)
			go pipe(c, up)
		}
	}()
	return ln.Addr().String()
}

// TestLongSlowTCPTransport: the TCP fallback with 50 ms each way between agent and relay:
// the agent binds and 2 MiB each way arrive intact; the throughput is logged.
func TestLongSlowTCPTransport(t *testing.T) {
	if os.Getenv("FERRY_LONG") == "" {
		t.Skip("set FERRY_LONG=1 (make test-long)")
	}
	r := newRelayTransport(t, "tcp")
	cfg := r.agentConfig(&forward.Tunnel{Name: "sink", Proto: "tcp", Addr: echoServer(t)})
	cfg.Relay = delayTCP(t, r.Srv.HTTPSAddr().String(), 50*time.Millisecond)
	a, err := r.tryAgent(cfg)
	if err != nil {
		t.Fatalf("agent over a slow TCP link: %v", err)
	}
	const size = 2 << 20
	d := echoIntact(t, tcpAddrOf(t, a.url(t, "tcp")), size)
	t.Logf("2 MiB each way over TCP+TLS+smux with 50 ms each way: %v, %.2f MiB/s", d.Round(time.Millisecond), float64(size)/d.Seconds()/(1<<20))
}

// echoIntact sends size random bytes through an echo tunnel at addr, checks they come
// back unchanged and returns how long the round trip of all of them took.
func echoIntact(t *testing.T, addr string, size int) time.Duration {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(rand.IntN(256))
	}
	start := time.Now()
	go conn.Write(data) //nolint:errcheck // a failure shows as a short read
	got := make([]byte, size)
	conn.SetReadDeadline(time.Now().Add(2 * time.Minute))
	if _, err := io.ReadFull(conn, got); err != nil {
		t.Fatalf("echo of %d bytes: %v", size, err)
	}
	d := time.Since(start)
	if sha256.Sum256(got) != sha256.Sum256(data) {
		t.Fatal("bytes changed on the way")
	}
	return d
}
