package transport

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/ferrytunnel/ferry/protocol"
)

// Direct data connections (TCP fallback only).
//
// Multiplexing every stream over the session's one TLS connection costs each 32 KiB of
// bulk data two goroutine hand-offs per side and a frame header that splits TLS records;
// on loopback that held the fallback to a third to a half of what a bare TLS chain moves.
// So a TCP session also keeps a few TLS connections that each carry exactly one stream:
// the agent opens them ahead of need (ALPN protocol.DataALPN, then a DataJoin frame with
// the session's id and the key the relay gave it in AuthResp) and waits; the relay takes
// an idle one for the next public connection, writes the StreamHeader on it, and from
// then on it is a stream like any other, copied by one goroutine per direction with no
// framing. When none is idle (a burst of connections, more than MaxDataConns open) the
// stream goes over the multiplexer, as before. Closing the session closes them all.
const (
	// DataIdle is how many idle data connections an agent keeps open, ready for the
	// relay's next streams.
	DataIdle = 8
	// MaxDataConns bounds a session's data connections, idle and busy, on both sides.
	MaxDataConns = 64
	// maxRelayIdle bounds the idle data connections a relay keeps for one session.
	maxRelayIdle = 2 * DataIdle
	// dataDialTimeout bounds dialing a data connection and sending its DataJoin.
	dataDialTimeout = 10 * time.Second
	// dataDialInterval paces an agent's dials once DataIdle have gone out at once: a
	// burst of short connections then goes over the multiplexer instead of costing a TLS
	// handshake each, and long ones still find a data connection soon.
	dataDialInterval = 5 * time.Millisecond
	// maxDataBackoff is the longest an agent waits before dialing again after a failure.
	maxDataBackoff = 30 * time.Second
)

// DataAcceptor is the relay's side of a session that takes direct data connections.
type DataAcceptor interface {
	// AcceptDataConns enables data connections and returns the key they must present.
	AcceptDataConns() string
	// JoinData hands over a data connection that presented key; false (the caller closes
	// c) when the key is wrong, the session has ended or holds as many as it may.
	JoinData(key string, c *tls.Conn) bool
}

// dataConns is one session's set of data connections.
type dataConns struct {
	mu     sync.Mutex
	key    []byte               // relay: the key joins must present (nil: not accepting)
	idle   []*tls.Conn          // relay: joined, not carrying a stream yet
	all    map[*tls.Conn]func() // every open data connection, with what closing it gives back
	closed bool

	// Agent side.
	tokens   chan struct{} // one per open data connection, at most MaxDataConns
	accepted chan Stream   // data connections the relay began to use
	tat      time.Time     // dial pacing: when the next dial would be due (GCRA)
}

// dialDelay books a dial and says how long to wait before it: DataIdle at once, then
// one per dataDialInterval.
func (d *dataConns) dialDelay(now time.Time) time.Duration {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.tat.Before(now) {
		d.tat = now
	}
	d.tat = d.tat.Add(dataDialInterval)
	return max(d.tat.Sub(now)-DataIdle*dataDialInterval, 0)
}

// add registers c (to be closed with the session); release runs when it is dropped.
func (d *dataConns) add(c *tls.Conn, release func()) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.addLocked(c, release)
}

func (d *dataConns) addLocked(c *tls.Conn, release func()) bool {
	if d.closed || len(d.all) >= MaxDataConns {
		return false
	}
	if d.all == nil {
		d.all = make(map[*tls.Conn]func())
	}
	d.all[c] = release
	return true
}

// drop forgets c and runs its release function once; it does not close c.
func (d *dataConns) drop(c *tls.Conn) {
	d.mu.Lock()
	release, ok := d.all[c]
	delete(d.all, c)
	d.mu.Unlock()
	if ok && release != nil {
		release()
	}
}

// closeAll closes every data connection and refuses new ones.
func (d *dataConns) closeAll() {
	d.mu.Lock()
	d.closed = true
	conns := make([]*tls.Conn, 0, len(d.all))
	for c := range d.all {
		conns = append(conns, c)
	}
	d.idle = nil
	d.mu.Unlock()
	for _, c := range conns {
		abortConn(c)
		d.drop(c)
	}
}

// AcceptDataConns implements DataAcceptor.
func (s *TCPSession) AcceptDataConns() string {
	key := make([]byte, 32)
	rand.Read(key) //nolint:errcheck // crypto/rand.Read never fails
	s.data.mu.Lock()
	s.data.key = key
	s.data.mu.Unlock()
	return base64.RawURLEncoding.EncodeToString(key)
}

