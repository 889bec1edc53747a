package edge

import (
	"net"
	"sync"
	"time"
)

// DefaultMaxConnsPerIP bounds the public connections one client address may hold open
// at once, across every public listener of the relay.
const DefaultMaxConnsPerIP = 1000

// ipLimiter counts open public connections per client address.
type ipLimiter struct {
	max    int
	mu     sync.Mutex
	open   map[string]int
	logged map[string]time.Time // last "limit reached" log line per address
}

// limitListener refuses connections beyond the per-address limit at Accept: they are
// closed at once, so a single address cannot use up the relay's file descriptors or
// memory and crowd out other tunnels' clients.
type limitListener struct {
	net.Listener
	e *Edge
}

func (e *Edge) limit(ln net.Listener) net.Listener {
	if e.ipLimit == nil {
		return ln
	}
	return &limitListener{Listener: ln, e: e}
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		tc, ok := c.(*net.TCPConn)
		if !ok {
			return c, nil
		}
		ip := tc.RemoteAddr().(*net.TCPAddr).IP.String()
		if l.e.ipLimit.acquire(ip, l.e) {
			return &limitedConn{TCPConn: tc, release: func() { l.e.ipLimit.release(ip) }}, nil
		}
		c.Close()
	}
}

func (p *ipLimiter) acquire(ip string, e *Edge) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.open[ip] >= p.max {
		if now := time.Now(); now.Sub(p.logged[ip]) >= time.Minute {
			p.logged[ip] = now
			if len(p.logged) > 10000 {
				clear(p.logged)
			}
			e.log.Warn("refusing connections from a client", "remote", ip, "open", p.open[ip],
				"reason", "too many open connections from one address (max_conns_per_ip)")
		}
		e.cfg.Observer.Rejected("conn_limit")
		return false
	}
	p.open[ip]++
	return true
}

func (p *ipLimiter) release(ip string) {
	p.mu.Lock()
	if p.open[ip]--; p.open[ip] <= 0 {
		delete(p.open, ip)
	}
	p.mu.Unlock()
}

// unlimit gives c's slot back now (agents sharing the public TLS port do not count).
func unlimit(c net.Conn) {
	if lc, ok := c.(*limitedConn); ok {
		lc.once.Do(lc.release)
	}
}

// limitedConn gives its slot back once, on the first Close.
type limitedConn struct {
	*net.TCPConn
	once    sync.Once
	release func()
}

func (c *limitedConn) Close() error {
	c.once.Do(c.release)
	return c.TCPConn.Close()
}
