// Package metrics holds the relay's Prometheus metrics: one registry per relay (no
// globals, so a test can run three relays in one process), cheap hooks for the hot paths,
// and the handler that serves them on --metrics-addr.
//
// Series (all prefixed ferry_relay_):
//
//	sessions{transport}                            gauge    agent sessions open now (transport: quic, tcp)
//	sessions_total{transport}                      counter  agent sessions opened
//	auth_failures_total                            counter  agent authentications refused
//	tunnels{proto}                                 gauge    tunnels bound now (proto: http, tcp, tls)
//	connections{proto}                             gauge    public connections open now
//	connections_total{proto}                       counter  public connections accepted
//	bytes_total{proto,direction}                   counter  bytes of closed public connections;
//	                                                        direction "in" is client→relay, "out" relay→client
//	http_request_duration_seconds{code_class}      histogram HTTP requests served at the edge (1xx..5xx)
//	module_rejections_total{module}                counter  connections or requests an edge module refused
//	certificate_expiry_timestamp_seconds{name}     gauge    NotAfter of each certificate the relay serves
//
// plus the Go runtime (go_*) and process (process_*) collectors.
//
// A nil *Metrics is valid: every hook does nothing, so the relay calls them the same way
// whether or not --metrics-addr is set.
package metrics

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

const namespace = "ferry_relay"

// Known label values, resolved to their series once in New so the hooks skip the label
// hashing and lookup. Other values still work; they take the slower path.
var (
	knownTransports = []string{"quic", "tcp"}
	knownProtos     = []string{"http", "https", "tcp", "tls"}
	knownModules    = []string{"ip_policy", "basic_auth", "mutual_tls", "webhook", "oauth", "circuit_breaker", "tls_version"}
	codeClasses     = [...]string{"1xx", "2xx", "3xx", "4xx", "5xx", "other"}
)

// DurationBuckets are the upper bounds (seconds) of the HTTP request duration histogram:
// from a millisecond (a cached or rejected request) to a minute (long polls, uploads).
var DurationBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}

// Metrics is one relay's set of metrics. Its methods are safe for concurrent use.
type Metrics struct {
	reg *prometheus.Registry

	sessions      *prometheus.GaugeVec
	sessionsTotal *prometheus.CounterVec
	authFailures  prometheus.Counter
	tunnels       *prometheus.GaugeVec
	conns         *prometheus.GaugeVec
	connsTotal    *prometheus.CounterVec
	bytes         *prometheus.CounterVec
	httpDuration  *prometheus.HistogramVec
	rejections    *prometheus.CounterVec
	certExpiry    *prometheus.GaugeVec

	// Pre-resolved series for the known label values. Written only in New, so reads need
	// no lock.
	session   map[string]sessionSeries
	tunnel    map[string]prometheus.Gauge
	conn      map[string]*connSeries
	codeClass [len(codeClasses)]prometheus.Observer
	rejection map[string]prometheus.Counter
}

type sessionSeries struct {
	open  prometheus.Gauge
	total prometheus.Counter
}

// connSeries holds one proto's connection series and the close func ConnOpened hands out,
// built once so that a connection costs no allocation.
type connSeries struct {
	open     prometheus.Gauge
	total    prometheus.Counter
	bytesIn  prometheus.Counter
	bytesOut prometheus.Counter
	closeFn  func(bytesIn, bytesOut int64)
}

func newConnSeries(m *Metrics, proto string) *connSeries {
	c := &connSeries{
		open:     m.conns.WithLabelValues(proto),
		total:    m.connsTotal.WithLabelValues(proto),
		bytesIn:  m.bytes.WithLabelValues(proto, "in"),
		bytesOut: m.bytes.WithLabelValues(proto, "out"),
	}
	c.closeFn = func(in, out int64) {
		c.open.Dec()
		if in > 0 {
			c.bytesIn.Add(float64(in))
		}
		if out > 0 {
			c.bytesOut.Add(float64(out))
		}
	}
	return c
}

// New returns a relay's metrics on a registry of their own, with the Go runtime and
// process collectors.
func New() *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	m.sessions = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: namespace, Name: "sessions",
		Help: "Agent sessions open now, by transport (quic, or tcp for TCP+TLS).",
	}, []string{"transport"})
	m.sessionsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "sessions_total",
		Help: "Agent sessions opened since the relay started, by transport.",
	}, []string{"transport"})
	m.authFailures = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: namespace, Name: "auth_failures_total",
		Help: "Agent authentications refused (bad or unknown authtoken).",
	})
	m.tunnels = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: namespace, Name: "tunnels",
		Help: "Tunnels bound now, by protocol.",
	}, []string{"proto"})
	m.conns = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: namespace, Name: "connections",
		Help: "Public connections open now, by tunnel protocol.",
	}, []string{"proto"})
	m.connsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "connections_total",
		Help: "Public connections accepted since the relay started, by tunnel protocol.",
	}, []string{"proto"})
	m.bytes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "bytes_total",
		Help: "Bytes carried by closed public connections; direction in is client to relay, out is relay to client.",
	}, []string{"proto", "direction"})
	m.httpDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: namespace, Name: "http_request_duration_seconds",
		Help:    "Time to serve an HTTP request at the edge, from its headers to the end of the response, by status class.",
		Buckets: DurationBuckets,
	}, []string{"code_class"})
	m.rejections = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "module_rejections_total",
		Help: "Connections or requests refused by an edge module.",
	}, []string{"module"})
	m.certExpiry = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: namespace, Name: "certificate_expiry_timestamp_seconds",
		Help: "NotAfter of each certificate the relay serves, as a Unix time.",
	}, []string{"name"})

	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.sessions, m.sessionsTotal, m.authFailures, m.tunnels, m.conns, m.connsTotal,
		m.bytes, m.httpDuration, m.rejections, m.certExpiry,
	)

	m.session = make(map[string]sessionSeries, len(knownTransports))
	for _, t := range knownTransports {
		m.session[t] = sessionSeries{m.sessions.WithLabelValues(t), m.sessionsTotal.WithLabelValues(t)}
	}
	m.tunnel = make(map[string]prometheus.Gauge, len(knownProtos))
	m.conn = make(map[string]*connSeries, len(knownProtos))
	for _, p := range knownProtos {
		m.tunnel[p] = m.tunnels.WithLabelValues(p)
		m.conn[p] = newConnSeries(m, p)
	}
	for i, c := range codeClasses {
		m.codeClass[i] = m.httpDuration.WithLabelValues(c)
	}
	m.rejection = make(map[string]prometheus.Counter, len(knownModules))
	for _, mod := range knownModules {
		m.rejection[mod] = m.rejections.WithLabelValues(mod)
	}
	return m
}