// JoinData implements DataAcceptor.
func (s *TCPSession) JoinData(key string, c *tls.Conn) bool {
	got, err := base64.RawURLEncoding.DecodeString(key)
	d := &s.data
	d.mu.Lock()
	defer d.mu.Unlock()
	if err != nil || d.key == nil || subtle.ConstantTimeCompare(got, d.key) != 1 ||
		len(d.idle) >= maxRelayIdle || !d.addLocked(c, nil) {
		return false
	}
	// (An interface, not *net.TCPConn: the relay's connection may be a wrapper embedding it.)
	if tc, ok := baseConn(c).(interface {
		SetKeepAliveConfig(net.KeepAliveConfig) error
	}); ok {
		tc.SetKeepAliveConfig(dataKeepAlive) //nolint:errcheck // best effort: the peek still finds a closed peer
	}
	d.idle = append(d.idle, c)
	return true
}

// dataKeepAlive probes an idle data connection, from both ends, after KeepAlive without
// traffic and every 5 s after that: NATs keep its mapping, and one whose path died
// silently (no FIN, no reset) errors within about 25 s, so takeData skips it instead of
// handing it a public connection. Go's default would take 15 s + 9 × 15 s.
var dataKeepAlive = net.KeepAliveConfig{Enable: true, Idle: KeepAlive, Interval: 5 * time.Second, Count: 3}

// takeData returns an idle data connection as a stream, or nil when none is ready. The
// newest goes first; one whose agent end has gone is closed and skipped.
func (s *TCPSession) takeData() Stream {
	d := &s.data
	for {
		d.mu.Lock()
		n := len(d.idle)
		if n == 0 {
			d.mu.Unlock()
			return nil
		}
		c := d.idle[n-1]
		d.idle = d.idle[:n-1]
		d.mu.Unlock()
		if idleConnAlive(c) {
			return &dataStream{Conn: c, first: -1, d: d}
		}
		c.Close()
		d.drop(c)
	}
}

// StartDataConns makes an agent's session keep DataIdle data connections open to the
// relay, which uses them for its next streams. The session must come from DialTCP.
func (s *TCPSession) StartDataConns(sessionID, key string) {
	if s.dataConf == nil || key == "" {
		return
	}
	body, err := json.Marshal(&protocol.DataJoin{SessionID: sessionID, Key: key})
	if err != nil {
		return
	}
	join := protocol.AppendFrame(nil, protocol.TypeDataJoin, body)
	for range DataIdle {
		go s.dataSlot(join)
	}
}

// dataSlot keeps one idle data connection open: it dials, waits for the relay to use the
// connection, hands it to AcceptStream and dials the next, backing off after failures.
func (s *TCPSession) dataSlot(join []byte) {
	var backoff time.Duration
	for {
		select {
		case s.data.tokens <- struct{}{}:
		case <-s.ctx.Done():
			return
		}
		if wait := s.data.dialDelay(time.Now()); wait > 0 {
			select {
			case <-time.After(wait):
			case <-s.ctx.Done():
				<-s.data.tokens
				return
			}
		}
		st, err := s.dialData(join)
		if err == nil {
			backoff = 0
			select {
			case s.data.accepted <- st:
				continue
			case <-s.ctx.Done():
				st.Close()
				return
			}
		}
		if s.ctx.Err() != nil {
			return
		}
		backoff = min(max(2*backoff, 100*time.Millisecond), maxDataBackoff)
		select {
		case <-time.After(backoff):
		case <-s.ctx.Done():
			return
		}
	}
}

// dialData opens one data connection, joins it to the session and waits until the relay
// writes on it. It holds one token, given back when the connection is dropped.
func (s *TCPSession) dialData(join []byte) (Stream, error) {
	release := func() { <-s.data.tokens }
	ctx, cancel := context.WithTimeout(s.ctx, dataDialTimeout)
	d := net.Dialer{KeepAliveConfig: dataKeepAlive}
	nc, err := d.DialContext(ctx, "tcp", s.dialAddr)
	if err != nil {
		cancel()
		release()
		return nil, err
	}
	c := tls.Client(BatchWrites(nc), s.dataConf)
	err = c.HandshakeContext(ctx)
	cancel()
	if err != nil {
		nc.Close()
		release()
		return nil, err
	}
	if !s.data.add(c, release) {
		c.Close()
		release()
		return nil, net.ErrClosed
	}
	st, err := s.joinData(c, join)
	if err != nil {
		c.Close()
		s.data.drop(c)
	}
	return st, err
}

