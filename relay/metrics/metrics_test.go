package metrics

import (
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// scrape GETs the handler through a real HTTP server and returns the exposition text and
// its parsed families.
func scrape(t *testing.T, m *Metrics) (string, map[string]*dto.MetricFamily) {
	t.Helper()
	srv := httptest.NewServer(m.Handler())
	t.Cleanup(srv.Close)
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read /metrics: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics = %d, want 200; body:\n%s", resp.StatusCode, body)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Fatalf("Content-Type = %q, want text/plain", ct)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("parse exposition: %v\n%s", err, body)
	}
	return string(body), fams
}

// find returns the metric of family name whose labels are exactly labels, or nil.
func find(fams map[string]*dto.MetricFamily, name string, labels map[string]string) *dto.Metric {
	f := fams[name]
	if f == nil {
		return nil
	}
next:
	for _, m := range f.GetMetric() {
		if len(m.GetLabel()) != len(labels) {
			continue
		}
		for _, l := range m.GetLabel() {
			if labels[l.GetName()] != l.GetValue() {
				continue next
			}
		}
		return m
	}
	return nil
}

func value(m *dto.Metric) float64 {
	switch {
	case m.GetGauge() != nil:
		return m.GetGauge().GetValue()
	case m.GetCounter() != nil:
		return m.GetCounter().GetValue()
	}
	return math.NaN()
}

