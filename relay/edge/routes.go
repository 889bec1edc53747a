package edge

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"

	"github.com/ferrytunnel/ferry/protocol"
	"github.com/ferrytunnel/ferry/protocol/transport"
	"github.com/ferrytunnel/ferry/relay/module"
)

// Routes are the edges configured through the management API; the public side consults
// them before the names that tunnels bound themselves.
type Routes interface {
	// HTTPS returns the handler of the HTTPS edge serving host, or nil.
	HTTPS(host string) http.Handler
	// TLS returns the backend of the TLS edge serving host, or nil.
	TLS(host string) *Backend
}

// ErrNoTunnel says no online tunnel serves an edge's backend.
var ErrNoTunnel = errors.New("no online tunnel serves this edge's backend")

// Backend is where an edge sends a connection.
type Backend struct {
	// Name is the public name or address, for messages; ID the edge's id and AccountID
	// its owner (for events).
	Name, ID, AccountID string
	// TerminateAt is "edge" when the relay terminates TLS (TLS edges), else the bytes pass through.
	TerminateAt string
	IPPolicy    *module.IPPolicy
	// Dial opens a stream to an agent serving the backend.
	Dial func(ctx context.Context, proto protocol.StreamProto, clientAddr, host string) (transport.Stream, error)
	Log  *slog.Logger
}

// ServeTCPEdge accepts public connections for a TCP edge until ln is closed. backend is
// called for each connection, so an edge changed through the API applies at once.
func (e *Edge) ServeTCPEdge(ln net.Listener, backend func() *Backend) error {
	return e.acceptLoop(e.limit(ln), func(c net.Conn) {
		b := backend()
		if b == nil {
			c.Close()
			return
		}
		e.serveBackend(c, b, protocol.StreamTCP, "")
	})
}

// serveBackend checks the client against b's IP policy and joins c to a stream.
func (e *Edge) serveBackend(c net.Conn, b *Backend, proto protocol.StreamProto, host string) {
	remote := c.RemoteAddr().String()
	if !b.IPPolicy.Allows(remote) {
		b.Log.Info("refused connection", "remote", remote, "reason", "client address not allowed by the edge's IP restriction")
		e.cfg.Observer.Rejected("ip_policy")
		c.Close()
		return
	}
	st, err := b.Dial(context.Background(), proto, remote, host)
	if err != nil {
		b.Log.Warn("no backend for connection", "remote", remote, "err", err)
		c.Close()
		return
	}
	kind := "tcp"
	if proto != protocol.StreamTCP {
		kind = "tls"
	}
	done := e.cfg.Observer.Conn(kind, b.AccountID, b.ID, b.Name, remote, host)
	in, out := transport.Join(c, st)
	done(in, out)
	b.Log.Debug("connection closed", "remote", remote, "bytes_in", in, "bytes_out", out)
}