// Handler serves the registry in the Prometheus exposition formats (text, and
// OpenMetrics or protobuf when the scraper asks for them).
func (m *Metrics) Handler() http.Handler {
	if m == nil {
		return http.NotFoundHandler()
	}
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorHandling:     promhttp.ContinueOnError,
		Registry:          m.reg, // promhttp_metric_handler_errors_total
		EnableOpenMetrics: true,
	})
}

// Register adds a collector to the relay's registry (for example one reading the event
// bus's delivery stats at scrape time).
func (m *Metrics) Register(c prometheus.Collector) error {
	if m == nil {
		return nil
	}
	return m.reg.Register(c)
}

func (m *Metrics) sessionSeries(transport string) sessionSeries {
	if s, ok := m.session[transport]; ok {
		return s
	}
	return sessionSeries{m.sessions.WithLabelValues(transport), m.sessionsTotal.WithLabelValues(transport)}
}

// SessionOpened counts an agent session that passed authentication; transport is "quic"
// or "tcp". Pair it with SessionClosed.
func (m *Metrics) SessionOpened(transport string) {
	if m == nil {
		return
	}
	s := m.sessionSeries(transport)
	s.open.Inc()
	s.total.Inc()
}

// SessionClosed counts the end of a session SessionOpened counted.
func (m *Metrics) SessionClosed(transport string) {
	if m == nil {
		return
	}
	if s, ok := m.session[transport]; ok {
		s.open.Dec()
		return
	}
	m.sessions.WithLabelValues(transport).Dec()
}

// AuthFailure counts an agent whose authtoken was refused.
func (m *Metrics) AuthFailure() {
	if m == nil {
		return
	}
	m.authFailures.Inc()
}

func (m *Metrics) tunnelGauge(proto string) prometheus.Gauge {
	if g, ok := m.tunnel[proto]; ok {
		return g
	}
	return m.tunnels.WithLabelValues(proto)
}

// TunnelBound counts a tunnel bound (proto: http, tcp, tls). Pair it with TunnelUnbound.
func (m *Metrics) TunnelBound(proto string) {
	if m == nil {
		return
	}
	m.tunnelGauge(proto).Inc()
}

// TunnelUnbound counts the release of a tunnel TunnelBound counted.
func (m *Metrics) TunnelUnbound(proto string) {
	if m == nil {
		return
	}
	m.tunnelGauge(proto).Dec()
}

// ConnOpened counts a public connection accepted for a tunnel of proto and returns the
// func to call, exactly once, when it closes, with the bytes read from the client (in)
// and written to it (out). For the known protos it allocates nothing: the returned func
// is shared.
func (m *Metrics) ConnOpened(proto string) func(bytesIn, bytesOut int64) {
	if m == nil {
		return noop
	}
	c, ok := m.conn[proto]
	if !ok {
		c = newConnSeries(m, proto)
	}
	c.open.Inc()
	c.total.Inc()
	return c.closeFn
}

func noop(int64, int64) {}

// HTTPRequest records an HTTP request served at the edge: its status code (its class is
// the label; codes outside 100..599 count as "other") and how long it took.
func (m *Metrics) HTTPRequest(code int, d time.Duration) {
	if m == nil {
		return
	}
	i := code/100 - 1
	if code < 100 || code > 599 {
		i = len(codeClasses) - 1
	}
	m.codeClass[i].Observe(d.Seconds())
}

// Rejected counts a connection or request refused by an edge module (ip_policy,
// basic_auth, mutual_tls, webhook, oauth, circuit_breaker, tls_version). The reason is
// for the caller's log line, not a label: free-form reasons would make unbounded series.
func (m *Metrics) Rejected(module, reason string) {
	if m == nil {
		return
	}
	_ = reason
	if c, ok := m.rejection[module]; ok {
		c.Inc()
		return
	}
	m.rejections.WithLabelValues(module).Inc()
}

// SetCertificateExpiry records when the certificate for name (a domain, or a
// certificate id) expires; call it again after a renewal.
func (m *Metrics) SetCertificateExpiry(name string, notAfter time.Time) {
	if m == nil {
		return
	}
	m.certExpiry.WithLabelValues(name).Set(float64(notAfter.Unix()))
}

// RemoveCertificate drops the series of a certificate the relay no longer serves.
func (m *Metrics) RemoveCertificate(name string) {
	if m == nil {
		return
	}
	m.certExpiry.DeleteLabelValues(name)
}