func TestHooksExposition(t *testing.T) {
	m := New()

	m.SessionOpened("quic")
	m.SessionOpened("quic")
	m.SessionClosed("quic")
	m.SessionOpened("tcp")
	m.SessionOpened("ws") // not a known transport: the slow path
	m.SessionClosed("ws")
	m.AuthFailure()
	m.AuthFailure()
	m.AuthFailure()

	m.TunnelBound("http")
	m.TunnelBound("http")
	m.TunnelUnbound("http")
	m.TunnelBound("tls")
	m.TunnelBound("udp")

	m.ConnOpened("tcp")(100, 200)
	m.ConnOpened("tcp") // still open
	m.ConnOpened("tls")(5, 7)
	m.ConnOpened("tls")(0, -1) // nothing counted for non-positive byte counts
	m.ConnOpened("sctp")(1, 2)

	m.HTTPRequest(200, 3*time.Millisecond)
	m.HTTPRequest(204, 7*time.Millisecond)
	m.HTTPRequest(404, 20*time.Millisecond)
	m.HTTPRequest(503, 2*time.Second)
	m.HTTPRequest(101, time.Second)
	m.HTTPRequest(302, 0)
	m.HTTPRequest(0, time.Millisecond)
	m.HTTPRequest(600, time.Millisecond)

	m.Rejected("ip_policy", "denied by cidr_deny")
	m.Rejected("ip_policy", "not in cidr_allow")
	m.Rejected("basic_auth", "bad password")
	m.Rejected("custom", "x")

	expA := time.Date(2031, 5, 6, 7, 8, 9, 0, time.UTC)
	m.SetCertificateExpiry("a.example.com", time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	m.SetCertificateExpiry("a.example.com", expA) // renewed
	m.SetCertificateExpiry("b.example.com", expA)
	m.RemoveCertificate("b.example.com")
	m.RemoveCertificate("never-set")

	text, fams := scrape(t, m)

	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"ferry_relay_sessions", map[string]string{"transport": "quic"}, 1},
		{"ferry_relay_sessions", map[string]string{"transport": "tcp"}, 1},
		{"ferry_relay_sessions", map[string]string{"transport": "ws"}, 0},
		{"ferry_relay_sessions_total", map[string]string{"transport": "quic"}, 2},
		{"ferry_relay_sessions_total", map[string]string{"transport": "tcp"}, 1},
		{"ferry_relay_sessions_total", map[string]string{"transport": "ws"}, 1},
		{"ferry_relay_auth_failures_total", map[string]string{}, 3},
		{"ferry_relay_tunnels", map[string]string{"proto": "http"}, 1},
		{"ferry_relay_tunnels", map[string]string{"proto": "tls"}, 1},
		{"ferry_relay_tunnels", map[string]string{"proto": "tcp"}, 0},
		{"ferry_relay_tunnels", map[string]string{"proto": "udp"}, 1},
		{"ferry_relay_connections", map[string]string{"proto": "tcp"}, 1},
		{"ferry_relay_connections", map[string]string{"proto": "tls"}, 0},
		{"ferry_relay_connections", map[string]string{"proto": "sctp"}, 0},
		{"ferry_relay_connections_total", map[string]string{"proto": "tcp"}, 2},
		{"ferry_relay_connections_total", map[string]string{"proto": "tls"}, 2},
		{"ferry_relay_connections_total", map[string]string{"proto": "sctp"}, 1},
		{"ferry_relay_bytes_total", map[string]string{"proto": "tcp", "direction": "in"}, 100},
		{"ferry_relay_bytes_total", map[string]string{"proto": "tcp", "direction": "out"}, 200},
		{"ferry_relay_bytes_total", map[string]string{"proto": "tls", "direction": "in"}, 5},
		{"ferry_relay_bytes_total", map[string]string{"proto": "tls", "direction": "out"}, 7},
		{"ferry_relay_bytes_total", map[string]string{"proto": "sctp", "direction": "out"}, 2},
		{"ferry_relay_module_rejections_total", map[string]string{"module": "ip_policy"}, 2},
		{"ferry_relay_module_rejections_total", map[string]string{"module": "basic_auth"}, 1},
		{"ferry_relay_module_rejections_total", map[string]string{"module": "webhook"}, 0},
		{"ferry_relay_module_rejections_total", map[string]string{"module": "custom"}, 1},
		{"ferry_relay_certificate_expiry_timestamp_seconds", map[string]string{"name": "a.example.com"}, float64(expA.Unix())},
	} {
		got := find(fams, c.name, c.labels)
		if got == nil {
			t.Errorf("%s%v missing from the exposition", c.name, c.labels)
			continue
		}
		if v := value(got); v != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, v, c.want)
		}
	}
	if got := find(fams, "ferry_relay_certificate_expiry_timestamp_seconds", map[string]string{"name": "b.example.com"}); got != nil {
		t.Errorf("removed certificate b.example.com still exported: %v", got)
	}

	// Histogram: counts, sums and a bucket boundary per class.
	for _, c := range []struct {
		class string
		count uint64
		sum   float64
		le    float64 // a bucket and how many fall at or under it
		under uint64
	}{
		{"1xx", 1, 1, 1, 1},
		{"2xx", 2, 0.010, 0.005, 1},
		{"3xx", 1, 0, 0.001, 1},
		{"4xx", 1, 0.020, 0.01, 0},
		{"5xx", 1, 2, 2.5, 1},
		{"other", 2, 0.002, 0.001, 2},
	} {
		got := find(fams, "ferry_relay_http_request_duration_seconds", map[string]string{"code_class": c.class})
		if got == nil || got.GetHistogram() == nil {
			t.Errorf("histogram code_class=%s missing", c.class)
			continue
		}
		h := got.GetHistogram()
		if h.GetSampleCount() != c.count {
			t.Errorf("code_class=%s count = %d, want %d", c.class, h.GetSampleCount(), c.count)
		}
		if math.Abs(h.GetSampleSum()-c.sum) > 1e-9 {
			t.Errorf("code_class=%s sum = %v, want %v", c.class, h.GetSampleSum(), c.sum)
		}
		if len(h.GetBucket()) != len(DurationBuckets)+1 { // and +Inf
			t.Errorf("code_class=%s has %d buckets, want %d", c.class, len(h.GetBucket()), len(DurationBuckets)+1)
		}
		found := false
		for _, b := range h.GetBucket() {
			if b.GetUpperBound() == c.le {
				found = true
				if b.GetCumulativeCount() != c.under {
					t.Errorf("code_class=%s le=%v = %d, want %d", c.class, c.le, b.GetCumulativeCount(), c.under)
				}
			}
		}
		if !found {
			t.Errorf("code_class=%s has no le=%v bucket", c.class, c.le)
		}
	}

	// The exact text a Prometheus server reads, for a few series.
	for _, line := range []string{
		`# TYPE ferry_relay_sessions gauge`,
		`# TYPE ferry_relay_sessions_total counter`,
		`# TYPE ferry_relay_http_request_duration_seconds histogram`,
		`ferry_relay_sessions{transport="quic"} 1`,
		`ferry_relay_bytes_total{direction="in",proto="tcp"} 100`,
		`ferry_relay_http_request_duration_seconds_bucket{code_class="5xx",le="+Inf"} 1`,
		`ferry_relay_certificate_expiry_timestamp_seconds{name="a.example.com"} 1.935817689e+09`,
		`ferry_relay_auth_failures_total 3`,
	} {
		if !strings.Contains(text, line+"\n") {
			t.Errorf("exposition lacks line %q", line)
		}
	}

	// Runtime and process collectors.
	for _, name := range []string{"go_goroutines", "go_memstats_alloc_bytes", "process_cpu_seconds_total", "process_open_fds"} {
		if fams[name] == nil {
			t.Errorf("%s missing from the exposition", name)
		}
	}
}