// joinData sends join on a new data connection and waits until the relay writes on it.
func (s *TCPSession) joinData(c *tls.Conn, join []byte) (Stream, error) {
	if p := c.ConnectionState().NegotiatedProtocol; p != protocol.DataALPN {
		return nil, fmt.Errorf("relay did not select %s for a data connection (got %q)", protocol.DataALPN, p)
	}
	c.SetWriteDeadline(time.Now().Add(dataDialTimeout))
	_, err := c.Write(join)
	c.SetWriteDeadline(time.Time{})
	if err != nil {
		return nil, err
	}
	var one [1]byte
	if n, err := c.Read(one[:]); n != 1 { // the relay writes a StreamHeader when it takes the connection
		if err == nil {
			err = errors.New("empty read")
		}
		return nil, err
	}
	return &dataStream{Conn: c, first: int(one[0]), d: &s.data}, nil
}

// dataStream is a stream that has a TLS connection to itself.
type dataStream struct {
	*tls.Conn
	first  int // a byte read ahead while waiting for the relay (agent side), or -1
	d      *dataConns
	closed sync.Once
}

// Write implements net.Conn: the TLS records of one Write leave in one system call.
func (s *dataStream) Write(p []byte) (int, error) {
	b, ok := s.Conn.NetConn().(*batchConn)
	if !ok || len(p) <= 16<<10 {
		return s.Conn.Write(p)
	}
	b.begin()
	n, err := s.Conn.Write(p)
	if ferr := b.flush(); err == nil {
		err = ferr
	}
	if err != nil {
		n = 0 // gathered, perhaps not sent: nothing is known to have arrived
	}
	return n, err
}

// Read implements net.Conn.
func (s *dataStream) Read(p []byte) (int, error) {
	if s.first >= 0 && len(p) > 0 {
		p[0] = byte(s.first)
		s.first = -1
		return 1, nil
	}
	return s.Conn.Read(p)
}

// Close implements net.Conn: it ends both directions.
func (s *dataStream) Close() error {
	err := s.Conn.Close()
	s.closed.Do(func() { s.d.drop(s.Conn) })
	return err
}

// Abort implements Stream: the TCP connection is reset.
func (s *dataStream) Abort(protocol.ErrorCode) {
	abortConn(s.Conn)
	s.closed.Do(func() { s.d.drop(s.Conn) })
}

// abortConn closes c's TCP connection with a reset, sending no close_notify.
func abortConn(c *tls.Conn) {
	if tc, ok := baseConn(c).(*net.TCPConn); ok {
		tc.SetLinger(0) //nolint:errcheck // best effort: a plain close is fine too
	}
	c.NetConn().Close()
}

// baseConn unwraps c down to the connection that has no NetConn of its own.
func baseConn(c net.Conn) net.Conn {
	for {
		u, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			return c
		}
		c = u.NetConn()
	}
}

// batchConn sits under a data connection's TLS: while a stream Write is in progress
// (begin … flush) it gathers the TLS records that Write produces, and anything else
// written meanwhile, in order, and sends them in one system call instead of one per
// 16 KiB record.
type batchConn struct {
	net.Conn
	mu  sync.Mutex
	on  bool
	buf *[]byte
}

var batchBufs = sync.Pool{New: func() any { b := make([]byte, 0, largeBufSize+1024); return &b }}

// BatchWrites wraps the TCP connection under an agent connection's TLS on the relay, so
// that data connections can send each Write in one system call (see batchConn).
func BatchWrites(c net.Conn) net.Conn { return &batchConn{Conn: c} }

// NetConn returns the wrapped connection.
func (b *batchConn) NetConn() net.Conn { return b.Conn }

// Write implements net.Conn.
func (b *batchConn) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.on {
		*b.buf = append(*b.buf, p...)
		return len(p), nil
	}
	return b.Conn.Write(p)
}

func (b *batchConn) begin() {
	b.mu.Lock()
	b.on = true
	if b.buf == nil {
		b.buf = batchBufs.Get().(*[]byte)
	}
	b.mu.Unlock()
}

func (b *batchConn) flush() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.on = false
	if b.buf == nil {
		return nil
	}
	var err error
	if len(*b.buf) > 0 {
		_, err = b.Conn.Write(*b.buf)
	}
	*b.buf = (*b.buf)[:0]
	if cap(*b.buf) <= 2*largeBufSize { // keep the pool's buffers ordinary-sized
		batchBufs.Put(b.buf)
	}
	b.buf = nil
	return err
}
