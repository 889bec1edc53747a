package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/xtaci/smux"

	"github.com/ferrytunnel/ferry/protocol"
)

// smuxConfig: protocol version 2 (per-stream flow control, so one slow public client
// cannot stall the others), 1 MiB per stream and 32 MiB per session of receive buffer.
func smuxConfig() *smux.Config {
	return &smux.Config{
		Version:           2,
		KeepAliveInterval: KeepAlive,
		KeepAliveTimeout:  IdleTimeout,
		MaxFrameSize:      32 << 10,
		MaxReceiveBuffer:  32 << 20,
		MaxStreamBuffer:   1 << 20,
	}
}

// TCPSession is the fallback transport for networks that block UDP: TLS over TCP (ALPN
// ferry/1, on the relay's public TLS port) with smux streams. It carries exactly the
// same frames as QUIC.
//
// Besides the multiplexed streams, a session may carry direct data connections, one
// stream each (see tcpdata.go): the relay opens streams on them when it has one idle.
type TCPSession struct {
	m      *smux.Session
	ctx    context.Context
	cancel context.CancelCauseFunc
	data   dataConns

	// Agent side: how to dial data connections (set by DialTCP).
	dialAddr string
	dataConf *tls.Config
}

// NewTCPSession runs smux over an established TLS connection; server is true on the relay.
func NewTCPSession(c net.Conn, server bool) (*TCPSession, error) {
	var m *smux.Session
	var err error
	if server {
		m, err = smux.Server(c, smuxConfig())
	} else {
		m, err = smux.Client(c, smuxConfig())
	}
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	s := &TCPSession{m: m, ctx: ctx, cancel: cancel}
	go func() {
		<-m.CloseChan()
		cancel(errors.New("session closed by peer"))
		s.data.closeAll()
	}()
	if !server {
		// The agent accepts streams from the multiplexer and from data connections.
		s.data.tokens = make(chan struct{}, MaxDataConns)
		s.data.accepted = make(chan Stream)
		go s.acceptMux()
	}
	return s, nil
}

// DialTCP dials a relay over TCP+TLS with ALPN ferry/1.
func DialTCP(ctx context.Context, addr string, tlsConf *tls.Config) (*TCPSession, error) {
	tlsConf = tlsConf.Clone()
	tlsConf.NextProtos = []string{protocol.ALPN}
	if tlsConf.ClientSessionCache == nil { // data connections resume the session's TLS session
		tlsConf.ClientSessionCache = tls.NewLRUClientSessionCache(4)
	}
	d := tls.Dialer{Config: tlsConf}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if tc := c.(*tls.Conn); tc.ConnectionState().NegotiatedProtocol != protocol.ALPN {
		c.Close()
		return nil, fmt.Errorf("relay at %s did not select %s over TCP: %w", addr, protocol.ALPN, ErrNotFerry)
	}
	s, err := NewTCPSession(c, false)
	if err != nil {
		c.Close()
		return nil, err
	}
	s.dialAddr = addr
	s.dataConf = tlsConf.Clone()
	s.dataConf.NextProtos = []string{protocol.DataALPN}
	return s, nil
}

// Name implements Session.
func (s *TCPSession) Name() string { return "tcp" }

// OpenStream implements Session.
func (s *TCPSession) OpenStream(ctx context.Context) (Stream, error) {
	if st := s.takeData(); st != nil {
		return st, nil
	}
	st, err := s.m.OpenStream()
	if err != nil {
		return nil, s.closedErr(err)
	}
	return tcpStream{st}, nil
}

// AcceptStream implements Session.
func (s *TCPSession) AcceptStream(ctx context.Context) (Stream, error) {
	if s.data.accepted != nil {
		select {
		case st := <-s.data.accepted:
			return st, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-s.ctx.Done():
			return nil, s.closedErr(net.ErrClosed)
		}
	}
	// smux's accept takes a deadline, not a context: turn the context into one.
	s.m.SetDeadline(time.Time{})
	if d, ok := ctx.Deadline(); ok {
		s.m.SetDeadline(d)
	}
	stop := context.AfterFunc(ctx, func() { s.m.SetDeadline(time.Now()) })
	defer stop()
	st, err := s.m.AcceptStream()
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, s.closedErr(err)
	}
	return tcpStream{st}, nil
}

// acceptMux feeds the multiplexer's streams to AcceptStream (agent side).
func (s *TCPSession) acceptMux() {
	for {
		st, err := s.m.AcceptStream()
		if err != nil { // the connection failed or closed: so did the session
			s.cancel(fmt.Errorf("session ended: %w", err))
			s.data.closeAll()
			return
		}
		select {
		case s.data.accepted <- tcpStream{st}:
		case <-s.ctx.Done():
			st.Close()
			return
		}
	}
}

func (s *TCPSession) closedErr(err error) error {
	if cause := context.Cause(s.ctx); cause != nil {
		return fmt.Errorf("%w (%v)", net.ErrClosed, cause)
	}
	return err
}

// CloseWithError implements Session. smux carries no reason on the wire: the reason goes
// to the peer as an Error or GoAway frame on the control stream before this is called.
func (s *TCPSession) CloseWithError(code protocol.ErrorCode, msg string) error {
	s.cancel(&protocol.Error{Code: code, Message: msg})
	s.data.closeAll()
	return s.m.Close()
}

// Context implements Session.
func (s *TCPSession) Context() context.Context { return s.ctx }

// LocalAddr implements Session.
func (s *TCPSession) LocalAddr() net.Addr { return s.m.LocalAddr() }

// RemoteAddr implements Session.
func (s *TCPSession) RemoteAddr() net.Addr { return s.m.RemoteAddr() }

type tcpStream struct{ *smux.Stream }

// Abort ends both directions at once (smux has no reset with a code).
func (s tcpStream) Abort(protocol.ErrorCode) { s.Stream.Close() }
