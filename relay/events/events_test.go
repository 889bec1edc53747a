package events

import (
	"bufio"
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// receiver is a webhook endpoint that verifies each request's signature by hand, exactly
// as the package doc tells a receiver to, and answers with scripted status codes.
type receiver struct {
	t      *testing.T
	srv    *httptest.Server
	secret string

	mu       sync.Mutex
	codes    []int // answers, in order; then 200
	requests int
	records  []Record
	bodies   [][]byte
	batch    chan int // size of each accepted batch
}

func newReceiver(t *testing.T, secret string, codes ...int) *receiver {
	rc := &receiver{t: t, secret: secret, codes: codes, batch: make(chan int, 1000)}
	rc.srv = httptest.NewServer(http.HandlerFunc(rc.serve))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		rc.t.Errorf("receiver: read body: %v", err)
		return
	}
	if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
		rc.t.Errorf("receiver: %s with Content-Type %q, want POST application/json", r.Method, r.Header.Get("Content-Type"))
	}
	// 1. Split the header on "," and each part on the first "=".
	var ts, v1 string
	for _, part := range strings.Split(r.Header.Get("Ferry-Signature"), ",") {
		k, v, _ := strings.Cut(part, "=")
		switch k {
		case "t":
			ts = v
		case "v1":
			v1 = v
		}
	}
	// 2. hex(HMAC-SHA256(secret, t + "." + body)) over the raw body.
	m := hmac.New(sha256.New, []byte(rc.secret))
	m.Write([]byte(ts + "." + string(body)))
	want := hex.EncodeToString(m.Sum(nil))
	// 3. Constant-time compare; 4. t close to our clock.
	sec, err := strconv.ParseInt(ts, 10, 64)
	if !hmac.Equal([]byte(v1), []byte(want)) || err != nil || time.Since(time.Unix(sec, 0)).Abs() > 5*time.Minute {
		rc.t.Errorf("receiver: bad signature %q for body %s", r.Header.Get("Ferry-Signature"), body)
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	// The helper for Go receivers agrees.
	if err := VerifySignature([]byte(rc.secret), r.Header.Get("Ferry-Signature"), body, time.Now(), 0); err != nil {
		rc.t.Errorf("receiver: VerifySignature = %v, want nil", err)
	}
	var recs []Record
	if err := json.Unmarshal(body, &recs); err != nil {
		rc.t.Errorf("receiver: body is not a JSON array of records: %v\n%s", err, body)
	}

	rc.mu.Lock()
	rc.requests++
	code := http.StatusOK
	if len(rc.codes) > 0 {
		code, rc.codes = rc.codes[0], rc.codes[1:]
	}
	rc.bodies = append(rc.bodies, body)
	if code/100 == 2 {
		rc.records = append(rc.records, recs...)
	}
	rc.mu.Unlock()
	if code == http.StatusFound {
		w.Header().Set("Location", rc.srv.URL+"/elsewhere")
	}
	w.WriteHeader(code)
	if code/100 == 2 {
		select {
		case rc.batch <- len(recs):
		default: // nobody is counting batches
		}
	}
}

func (rc *receiver) got() (requests int, records []Record, bodies [][]byte) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.requests, slices.Clone(rc.records), slices.Clone(rc.bodies)
}

func (rc *receiver) dest() Destination {
	return Destination{Kind: KindWebhook, URL: rc.srv.URL + "/hook", Secret: rc.secret}
}

// newBus starts a bus with fast retries and closes it when the test ends.
func newBus(t *testing.T, cfg Config) *Bus {
	t.Helper()
	if cfg.Backoff == nil {
		cfg.Backoff = func(int) time.Duration { return time.Millisecond }
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	b := NewBus(cfg)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = b.Close(ctx)
	})
	return b
}

func closeBus(t *testing.T, b *Bus) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := b.Close(ctx); err != nil {
		t.Fatalf("Close = %v, want nil", err)
	}
}

func httpEvent(account string, status int) Event {
	return Event{Type: TypeHTTPRequestComplete, AccountID: account, Fields: map[string]any{
		FieldTunnelID: "tn_1", FieldURL: "https://app.example.com", FieldHost: "app.example.com",
		FieldMethod: "GET", FieldPath: "/hello", FieldStatus: status, FieldDurationMS: 12.5,
		FieldBytesIn: 120, FieldBytesOut: 4096, FieldClientIP: "203.0.113.7",
	}}
}

