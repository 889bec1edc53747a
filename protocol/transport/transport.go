// Package transport carries the ferry protocol: a Session of bidirectional streams
// between an agent and a relay. QUIC (quic.go) is the primary transport; the
// interfaces leave room for TCP+TLS with a stream multiplexer on networks that block UDP.
package transport

import (
	"context"
	"net"
	"time"

	"github.com/ferrytunnel/ferry/protocol"
)

// Stream is one bidirectional stream. It is a net.Conn, so it can be handed to
// net/http, crypto/tls and io.Copy directly.
//
// Close ends both directions (what net.Conn users expect); CloseWrite sends FIN and keeps
// reading (half-close); Abort resets both directions with an error code.
type Stream interface {
	net.Conn
	CloseWrite() error
	Abort(code protocol.ErrorCode)
}

// Session is an authenticated or not-yet-authenticated connection between agent and relay.
type Session interface {
	// OpenStream opens a new stream to the peer. It does not block on the peer.
	OpenStream(ctx context.Context) (Stream, error)
	// AcceptStream waits for the peer to open a stream.
	AcceptStream(ctx context.Context) (Stream, error)
	// CloseWithError ends the session, telling the peer why.
	CloseWithError(code protocol.ErrorCode, msg string) error
	// Context is done when the session has ended.
	Context() context.Context
	LocalAddr() net.Addr
	RemoteAddr() net.Addr
	// Name is the transport's name, "quic" or "tcp".
	Name() string
}

// Tuning shared by both ends of a QUIC session.
const (
	// KeepAlive is how often an idle session sends a packet so NATs keep their mapping.
	KeepAlive = 10 * time.Second
	// IdleTimeout ends a session that has heard nothing from its peer for this long.
	IdleTimeout = 30 * time.Second
	// MaxStreams is how many concurrent streams a peer may open: one per public connection.
	MaxStreams = 1 << 16
)
