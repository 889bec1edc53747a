package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/ferrytunnel/ferry/protocol"
)

// MaxAgentStreams is how many streams an agent may have open towards the relay at once
// (it needs one, the control stream).
const MaxAgentStreams = 4

// QUICConfig is the quic-go configuration both agent and relay use: high stream limits
// (one stream per public connection), flow-control windows sized for throughput, keep-alive.
func QUICConfig() *quic.Config {
	return &quic.Config{
		HandshakeIdleTimeout:           5 * time.Second,
		MaxIdleTimeout:                 IdleTimeout,
		KeepAlivePeriod:                KeepAlive,
		MaxIncomingStreams:             MaxStreams,
		MaxIncomingUniStreams:          -1,
		InitialStreamReceiveWindow:     1 << 20,
		MaxStreamReceiveWindow:         16 << 20,
		InitialConnectionReceiveWindow: 4 << 20,
		MaxConnectionReceiveWindow:     64 << 20,
	}
}

// QUICSession adapts a *quic.Conn to Session.
type QUICSession struct {
	conn *quic.Conn
	// bufferProblem is UDPBufferProblem for a dialed session's own socket ("" if fine).
	bufferProblem string
}

// NewQUICSession wraps an established QUIC connection.
func NewQUICSession(c *quic.Conn) *QUICSession { return &QUICSession{conn: c} }

// DialQUIC dials a relay over QUIC with ALPN ferry/1, from a UDP socket of its own that
// closes with the session.
func DialQUIC(ctx context.Context, addr string, tlsConf *tls.Config) (*QUICSession, error) {
	tlsConf = tlsConf.Clone()
	tlsConf.NextProtos = []string{protocol.ALPN}
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, err
	}
	udp, err := net.ListenUDP("udp", nil)
	if err != nil {
		return nil, err
	}
	tr := &quic.Transport{Conn: udp}
	c, err := tr.Dial(ctx, ua, tlsConf, QUICConfig())
	if err != nil {
		tr.Close()
		udp.Close()
		return nil, err
	}
	context.AfterFunc(c.Context(), func() {
		tr.Close()
		udp.Close()
	})
	return &QUICSession{conn: c, bufferProblem: UDPBufferProblem(udp)}, nil
}

// BufferProblem says when the OS kept this dialed session's UDP buffers below what fast
// QUIC needs, with the fix ("" when they are fine).
func (s *QUICSession) BufferProblem() string { return s.bufferProblem }

// Conn returns the underlying QUIC connection.
func (s *QUICSession) Conn() *quic.Conn { return s.conn }

// Name implements Session.
func (s *QUICSession) Name() string { return "quic" }

// OpenStream implements Session.
func (s *QUICSession) OpenStream(ctx context.Context) (Stream, error) {
	st, err := s.conn.OpenStreamSync(ctx)
	if err != nil {
		return nil, err
	}
	return &quicStream{Stream: st, sess: s}, nil
}

// AcceptStream implements Session.
func (s *QUICSession) AcceptStream(ctx context.Context) (Stream, error) {
	st, err := s.conn.AcceptStream(ctx)
	if err != nil {
		return nil, err
	}
	return &quicStream{Stream: st, sess: s}, nil
}

// CloseWithError implements Session.
func (s *QUICSession) CloseWithError(code protocol.ErrorCode, msg string) error {
	return s.conn.CloseWithError(quic.ApplicationErrorCode(code), msg)
}

// Context implements Session.
func (s *QUICSession) Context() context.Context { return s.conn.Context() }

// LocalAddr implements Session.
func (s *QUICSession) LocalAddr() net.Addr { return s.conn.LocalAddr() }

// RemoteAddr implements Session.
func (s *QUICSession) RemoteAddr() net.Addr { return s.conn.RemoteAddr() }

type quicStream struct {
	*quic.Stream
	sess *QUICSession
}

func (s *quicStream) LocalAddr() net.Addr  { return s.sess.conn.LocalAddr() }
func (s *quicStream) RemoteAddr() net.Addr { return s.sess.conn.RemoteAddr() }