// lockedBuffer collects log output from the bus's goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func TestPublishNeverBlocks(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case entered <- struct{}{}:
		default:
		}
		select { // never answers
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(hang.Close)
	t.Cleanup(func() { close(release) })

	var logs lockedBuffer
	b := newBus(t, Config{Log: slog.New(slog.NewTextHandler(&logs, nil)), FlushInterval: time.Millisecond})
	b.SetSubscriptions([]Subscription{{
		ID: "esb_hang", AccountID: "acc_a", Types: []string{TypeHTTPRequestComplete},
		Destinations: []Destination{{Kind: KindWebhook, URL: hang.URL, Secret: "s3cret"}},
	}})

	const n = 100_000
	ev := httpEvent("acc_a", 200)
	start := time.Now()
	for range n {
		b.Publish(ev)
	}
	elapsed := time.Since(start)
	t.Logf("published %d events to a hanging webhook in %v (%v/event)", n, elapsed, elapsed/n)
	if elapsed > 500*time.Millisecond {
		t.Errorf("publishing %d events took %v, want well under a second", n, elapsed)
	}
	<-entered // the destination is stuck in its first request

	st := b.Stats()["esb_hang/destinations[0]"]
	if st.Delivered != 0 || st.Failed != 0 {
		t.Errorf("stats = %+v, want nothing delivered or failed", st)
	}
	if st.Dropped+uint64(st.Queued) != n {
		t.Errorf("dropped %d + queued %d = %d, want %d", st.Dropped, st.Queued, st.Dropped+uint64(st.Queued), n)
	}
	if min := uint64(n - 10000 - 100); st.Dropped < min {
		t.Errorf("dropped = %d, want at least %d (queue 10000, batch 100)", st.Dropped, min)
	}
	if got := b.Dropped(); got != st.Dropped {
		t.Errorf("Dropped() = %d, want %d", got, st.Dropped)
	}
	if c := strings.Count(logs.String(), "queue full"); c != 1 {
		t.Errorf("queue-full logged %d times, want once a minute:\n%s", c, logs.String())
	}

	// Close gives up when its context ends, cancels the stuck request and returns only
	// when the goroutines are gone (TestMain checks for leaks).
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if err := b.Close(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Close = %v, want context.DeadlineExceeded", err)
	}
	st = b.Stats()["esb_hang/destinations[0]"]
	if st.Dropped != n || st.Queued != 0 {
		t.Errorf("after Close: dropped %d queued %d, want %d and 0", st.Dropped, st.Queued, n)
	}
	b.Publish(ev) // after Close: ignored, no panic
}

func TestWebhookSignedDelivery(t *testing.T) {
	rc := newReceiver(t, "whsec_0123456789")
	b := newBus(t, Config{FlushInterval: time.Hour})
	b.SetSubscriptions([]Subscription{{
		ID: "esb_1", AccountID: "acc_a",
		Types:        []string{TypeTunnelStarted, TypeHTTPRequestComplete},
		Destinations: []Destination{rc.dest()},
	}})
	when := time.Date(2026, 5, 6, 7, 8, 9, 123e6, time.UTC)
	b.Publish(Event{Type: TypeTunnelStarted, Time: when, AccountID: "acc_a", Fields: map[string]any{
		FieldTunnelID: "tn_1", FieldName: "web", FieldURL: "https://app.example.com", FieldProto: "http",
	}})
	b.Publish(httpEvent("acc_a", 404))
	b.Publish(Event{Type: TypeTCPConnectionClosed, AccountID: "acc_a", Fields: map[string]any{FieldBytesIn: 1}}) // type not selected
	b.Publish(httpEvent("acc_b", 200))                                                                           // other account
	closeBus(t, b)

	requests, recs, _ := rc.got()
	if requests != 1 {
		t.Errorf("requests = %d, want 1 (one batch)", requests)
	}
	if len(recs) != 2 {
		t.Fatalf("got %d records, want 2: %+v", len(recs), recs)
	}
	r0, r1 := recs[0], recs[1]
	if r0.EventType != TypeTunnelStarted || r1.EventType != TypeHTTPRequestComplete {
		t.Errorf("types = %s, %s; want %s, %s", r0.EventType, r1.EventType, TypeTunnelStarted, TypeHTTPRequestComplete)
	}
	if !r0.EventTimestamp.Equal(when) {
		t.Errorf("event_timestamp = %v, want %v", r0.EventTimestamp, when)
	}
	if r1.EventTimestamp.IsZero() {
		t.Error("event published without a time has no event_timestamp")
	}
	for _, r := range recs {
		if r.SubscriptionID != "esb_1" || r.AccountID != "acc_a" || !strings.HasPrefix(r.ID, "ev_") {
			t.Errorf("record %+v: want subscription esb_1, account acc_a, id ev_...", r)
		}
	}
	if r0.ID == r1.ID {
		t.Errorf("two events share id %s", r0.ID)
	}
	wantTunnel := map[string]any{"tunnel_id": "tn_1", "name": "web", "url": "https://app.example.com", "proto": "http"}
	if fmt.Sprint(r0.Object) != fmt.Sprint(wantTunnel) {
		t.Errorf("tunnel_started object = %v, want %v", r0.Object, wantTunnel)
	}
	// JSON numbers come back as float64.
	wantHTTP := map[string]any{"tunnel_id": "tn_1", "url": "https://app.example.com", "host": "app.example.com",
		"method": "GET", "path": "/hello", "status": 404.0, "duration_ms": 12.5, "bytes_in": 120.0,
		"bytes_out": 4096.0, "client_ip": "203.0.113.7"}
	if fmt.Sprint(r1.Object) != fmt.Sprint(wantHTTP) {
		t.Errorf("http_request_complete object = %v, want %v", r1.Object, wantHTTP)
	}
	st := b.Stats()["esb_1/destinations[0]"]
	if st.Delivered != 2 || st.Queued != 0 || st.Dropped != 0 || st.Failed != 0 {
		t.Errorf("stats = %+v, want 2 delivered and nothing else", st)
	}
}