// Two relays in one process: each has its own registry, nothing is shared.
func TestIndependentRegistries(t *testing.T) {
	a, b := New(), New()
	a.AuthFailure()
	_, fa := scrape(t, a)
	_, fb := scrape(t, b)
	if v := value(find(fa, "ferry_relay_auth_failures_total", map[string]string{})); v != 1 {
		t.Errorf("relay a auth failures = %v, want 1", v)
	}
	if v := value(find(fb, "ferry_relay_auth_failures_total", map[string]string{})); v != 0 {
		t.Errorf("relay b auth failures = %v, want 0", v)
	}
}

func TestNilMetrics(t *testing.T) {
	var m *Metrics
	m.SessionOpened("quic")
	m.SessionClosed("quic")
	m.AuthFailure()
	m.TunnelBound("http")
	m.TunnelUnbound("http")
	m.ConnOpened("tcp")(1, 2)
	m.HTTPRequest(200, time.Second)
	m.Rejected("ip_policy", "x")
	m.SetCertificateExpiry("a", time.Now())
	m.RemoveCertificate("a")
	if err := m.Register(nil); err != nil {
		t.Errorf("nil Register = %v, want nil", err)
	}
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != http.StatusNotFound {
		t.Errorf("nil Handler = %d, want 404", rec.Code)
	}
}

// The hot-path hooks allocate nothing for the known label values.
func TestHotPathAllocs(t *testing.T) {
	m := New()
	if n := testing.AllocsPerRun(1000, func() { m.ConnOpened("tcp")(10, 20) }); n != 0 {
		t.Errorf("ConnOpened+close allocs = %v, want 0", n)
	}
	if n := testing.AllocsPerRun(1000, func() { m.HTTPRequest(200, time.Millisecond) }); n != 0 {
		t.Errorf("HTTPRequest allocs = %v, want 0", n)
	}
	if n := testing.AllocsPerRun(1000, func() { m.SessionOpened("quic"); m.SessionClosed("quic") }); n != 0 {
		t.Errorf("SessionOpened+Closed allocs = %v, want 0", n)
	}
	if n := testing.AllocsPerRun(1000, func() { m.TunnelBound("tls"); m.TunnelUnbound("tls") }); n != 0 {
		t.Errorf("TunnelBound+Unbound allocs = %v, want 0", n)
	}
	if n := testing.AllocsPerRun(1000, func() { m.Rejected("ip_policy", "denied") }); n != 0 {
		t.Errorf("Rejected allocs = %v, want 0", n)
	}
}

func TestConcurrentHooks(t *testing.T) {
	m := New()
	const workers, each = 8, 500
	done := make(chan struct{})
	for range workers {
		go func() {
			defer func() { done <- struct{}{} }()
			for range each {
				m.ConnOpened("http")(1, 1)
				m.HTTPRequest(200, time.Millisecond)
			}
		}()
	}
	for range workers {
		<-done
	}
	_, fams := scrape(t, m)
	if v := value(find(fams, "ferry_relay_connections_total", map[string]string{"proto": "http"})); v != workers*each {
		t.Errorf("connections_total = %v, want %d", v, workers*each)
	}
	if v := value(find(fams, "ferry_relay_bytes_total", map[string]string{"proto": "http", "direction": "in"})); v != workers*each {
		t.Errorf("bytes in = %v, want %d", v, workers*each)
	}
	if v := value(find(fams, "ferry_relay_connections", map[string]string{"proto": "http"})); v != 0 {
		t.Errorf("connections = %v, want 0", v)
	}
}

func BenchmarkConnOpenedClose(b *testing.B) {
	m := New()
	b.ReportAllocs()
	for b.Loop() {
		m.ConnOpened("tcp")(1500, 64000)
	}
}

func BenchmarkConnOpenedCloseParallel(b *testing.B) {
	m := New()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.ConnOpened("tcp")(1500, 64000)
		}
	})
}

func BenchmarkHTTPRequest(b *testing.B) {
	m := New()
	b.ReportAllocs()
	for b.Loop() {
		m.HTTPRequest(200, 12*time.Millisecond)
	}
}

func BenchmarkHTTPRequestParallel(b *testing.B) {
	m := New()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.HTTPRequest(200, 12*time.Millisecond)
		}
	})
}

func BenchmarkConnOpenedUnknownProto(b *testing.B) {
	m := New()
	b.ReportAllocs()
	for b.Loop() {
		m.ConnOpened("sctp")(1500, 64000)
	}
}
