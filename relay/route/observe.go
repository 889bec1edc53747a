package route

import (
	"net"
	"net/http"
	"time"

	"github.com/ferrytunnel/ferry/relay/events"
	"github.com/ferrytunnel/ferry/relay/metrics"
)

// Observer reports what happens to tunnels and connections: Prometheus metrics and
// events for the accounts' subscriptions. Both may be nil; every method is cheap and
// never blocks (the event bus drops rather than waits).
type Observer struct {
	Metrics *metrics.Metrics
	Events  *events.Bus
}

// wants reports whether an event of typ for account has a subscriber (events are only
// built then: per request and per connection, most have none).
func (o *Observer) wants(account, typ string) bool {
	return o != nil && o.Events.Wants(account, typ)
}

// publish sends an event if anyone subscribed to it.
func (o *Observer) publish(typ, account string, fields func() map[string]any) {
	if o.wants(account, typ) {
		o.Events.Publish(events.Event{Type: typ, AccountID: account, Fields: fields()})
	}
}

func (o *Observer) metrics() *metrics.Metrics {
	if o == nil {
		return nil
	}
	return o.Metrics
}

// TunnelStarted and TunnelStopped report a tunnel coming online and going away.
func (o *Observer) TunnelStarted(t *Tunnel) {
	o.metrics().TunnelBound(t.Proto)
	o.publish(events.TypeTunnelStarted, t.AccountID, func() map[string]any { return tunnelFields(t) })
}

// TunnelStopped reports a tunnel going away.
func (o *Observer) TunnelStopped(t *Tunnel) {
	o.metrics().TunnelUnbound(t.Proto)
	o.publish(events.TypeTunnelStopped, t.AccountID, func() map[string]any { return tunnelFields(t) })
}

func tunnelFields(t *Tunnel) map[string]any {
	f := map[string]any{events.FieldTunnelID: t.PublicID, events.FieldName: t.Name, events.FieldProto: t.Proto}
	if len(t.URLs) > 0 {
		f[events.FieldURL] = t.URLs[0]
	}
	return f
}

// Conn starts observing a public connection of a tcp or tls tunnel (or edge); the
// returned func reports it closed with its byte counts.
func (o *Observer) Conn(proto, account, tunnelID, url, remote, serverName string) func(in, out int64) {
	done := o.metrics().ConnOpened(proto)
	start := time.Now()
	return func(in, out int64) {
		if done != nil {
			done(in, out)
		}
		typ := events.TypeTCPConnectionClosed
		if proto == "tls" {
			typ = events.TypeTLSConnectionClosed
		}
		o.publish(typ, account, func() map[string]any {
			f := map[string]any{events.FieldTunnelID: tunnelID, events.FieldURL: url, events.FieldClientIP: HostOnly(remote),
				events.FieldBytesIn: in, events.FieldBytesOut: out, events.FieldDurationMS: float64(time.Since(start).Microseconds()) / 1000}
			if proto == "tls" {
				f[events.FieldServerName] = serverName
			}
			return f
		})
	}
}

// PublicConn starts counting a public HTTP or HTTPS connection (metrics only: HTTP has
// events per request); the returned func reports it closed with its byte counts. It is
// nil when nothing is counted.
func (o *Observer) PublicConn(proto string) func(in, out int64) {
	if o == nil || o.Metrics == nil {
		return nil
	}
	return o.Metrics.ConnOpened(proto)
}

// Rejected counts a module's refusal.
func (o *Observer) Rejected(module string) { o.metrics().Rejected(module, "") }

// HTTP wraps an http tunnel's or route's handler to report each request.
// url is asked per request (a tunnel's URLs are set after its handler is built).
func (o *Observer) HTTP(account, tunnelID string, url func() string, next http.Handler) http.Handler {
	if o == nil || (o.Metrics == nil && o.Events == nil) {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &countingWriter{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		if rec.status == 0 {
			rec.status = http.StatusOK
		}
		HTTPDone(o, &HTTPRequest{Account: account, TunnelID: tunnelID, URL: url(), Remote: r.RemoteAddr, Status: rec.status,
			Duration: time.Since(start), BytesIn: max(r.ContentLength, 0), BytesOut: rec.bytes}, r.Host, r.Method, r.URL.Path)
	})
}

// HTTPRequest is a request the edge served, for HTTPDone.
type HTTPRequest struct {
	Account, TunnelID, URL, Remote string
	Status                         int
	Duration                       time.Duration
	BytesIn, BytesOut              int64
}

// HTTPDone reports a request the edge served: its metrics, and an event if anyone
// subscribed. host, method and path are net/http's strings or the lean path's bytes
// (which may point into a buffer reused afterwards): copied only for an event, so
// neither path allocates for a request nobody subscribed to.
func HTTPDone[T ~string | ~[]byte](o *Observer, r *HTTPRequest, host, method, path T) {
	if o == nil {
		return
	}
	o.Metrics.HTTPRequest(r.Status, r.Duration)
	if !o.wants(r.Account, events.TypeHTTPRequestComplete) {
		return
	}
	o.Events.Publish(events.Event{Type: events.TypeHTTPRequestComplete, AccountID: r.Account, Fields: map[string]any{
		events.FieldTunnelID: r.TunnelID, events.FieldURL: r.URL, events.FieldHost: string(host), events.FieldMethod: string(method),
		events.FieldPath: string(path), events.FieldStatus: r.Status, events.FieldDurationMS: float64(r.Duration.Microseconds()) / 1000,
		events.FieldBytesIn: r.BytesIn, events.FieldBytesOut: r.BytesOut, events.FieldClientIP: HostOnly(r.Remote)}})
}

// countingWriter records the status and body bytes of an answer.
type countingWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (c *countingWriter) WriteHeader(code int) {
	if c.status == 0 {
		c.status = code
	}
	c.ResponseWriter.WriteHeader(code)
}

func (c *countingWriter) Write(p []byte) (int, error) {
	if c.status == 0 {
		c.status = http.StatusOK
	}
	n, err := c.ResponseWriter.Write(p)
	c.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach Flush and Hijack.
func (c *countingWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }

// HostOnly returns the host of a HOST:PORT address (the address itself if it has no port).
func HostOnly(addr string) string {
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}
	return addr
}