func TestVerifySignature(t *testing.T) {
	secret := []byte("whsec_abc")
	body := []byte(`[{"id":"ev_1"}]`)
	at := time.Unix(1778051289, 0)
	h := Sign(secret, at, body)
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("1778051289." + string(body)))
	if want := "t=1778051289,v1=" + hex.EncodeToString(m.Sum(nil)); h != want {
		t.Fatalf("Sign = %q, want %q", h, want)
	}
	for _, c := range []struct {
		name   string
		secret []byte
		header string
		body   []byte
		now    time.Time
		want   error
	}{
		{"valid", secret, h, body, at.Add(time.Minute), nil},
		{"rotation: second v1 matches", secret, "t=1778051289,v1=00ff," + strings.TrimPrefix(h, "t=1778051289,"), body, at, nil},
		{"body changed", secret, h, []byte(`[{"id":"ev_2"}]`), at, ErrSignatureMismatch},
		{"wrong secret", []byte("other"), h, body, at, ErrSignatureMismatch},
		{"replayed late", secret, h, body, at.Add(6 * time.Minute), ErrSignatureExpired},
		{"from the future", secret, h, body, at.Add(-6 * time.Minute), ErrSignatureExpired},
		{"no header", secret, "", body, at, ErrSignatureMissing},
		{"no v1", secret, "t=1778051289", body, at, ErrSignatureMissing},
		{"bad t", secret, "t=x,v1=00", body, at, ErrSignatureMissing},
	} {
		if err := VerifySignature(c.secret, c.header, c.body, c.now, 0); !errors.Is(err, c.want) {
			t.Errorf("%s: VerifySignature = %v, want %v", c.name, err, c.want)
		}
	}
}

