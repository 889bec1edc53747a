package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/hashicorp/yamux"

	"github.com/ferrytunnel/ferry/protocol"
)

// yamuxConfig is sized for throughput (16 MiB stream windows, like the QUIC windows)
// and for one stream per public connection.
func yamuxConfig() *yamux.Config {
	return &yamux.Config{
		AcceptBacklog:          4096,
		EnableKeepAlive:        true,
		KeepAliveInterval:      KeepAlive,
		ConnectionWriteTimeout: IdleTimeout,
		MaxStreamWindowSize:    16 << 20,
		StreamOpenTimeout:      IdleTimeout,
		StreamCloseTimeout:     time.Minute,
		LogOutput:              io.Discard,
	}
}

// TCPSession is the fallback transport for networks that block UDP: TLS over TCP (ALPN
// ferry/1, on the relay's public TLS port) with yamux streams. It carries exactly the
// same frames as QUIC.
type TCPSession struct {
	y      *yamux.Session
	ctx    context.Context
	cancel context.CancelCauseFunc
}

// NewTCPSession runs yamux over an established TLS connection; server is true on the relay.
func NewTCPSession(c net.Conn, server bool) (*TCPSession, error) {
	var y *yamux.Session
	var err error
	if server {
		y, err = yamux.Server(c, yamuxConfig())
	} else {
		y, err = yamux.Client(c, yamuxConfig())
	}
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	s := &TCPSession{y: y, ctx: ctx, cancel: cancel}
	go func() {
		<-y.CloseChan()
		cancel(errors.New("session closed by peer"))
	}()
	return s, nil
}

// DialTCP dials a relay over TCP+TLS with ALPN ferry/1.
func DialTCP(ctx context.Context, addr string, tlsConf *tls.Config) (*TCPSession, error) {
	tlsConf = tlsConf.Clone()
	tlsConf.NextProtos = []string{protocol.ALPN}
	d := tls.Dialer{Config: tlsConf}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if tc := c.(*tls.Conn); tc.ConnectionState().NegotiatedProtocol != protocol.ALPN {
		c.Close()
		return nil, fmt.Errorf("relay at %s did not select %s over TCP: it is not a ferry relay, or too old", addr, protocol.ALPN)
	}
	s, err := NewTCPSession(c, false)
	if err != nil {
		c.Close()
		return nil, err
	}
	return s, nil
}

// Name implements Session.
func (s *TCPSession) Name() string { return "tcp" }

// OpenStream implements Session.
func (s *TCPSession) OpenStream(ctx context.Context) (Stream, error) {
	st, err := s.y.OpenStream()
	if err != nil {
		return nil, s.closedErr(err)
	}
	return tcpStream{st}, nil
}

// AcceptStream implements Session.
func (s *TCPSession) AcceptStream(ctx context.Context) (Stream, error) {
	st, err := s.y.AcceptStreamWithContext(ctx)
	if err != nil {
		return nil, s.closedErr(err)
	}
	return tcpStream{st}, nil
}

func (s *TCPSession) closedErr(err error) error {
	if cause := context.Cause(s.ctx); cause != nil {
		return fmt.Errorf("%w (%v)", net.ErrClosed, cause)
	}
	return err
}

// CloseWithError implements Session. yamux carries no reason on the wire: the reason goes
// to the peer as an Error or GoAway frame on the control stream before this is called.
func (s *TCPSession) CloseWithError(code protocol.ErrorCode, msg string) error {
	s.cancel(&protocol.Error{Code: code, Message: msg})
	return s.y.Close()
}

// Context implements Session.
func (s *TCPSession) Context() context.Context { return s.ctx }

// LocalAddr implements Session.
func (s *TCPSession) LocalAddr() net.Addr { return s.y.LocalAddr() }

// RemoteAddr implements Session.
func (s *TCPSession) RemoteAddr() net.Addr { return s.y.RemoteAddr() }

type tcpStream struct{ *yamux.Stream }

// CloseWrite sends FIN (yamux's Close is a half-close).
func (s tcpStream) CloseWrite() error { return s.Stream.Close() }

// Close sends FIN and stops waiting for reads.
func (s tcpStream) Close() error {
	err := s.Stream.Close()
	s.Stream.SetReadDeadline(time.Now())
	return err
}

func (s tcpStream) Abort(protocol.ErrorCode) { s.Close() }