// CloseWrite sends FIN: the peer reads EOF, and this side can still read.
func (s *quicStream) CloseWrite() error { return s.Stream.Close() }

// Close ends both directions: FIN on the send side, and stop reading.
func (s *quicStream) Close() error {
	err := s.Stream.Close()
	s.Stream.CancelRead(quic.StreamErrorCode(protocol.CodeClosed))
	return err
}

func (s *quicStream) Abort(code protocol.ErrorCode) {
	s.Stream.CancelWrite(quic.StreamErrorCode(code))
	s.Stream.CancelRead(quic.StreamErrorCode(code))
}

// SessionError turns the error a session ended with into a protocol *Error when the
// peer closed it with an application error code, so callers can act on the code.
func SessionError(err error) error {
	var appErr *quic.ApplicationError
	if errors.As(err, &appErr) {
		if appErr.ErrorCode == 0 && appErr.ErrorMessage == "" {
			return err
		}
		return &protocol.Error{Code: protocol.ErrorCode(appErr.ErrorCode), Message: appErr.ErrorMessage}
	}
	return err
}

// IsALPNMismatch reports whether a dial failed because the peer does not speak ferry/1.
func IsALPNMismatch(err error) bool {
	var te *quic.TransportError
	// 0x178 is the TLS alert no_application_protocol (120) carried as a QUIC crypto error.
	if errors.As(err, &te) && te.ErrorCode == quic.TransportErrorCode(0x100+120) {
		return true
	}
	// Over TCP: a TLS server that selected no protocol of ours (ErrNotFerry), or refused
	// with that alert (crypto/tls has no type for a received alert; its text is fixed).
	return errors.Is(err, ErrNotFerry) || err != nil && strings.Contains(err.Error(), "tls: no application protocol")
}

// ErrNotFerry: the TLS server at the relay's address did not select the ferry protocol.
var ErrNotFerry = errors.New("it is not a ferry relay, or too old")

// QUICListener accepts agent sessions. It owns its UDP socket: Close ends the listener,
// every session on it, and the socket, so the address can be bound again at once.
type QUICListener struct {
	*quic.Listener
	tr   *quic.Transport
	conn *net.UDPConn
}

// ListenQUIC listens for agents on a UDP address.
//
// resetKey, when set, makes the relay answer packets of connections it does not know
// with a stateless reset that agents accept: with the same key across restarts, an agent
// whose relay was killed learns it from the first packet after the restart, instead of
// waiting out the idle timeout.
func ListenQUIC(addr string, tlsConf *tls.Config, resetKey *[32]byte) (*QUICListener, error) {
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen quic %s: %w", addr, err)
	}
	conn, err := net.ListenUDP("udp", ua)
	if err != nil {
		return nil, fmt.Errorf("listen quic %s: %w", addr, err)
	}
	tlsConf = tlsConf.Clone()
	tlsConf.NextProtos = []string{protocol.ALPN}
	tr := &quic.Transport{Conn: conn}
	if resetKey != nil {
		k := quic.StatelessResetKey(*resetKey)
		tr.StatelessResetKey = &k
	}
	// Agents open one stream (the control stream); the relay opens the data streams. A
	// few spare stream credits are plenty, and a hostile agent cannot park thousands of
	// streams the relay never accepts.
	conf := QUICConfig()
	conf.MaxIncomingStreams = MaxAgentStreams
	ln, err := tr.Listen(tlsConf, conf)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("listen quic %s: %w", addr, err)
	}
	return &QUICListener{Listener: ln, tr: tr, conn: conn}, nil
}

// BufferProblem says when the OS kept the listener's UDP buffers below what fast QUIC
// needs, with the fix ("" when they are fine).
func (l *QUICListener) BufferProblem() string { return UDPBufferProblem(l.conn) }

// Close closes the listener, its sessions and its socket.
func (l *QUICListener) Close() error {
	l.Listener.Close()
	err := l.tr.Close()
	l.conn.Close()
	return err
}