func TestWebhookRetries(t *testing.T) {
	for _, c := range []struct {
		name       string
		codes      []int
		maxRetries int
		requests   int
		delivered  uint64
		failed     uint64
		retries    uint64
	}{
		{"two 500s then success", []int{500, 500}, 0, 3, 3, 0, 2},
		{"400 is not retried", []int{400}, 0, 1, 0, 3, 0},
		{"404 is not retried", []int{404}, 0, 1, 0, 3, 0},
		{"429 is retried", []int{429}, 0, 2, 3, 0, 1},
		{"gives up after MaxRetries", []int{503, 503, 503, 503}, 2, 3, 0, 3, 2},
		{"redirect is not followed", []int{302}, 0, 1, 0, 3, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			rc := newReceiver(t, "whsec_retry", c.codes...)
			b := newBus(t, Config{FlushInterval: time.Hour, MaxRetries: c.maxRetries})
			b.SetSubscriptions([]Subscription{{
				ID: "esb_r", AccountID: "acc_a", Types: []string{TypeHTTPRequestComplete},
				Destinations: []Destination{rc.dest()},
			}})
			for i := range 3 {
				b.Publish(httpEvent("acc_a", 200+i))
			}
			closeBus(t, b)

			requests, recs, bodies := rc.got()
			if requests != c.requests {
				t.Errorf("requests = %d, want %d", requests, c.requests)
			}
			if uint64(len(recs)) != c.delivered {
				t.Errorf("receiver accepted %d records, want %d", len(recs), c.delivered)
			}
			for i := 1; i < len(bodies); i++ {
				if !bytes.Equal(bodies[i], bodies[0]) {
					t.Errorf("retry %d body differs from the first attempt:\n%s\n%s", i, bodies[i], bodies[0])
				}
			}
			st := b.Stats()["esb_r/destinations[0]"]
			want := DestinationStats{SubscriptionID: "esb_r", AccountID: "acc_a", Kind: KindWebhook,
				Target: rc.srv.URL + "/hook", Delivered: c.delivered, Failed: c.failed, Retries: c.retries}
			if st != want {
				t.Errorf("stats = %+v, want %+v", st, want)
			}
		})
	}
}

func TestRetryAfterHonoured(t *testing.T) {
	var mu sync.Mutex
	var times []time.Time
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		times = append(times, time.Now())
		first := len(times) == 1
		mu.Unlock()
		if first {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
		}
	}))
	t.Cleanup(srv.Close)
	b := newBus(t, Config{FlushInterval: time.Hour})
	b.SetSubscriptions([]Subscription{{ID: "esb", AccountID: "a", Types: []string{TypeTunnelStarted},
		Destinations: []Destination{{Kind: KindWebhook, URL: srv.URL, Secret: "x"}}}})
	b.Publish(Event{Type: TypeTunnelStarted, AccountID: "a"})
	closeBus(t, b)
	mu.Lock()
	defer mu.Unlock()
	if len(times) != 2 {
		t.Fatalf("requests = %d, want 2", len(times))
	}
	if gap := times[1].Sub(times[0]); gap < 900*time.Millisecond {
		t.Errorf("retry came %v after a Retry-After: 1, want about a second", gap)
	}
}

func readLines(t *testing.T, path string) []Record {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	defer f.Close()
	var out []Record
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var r Record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("%s: line %q is not a JSON record: %v", path, sc.Text(), err)
		}
		out = append(out, r)
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	return out
}

func TestFileDestination(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "events.jsonl")
	settled := make(chan struct{}, 100)
	b := newBus(t, Config{
		FlushInterval: time.Millisecond,
		AllowFile: func(p string) error {
			if filepath.Dir(p) != dir {
				return errors.New("outside the events directory")
			}
			return nil
		},
	})
	b.afterBatch = func(string) { settled <- struct{}{} }
	b.SetSubscriptions([]Subscription{{
		ID: "esb_f", AccountID: "acc_a", Types: []string{TypeHTTPRequestComplete, TypeTCPConnectionClosed},
		Fields:       []string{FieldMethod, FieldStatus, FieldBytesIn},
		Destinations: []Destination{{Kind: KindFile, Path: path}},
	}})
	// waitDelivered waits until the destination has settled n events in all.
	waitDelivered := func(n uint64) {
		t.Helper()
		timeout := time.After(10 * time.Second)
		for {
			if st := b.Stats()["esb_f/destinations[0]"]; st.Delivered >= n {
				if st.Delivered != n || st.Failed != 0 {
					t.Fatalf("stats = %+v, want %d delivered", st, n)
				}
				return
			}
			select {
			case <-settled:
			case <-timeout:
				t.Fatalf("waiting for %d delivered: stats %+v", n, b.Stats())
			}
		}
	}

	for i := range 3 {
		b.Publish(httpEvent("acc_a", 200+i))
	}
	waitDelivered(3)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("file mode = %v, want 0600", fi.Mode().Perm())
	}
	recs := readLines(t, path)
	if len(recs) != 3 {
		t.Fatalf("%d lines, want 3", len(recs))
	}
	for i, r := range recs {
		want := fmt.Sprint(map[string]any{"method": "GET", "status": float64(200 + i), "bytes_in": 120.0})
		if got := fmt.Sprint(r.Object); got != want {
			t.Errorf("line %d object = %s, want only the selected fields %s", i, got, want)
		}
		if r.EventType != TypeHTTPRequestComplete || r.SubscriptionID != "esb_f" {
			t.Errorf("line %d = %+v", i, r)
		}
	}

	// A log rotator renames the file: the next events go to a new file at the path.
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	b.Publish(Event{Type: TypeTCPConnectionClosed, AccountID: "acc_a", Fields: map[string]any{FieldBytesIn: 7, FieldClientIP: "192.0.2.1"}})
	b.Publish(httpEvent("acc_a", 500))
	waitDelivered(5)
	if got := len(readLines(t, path+".1")); got != 3 {
		t.Errorf("rotated file has %d lines, want 3", got)
	}
	recs = readLines(t, path)
	if len(recs) != 2 || fmt.Sprint(recs[0].Object) != fmt.Sprint(map[string]any{"bytes_in": 7.0}) {
		t.Errorf("new file = %+v, want 2 lines, the first with only bytes_in", recs)
	}

	// Removed: recreated.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	b.Publish(httpEvent("acc_a", 201))
	closeBus(t, b)
	if recs := readLines(t, path); len(recs) != 1 {
		t.Errorf("recreated file has %d lines, want 1", len(recs))
	}
}

func TestFileDestinationFailure(t *testing.T) {
	dir := t.TempDir()
	b := newBus(t, Config{FlushInterval: time.Hour, MaxRetries: 2, AllowFile: func(string) error { return nil }})
	b.SetSubscriptions([]Subscription{{
		ID: "esb", AccountID: "a", Types: []string{TypeTunnelStarted},
		Destinations: []Destination{{Kind: KindFile, Path: filepath.Join(dir, "missing", "events.jsonl")}},
	}})
	b.Publish(Event{Type: TypeTunnelStarted, AccountID: "a"})
	closeBus(t, b)
	if st := b.Stats()["esb/destinations[0]"]; st.Failed != 1 || st.Retries != 2 {
		t.Errorf("stats = %+v, want 1 failed after 2 retries", st)
	}
}

func TestAccountIsolation(t *testing.T) {
	ra, rb := newReceiver(t, "secret-a"), newReceiver(t, "secret-b")
	b := newBus(t, Config{FlushInterval: time.Hour})
	b.SetSubscriptions([]Subscription{
		{ID: "esb_a", AccountID: "acc_a", Types: ValidTypes(), Destinations: []Destination{ra.dest()}},
		{ID: "esb_b", AccountID: "acc_b", Types: ValidTypes(), Destinations: []Destination{rb.dest()}},
	})
	for range 3 {
		b.Publish(httpEvent("acc_a", 200))
	}
	for range 2 {
		b.Publish(httpEvent("acc_b", 200))
	}
	b.Publish(httpEvent("acc_c", 200))
	b.Publish(httpEvent("", 200))
	closeBus(t, b)

	for _, c := range []struct {
		rc      *receiver
		account string
		n       int
	}{{ra, "acc_a", 3}, {rb, "acc_b", 2}} {
		_, recs, _ := c.rc.got()
		if len(recs) != c.n {
			t.Errorf("%s's receiver got %d events, want %d", c.account, len(recs), c.n)
		}
		for _, r := range recs {
			if r.AccountID != c.account {
				t.Errorf("%s's receiver got an event of %s", c.account, r.AccountID)
			}
		}
	}
}

func TestCloseFlushes(t *testing.T) {
	rc := newReceiver(t, "s")
	b := newBus(t, Config{FlushInterval: time.Hour, BatchSize: 4})
	b.SetSubscriptions([]Subscription{{ID: "esb", AccountID: "a", Types: []string{TypeHTTPRequestComplete}, Destinations: []Destination{rc.dest()}}})
	for range 10 {
		b.Publish(httpEvent("a", 200))
	}
	closeBus(t, b)
	requests, recs, _ := rc.got()
	if len(recs) != 10 {
		t.Errorf("after Close the receiver has %d events, want 10", len(recs))
	}
	if requests != 3 {
		t.Errorf("requests = %d, want 3 (batches of 4, 4, 2)", requests)
	}
	if err := b.Close(t.Context()); err != nil {
		t.Errorf("second Close = %v, want nil", err)
	}
}

func TestBatchFillsWithoutWaiting(t *testing.T) {
	rc := newReceiver(t, "s")
	b := newBus(t, Config{FlushInterval: time.Hour, BatchSize: 5})
	b.SetSubscriptions([]Subscription{{ID: "esb", AccountID: "a", Types: []string{TypeHTTPRequestComplete}, Destinations: []Destination{rc.dest()}}})
	for range 5 {
		b.Publish(httpEvent("a", 200))
	}
	select { // a full batch goes at once, not after FlushInterval
	case n := <-rc.batch:
		if n != 5 {
			t.Errorf("batch of %d, want 5", n)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a full batch was not sent")
	}
}

func TestSetSubscriptionsReplace(t *testing.T) {
	rc := newReceiver(t, "s")
	b := newBus(t, Config{FlushInterval: time.Hour, BatchSize: 1})
	settled := make(chan struct{}, 10)
	b.afterBatch = func(string) { settled <- struct{}{} }
	sub := Subscription{ID: "esb", AccountID: "a", Types: []string{TypeHTTPRequestComplete}, Destinations: []Destination{rc.dest()}}
	b.SetSubscriptions([]Subscription{sub})
	b.Publish(httpEvent("a", 200))
	<-settled

	// Same destination, other types and fields: the destination and its counters stay.
	sub.Types = append(sub.Types, TypeTunnelStarted)
	sub.Fields = []string{FieldStatus}
	b.SetSubscriptions([]Subscription{sub})
	b.Publish(Event{Type: TypeTunnelStarted, AccountID: "a"})
	<-settled
	if st := b.Stats()["esb/destinations[0]"]; st.Delivered != 2 {
		t.Errorf("stats after an update = %+v, want the 2 deliveries kept", st)
	}

	// Removed: Stats forgets it; what it held is still delivered.
	b.SetSubscriptions(nil)
	if len(b.Stats()) != 0 {
		t.Errorf("Stats after removing every subscription = %v, want empty", b.Stats())
	}
	b.Publish(httpEvent("a", 200)) // no subscription: nowhere to go
	closeBus(t, b)
	if _, recs, _ := rc.got(); len(recs) != 2 || fmt.Sprint(recs[1].Object) != "map[]" {
		t.Errorf("receiver got %+v, want 2 events, the second with no fields", recs)
	}
}

func TestCheckAndGuards(t *testing.T) {
	b := newBus(t, Config{
		AllowDestination: func(u *url.URL) error {
			if u.Hostname() == "169.254.169.254" {
				return errors.New("link-local address refused")
			}
			return nil
		},
	})
	webhook := func(u string) Subscription {
		return Subscription{ID: "esb", AccountID: "a", Types: []string{TypeTunnelStarted},
			Destinations: []Destination{{Kind: KindWebhook, URL: u, Secret: "x"}}}
	}
	if err := b.Check(webhook("https://hooks.example.com/x")); err != nil {
		t.Errorf("Check(public webhook) = %v, want nil", err)
	}
	err := b.Check(webhook("http://169.254.169.254/latest/meta-data"))
	if err == nil || !strings.Contains(err.Error(), "destinations[0].url: link-local address refused") {
		t.Errorf("Check(metadata URL) = %v, want destinations[0].url: link-local address refused", err)
	}
	file := Subscription{ID: "esb2", AccountID: "a", Types: []string{TypeTunnelStarted},
		Destinations: []Destination{{Kind: KindFile, Path: "/etc/cron.d/x"}}}
	if err := b.Check(file); err == nil || !strings.Contains(err.Error(), "destinations[0].path: file destinations are off") {
		t.Errorf("Check(file) with no AllowFile = %v, want file destinations are off", err)
	}
	// SetSubscriptions skips what Check refuses.
	b.SetSubscriptions([]Subscription{webhook("http://169.254.169.254/"), file, {ID: "bad"}})
	if len(b.Stats()) != 0 {
		t.Errorf("Stats = %v, want the refused subscriptions skipped", b.Stats())
	}
}

func TestUnencodableFieldFailsAlone(t *testing.T) {
	rc := newReceiver(t, "s")
	b := newBus(t, Config{FlushInterval: time.Hour})
	b.SetSubscriptions([]Subscription{{ID: "esb", AccountID: "a", Types: []string{TypeHTTPRequestComplete}, Destinations: []Destination{rc.dest()}}})
	b.Publish(httpEvent("a", 200))
	b.Publish(Event{Type: TypeHTTPRequestComplete, AccountID: "a", Fields: map[string]any{"status": func() {}}})
	b.Publish(httpEvent("a", 201))
	closeBus(t, b)
	if _, recs, _ := rc.got(); len(recs) != 2 {
		t.Errorf("receiver got %d events, want 2", len(recs))
	}
	if st := b.Stats()["esb/destinations[0]"]; st.Delivered != 2 || st.Failed != 1 {
		t.Errorf("stats = %+v, want 2 delivered, 1 failed", st)
	}
}

func TestValidate(t *testing.T) {
	ok := Subscription{ID: "esb", AccountID: "a", Types: []string{TypeHTTPRequestComplete}, Fields: []string{"status"},
		Destinations: []Destination{{Kind: KindWebhook, URL: "https://x.example/h", Secret: "s"}, {Kind: KindFile, Path: "/var/log/ferry/e.jsonl"}}}
	if err := ok.Validate(); err != nil {
		t.Fatalf("Validate(valid) = %v", err)
	}
	for _, c := range []struct {
		name string
		edit func(*Subscription)
		want string
	}{
		{"no id", func(s *Subscription) { s.ID = "" }, "id: required"},
		{"no account", func(s *Subscription) { s.AccountID = " " }, "account_id: required"},
		{"no types", func(s *Subscription) { s.Types = nil }, "event_types: select at least one event type; known: tunnel_started, "},
		{"unknown type", func(s *Subscription) { s.Types = []string{TypeTunnelStarted, "x"} }, `event_types[1]: unknown event type "x"; known: tunnel_started, tunnel_stopped, http_request_complete, tcp_connection_closed, tls_connection_closed`},
		{"field of another type", func(s *Subscription) { s.Fields = []string{"status", "server_name"} }, `fields[1]: "server_name" is not a field of the selected types; known: bytes_in, `},
		{"no destinations", func(s *Subscription) { s.Destinations = nil }, "destinations: add at least one"},
		{"bad scheme", func(s *Subscription) { s.Destinations[0].URL = "ftp://x.example/" }, "destinations[0].url: want http or https"},
		{"no host", func(s *Subscription) { s.Destinations[0].URL = "https:///h" }, "destinations[0].url: want a host"},
		{"unparsable url", func(s *Subscription) { s.Destinations[0].URL = "http://%zz" }, "destinations[0].url: parse"},
		{"no secret", func(s *Subscription) { s.Destinations[0].Secret = "" }, "destinations[0].secret: required for a webhook"},
		{"webhook with path", func(s *Subscription) { s.Destinations[0].Path = "/x" }, "destinations[0].path: only a file destination"},
		{"relative path", func(s *Subscription) { s.Destinations[1].Path = "e.jsonl" }, `destinations[1].path: want an absolute path, got "e.jsonl"`},
		{"file without path", func(s *Subscription) { s.Destinations[1].Path = "" }, "destinations[1].path: required for a file"},
		{"file with url", func(s *Subscription) { s.Destinations[1].URL = "https://x" }, "destinations[1].url: only a webhook"},
		{"bad kind", func(s *Subscription) { s.Destinations[1].Kind = "kafka" }, `destinations[1].kind: want "webhook" or "file", got "kafka"`},
	} {
		s := ok
		s.Types = slices.Clone(ok.Types)
		s.Destinations = slices.Clone(ok.Destinations)
		c.edit(&s)
		err := s.Validate()
		if err == nil || !strings.HasPrefix(err.Error(), c.want) {
			t.Errorf("%s: Validate = %v, want %q...", c.name, err, c.want)
		}
	}
}

func TestTypes(t *testing.T) {
	types := ValidTypes()
	types[0] = "changed"
	if ValidTypes()[0] != TypeTunnelStarted {
		t.Error("ValidTypes shares its slice with callers")
	}
	for _, typ := range ValidTypes() {
		if len(TypeFields(typ)) == 0 {
			t.Errorf("TypeFields(%s) is empty", typ)
		}
	}
}

// BenchmarkPublish measures what the relay's goroutine pays per Publish. The destination
// is a webhook that never answers, so its goroutine stays parked and does not compete for
// the CPU; "enqueue" drains the queue itself every 4096 events (the dequeue cost is in
// the figure).
func BenchmarkPublish(b *testing.B) {
	release, entered := make(chan struct{}), make(chan struct{}, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer srv.Close()
	defer close(release)
	bus := NewBus(Config{FlushInterval: time.Millisecond, BatchSize: 1, QueueSize: 8192})
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
		defer cancel()
		_ = bus.Close(ctx)
	}()
	bus.SetSubscriptions([]Subscription{{ID: "esb", AccountID: "a", Types: []string{TypeHTTPRequestComplete},
		Destinations: []Destination{{Kind: KindWebhook, URL: srv.URL, Secret: "s"}}}})
	w := bus.workers["esb/destinations[0]"]
	ev := httpEvent("a", 200)
	bus.Publish(ev)
	<-entered // the destination's goroutine is stuck in its request

	b.Run("enqueue", func(b *testing.B) {
		buf := make([]item, 0, 4096)
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			bus.Publish(ev)
			if i++; i == 4096 {
				buf = w.q.take(buf[:0], 4096)
				w.q.done(len(buf), dropped)
				i = 0
			}
		}
	})
	b.Run("queue-full", func(b *testing.B) {
		for range 8192 {
			bus.Publish(ev)
		}
		b.ReportAllocs()
		for b.Loop() {
			bus.Publish(ev)
		}
	})
	b.Run("no-subscription", func(b *testing.B) {
		other := httpEvent("z", 200)
		b.ReportAllocs()
		for b.Loop() {
			bus.Publish(other)
		}
	})
}

func TestRefusePrivateAddresses(t *testing.T) {
	for _, c := range []struct {
		addr string
		ok   bool
	}{
		{"93.184.215.14:443", true},
		{"[2606:2800:21f:cb07:6820:80da:af6b:8b2c]:443", true},
		{"127.0.0.1:80", false},
		{"[::1]:80", false},
		{"10.1.2.3:80", false},
		{"172.16.0.1:80", false},
		{"192.168.1.1:80", false},
		{"169.254.169.254:80", false},
		{"[::ffff:169.254.169.254]:80", false},
		{"100.100.100.200:80", false},
		{"0.0.0.0:80", false},
		{"[fd00::1]:80", false},
		{"[fe80::1]:80", false},
		{"224.0.0.1:80", false},
		{"not-an-address", false},
	} {
		err := RefusePrivateAddresses("tcp", c.addr, nil)
		if (err == nil) != c.ok || (err != nil && !errors.Is(err, ErrAddressRefused)) {
			t.Errorf("RefusePrivateAddresses(%s) = %v, want allowed %v", c.addr, err, c.ok)
		}
	}

	// Through a bus: the loopback receiver is refused at dial time, without retries.
	rc := newReceiver(t, "s")
	dialer := &net.Dialer{Control: RefusePrivateAddresses}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil
	tr.DialContext = dialer.DialContext
	client := &http.Client{Transport: tr}
	t.Cleanup(client.CloseIdleConnections)
	b := newBus(t, Config{HTTPClient: client, FlushInterval: time.Hour})
	b.SetSubscriptions([]Subscription{{ID: "esb", AccountID: "a", Types: []string{TypeTunnelStarted}, Destinations: []Destination{rc.dest()}}})
	b.Publish(Event{Type: TypeTunnelStarted, AccountID: "a"})
	closeBus(t, b)
	if st := b.Stats()["esb/destinations[0]"]; st.Failed != 1 || st.Retries != 0 {
		t.Errorf("stats = %+v, want 1 failed, no retries", st)
	}
	if n, _, _ := rc.got(); n != 0 {
		t.Errorf("the loopback receiver got %d requests, want 0", n)
	}
}

// Publish from several goroutines while subscriptions change and the bus closes: no
// race, no panic, and every event handed to the remaining destination is accounted for.
func TestConcurrentPublishAndSet(t *testing.T) {
	rc := newReceiver(t, "s")
	b := newBus(t, Config{FlushInterval: time.Millisecond, QueueSize: 100})
	subA := Subscription{ID: "esb", AccountID: "a", Types: []string{TypeHTTPRequestComplete}, Destinations: []Destination{rc.dest()}}
	subB := subA
	subB.Fields = []string{FieldStatus}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
					b.Publish(httpEvent("a", 200))
				}
			}
		})
	}
	for i := range 50 {
		if i%2 == 0 {
			b.SetSubscriptions([]Subscription{subA})
		} else {
			b.SetSubscriptions([]Subscription{subB})
		}
	}
	b.SetSubscriptions([]Subscription{subA, {ID: "esb2", AccountID: "a", Types: []string{TypeHTTPRequestComplete}, Destinations: []Destination{rc.dest()}}})
	closeBus(t, b)
	close(stop)
	wg.Wait()
	for key, st := range b.Stats() {
		if st.Queued != 0 {
			t.Errorf("%s: %d still queued after Close", key, st.Queued)
		}
	}
}
