//go:build linux

package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The load generators. Each bounds its loops by a count and a time limit, talks only to
// 127.0.0.1, and checks what comes back (byte counts, echoed content, status codes).

const (
	dialTimeout = 10 * time.Second
	// roundTripTimeout bounds one small exchange (an echo, an HTTP request).
	roundTripTimeout = 10 * time.Second
	mib              = 1 << 20
	gib              = 1 << 30
)

func dial(ctx context.Context, addr string) (net.Conn, error) {
	d := net.Dialer{Timeout: dialTimeout}
	return d.DialContext(ctx, "tcp", addr)
}

// closeOnDone closes c when ctx ends, so a blocked read or write returns; call the
// returned func when done with c.
func closeOnDone(ctx context.Context, c io.Closer) func() bool {
	return context.AfterFunc(ctx, func() { c.Close() })
}

// ---- bulk --------------------------------------------------------------------------

// bulkResult is one bulk transfer: bytes moved both ways and how long it took.
type bulkResult struct {
	bytes    int64
	elapsed  time.Duration
	up, down time.Duration // of the slowest connection
}

func (r bulkResult) mibps() float64 { return float64(r.bytes) / mib / r.elapsed.Seconds() }

// bulkDeadline bounds a transfer of n bytes each way: generous, but a stalled tunnel ends.
func bulkDeadline(n int64) time.Duration { return 2*time.Minute + time.Duration(n/(4*mib))*time.Second }

// bulkTCP moves total bytes up and then total bytes down over conns connections at once
// (total/conns each) through the bench protocol, and checks the counts both ways.
func bulkTCP(ctx context.Context, addr string, total int64, conns int) (bulkResult, error) {
	per := total / int64(conns)
	cs := make([]net.Conn, 0, conns)
	defer func() {
		for _, c := range cs {
			c.Close()
		}
	}()
	for range conns {
		c, err := dial(ctx, addr)
		if err != nil {
			return bulkResult{}, err
		}
		cs = append(cs, c)
	}
	start := make(chan struct{})
	var wg sync.WaitGroup
	ups, downs, errs := make([]time.Duration, conns), make([]time.Duration, conns), make([]error, conns)
	for i, c := range cs {
		wg.Go(func() {
			<-start
			ups[i], downs[i], errs[i] = bulkOnce(ctx, c, per)
		})
	}
	t0 := time.Now()
	close(start)
	wg.Wait()
	r := bulkResult{bytes: 2 * per * int64(conns), elapsed: time.Since(t0), up: slices.Max(ups), down: slices.Max(downs)}
	return r, errors.Join(errs...)
}

// bulkOnce runs one bulk exchange on c: n bytes up, the upstream's count back, n bytes
// down, then end of stream.
func bulkOnce(ctx context.Context, c net.Conn, n int64) (up, down time.Duration, err error) {
	defer closeOnDone(ctx, c)()
	c.SetDeadline(time.Now().Add(bulkDeadline(n)))
	buf := make([]byte, bulkBufSize)
	buf[0] = modeBulk
	binary.BigEndian.PutUint64(buf[1:9], uint64(n))
	t0 := time.Now()
	if _, err := c.Write(buf[:9]); err != nil {
		return 0, 0, fmt.Errorf("bulk header: %w", err)
	}
	if err := writePattern(c, buf, n); err != nil {
		return 0, 0, fmt.Errorf("bulk upload: %w", err)
	}
	var ack [8]byte
	if _, err := io.ReadFull(c, ack[:]); err != nil {
		return 0, 0, fmt.Errorf("bulk: reading the upstream's count: %w", err)
	}
	if got := int64(binary.BigEndian.Uint64(ack[:])); got != n {
		return 0, 0, fmt.Errorf("bulk: upstream received %d bytes, want %d", got, n)
	}
	t1 := time.Now()
	got, err := copyBuffer(io.Discard, c, buf)
	if err != nil {
		return 0, 0, fmt.Errorf("bulk download after %d of %d bytes: %w", got, n, err)
	}
	if got != n {
		return 0, 0, fmt.Errorf("bulk: downloaded %d bytes before end of stream, want %d", got, n)
	}
	return t1.Sub(t0), time.Since(t1), nil
}

// ---- HTTP --------------------------------------------------------------------------

// newHTTPClient returns an HTTP/1.1 client with up to conns keep-alive connections. It
// dials 127.0.0.1 for localhost names (as curl does) and refuses any other host; TLS
// trusts roots (the dev relay's CA).
func newHTTPClient(roots *x509.CertPool, conns, bufSize int) *http.Client {
	d := &net.Dialer{Timeout: dialTimeout}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			host, port, err := net.SplitHostPort(addr)
			if err != nil {
				return nil, err
			}
			if host != "127.0.0.1" && host != "localhost" && !strings.HasSuffix(host, ".localhost") {
				return nil, fmt.Errorf("the bench only talks to loopback, not %s", host)
			}
			return d.DialContext(ctx, network, net.JoinHostPort("127.0.0.1", port))
		},
		TLSClientConfig:     &tls.Config{RootCAs: roots},
		TLSNextProto:        map[string]func(string, *tls.Conn) http.RoundTripper{}, // HTTP/1.1 only
		MaxIdleConns:        conns,
		MaxIdleConnsPerHost: conns,
		MaxConnsPerHost:     conns,
		IdleConnTimeout:     time.Minute,
		DisableCompression:  true,
		ReadBufferSize:      bufSize,
		WriteBufferSize:     bufSize,
	}
	return &http.Client{Transport: tr}
}

// patternReader yields n bytes of pattern (repeated) without allocating.
type patternReader struct {
	pattern []byte
	left    int64
	off     int
}

func (r *patternReader) Read(p []byte) (int, error) {
	if r.left == 0 {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), r.left)]
	n := 0
	for n < len(p) {
		c := copy(p[n:], r.pattern[r.off:])
		n += c
		r.off = (r.off + c) % len(r.pattern)
	}
	r.left -= int64(n)
	return n, nil
}

// bulkHTTP POSTs n bytes to base/upload and then GETs n bytes from base/download on one
// keep-alive connection, checking both counts.
func bulkHTTP(ctx context.Context, client *http.Client, base string, n int64) (bulkResult, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*bulkDeadline(n))
	defer cancel()
	pattern := make([]byte, bulkBufSize)
	t0 := time.Now()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/upload", &patternReader{pattern: pattern, left: n})
	if err != nil {
		return bulkResult{}, err
	}
	req.ContentLength = n
	resp, err := client.Do(req)
	if err != nil {
		return bulkResult{}, fmt.Errorf("POST /upload: %w", err)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		return bulkResult{}, fmt.Errorf("POST /upload = %s %q (%v), want 200", resp.Status, body, err)
	}
	if got, _ := strconv.ParseInt(string(body), 10, 64); got != n {
		return bulkResult{}, fmt.Errorf("POST /upload: upstream received %s bytes, want %d", body, n)
	}
	t1 := time.Now()
	req, err = http.NewRequestWithContext(ctx, http.MethodGet, base+"/download?n="+strconv.FormatInt(n, 10), nil)
	if err != nil {
		return bulkResult{}, err
	}
	resp, err = client.Do(req)
	if err != nil {
		return bulkResult{}, fmt.Errorf("GET /download: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return bulkResult{}, fmt.Errorf("GET /download = %s, want 200", resp.Status)
	}
	got, err := copyBuffer(io.Discard, resp.Body, pattern)
	if err != nil || got != n {
		return bulkResult{}, fmt.Errorf("GET /download: got %d bytes (%v), want %d", got, err, n)
	}
	return bulkResult{bytes: 2 * n, elapsed: time.Since(t0), up: t1.Sub(t0), down: time.Since(t1)}, nil
}

// httpRate runs workers keep-alive clients GETting url (1 KiB answers) for d, and returns
// requests per second. Each worker makes one request first, untimed, to open its
// connection. Any failed or short answer fails the measurement.
func httpRate(ctx context.Context, client *http.Client, url string, workers int, d time.Duration) (float64, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var ready, wg sync.WaitGroup
	var count atomic.Int64
	start := make(chan struct{})
	var deadline time.Time
	ready.Add(workers)
	for range workers {
		wg.Go(func() {
			buf := make([]byte, 2*smallBody)
			err := getSmall(ctx, client, url, buf)
			ready.Done()
			if err != nil {
				cancel(err)
				return
			}
			<-start
			for n := 0; time.Now().Before(deadline) && ctx.Err() == nil; n++ {
				if err := getSmall(ctx, client, url, buf); err != nil {
					cancel(fmt.Errorf("after %d requests: %w", n, err))
					return
				}
				count.Add(1)
			}
		})
	}
	ready.Wait()
	t0 := time.Now()
	deadline = t0.Add(d)
	close(start)
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return 0, err
	}
	return float64(count.Load()) / time.Since(t0).Seconds(), nil
}

func getSmall(ctx context.Context, client *http.Client, url string, buf []byte) error {
	ctx, cancel := context.WithTimeout(ctx, roundTripTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	n, err := io.ReadFull(resp.Body, buf)
	if err != io.ErrUnexpectedEOF && err != nil {
		return fmt.Errorf("GET %s: body: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK || n != smallBody {
		return fmt.Errorf("GET %s = %s with %d bytes, want 200 with %d", url, resp.Status, n, smallBody)
	}
	return nil
}

// ---- connections and echoes -----------------------------------------------------------

// echoMessage returns the 1 KiB message the echo rows send.
func echoMessage() []byte {
	msg := make([]byte, smallBody)
	for i := range msg {
		msg[i] = 'a' + byte(i%26)
	}
	return msg
}

// connRate opens total connections, workers at a time, each doing one 1 KiB echo round
// trip and closing; it stops early at limit and returns connections per second and how
// many were made. Any failed connection fails the measurement.
func connRate(ctx context.Context, addr string, workers, total int, limit time.Duration) (float64, int, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	out := append([]byte{modeEcho}, echoMessage()...)
	var next, done atomic.Int64
	var wg sync.WaitGroup
	t0 := time.Now()
	deadline := t0.Add(limit)
	for range workers {
		wg.Go(func() {
			in := make([]byte, smallBody)
			for next.Add(1) <= int64(total) && time.Now().Before(deadline) && ctx.Err() == nil {
				if err := echoConn(ctx, addr, out, in); err != nil {
					cancel(fmt.Errorf("connection %d: %w", done.Load()+1, err))
					return
				}
				done.Add(1)
			}
		})
	}
	wg.Wait()
	n := int(done.Load())
	if err := context.Cause(ctx); err != nil {
		return 0, n, err
	}
	return float64(n) / time.Since(t0).Seconds(), n, nil
}

// echoConn connects, writes out (the echo mode byte and a message) in one write, reads
// the message back, checks it and closes.
func echoConn(ctx context.Context, addr string, out, in []byte) error {
	c, err := dial(ctx, addr)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(roundTripTimeout))
	msg := out[1:]
	if _, err := c.Write(out); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	if _, err := io.ReadFull(c, in[:len(msg)]); err != nil {
		return fmt.Errorf("read echo: %w", err)
	}
	if !bytes.Equal(in[:len(msg)], msg) {
		return errors.New("echo came back different")
	}
	return nil
}

// echoLatency measures samples 1 KiB echo round trips on one connection (after a
// warm-up) and returns them sorted. (Taking turns between the direct and the tunnel
// connection would make the direct figure wait on the tunnel processes' after-work.)
func echoLatency(ctx context.Context, addr string, samples int) ([]time.Duration, error) {
	const warmup = 200
	e, err := newEchoer(ctx, addr, 2*time.Minute+time.Duration(samples)*time.Millisecond)
	if err != nil {
		return nil, err
	}
	defer e.close()
	rtts := make([]time.Duration, 0, samples)
	for i := range warmup + samples {
		rtt, err := e.roundTrip()
		if err != nil {
			return nil, fmt.Errorf("%s: round trip %d: %w", addr, i, err)
		}
		if i >= warmup {
			rtts = append(rtts, rtt)
		}
	}
	slices.Sort(rtts)
	return rtts, nil
}

// echoer is one kept-open echo connection.
type echoer struct {
	c       net.Conn
	msg, in []byte
	stop    func() bool
}

func newEchoer(ctx context.Context, addr string, limit time.Duration) (*echoer, error) {
	c, err := dial(ctx, addr)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(limit))
	if _, err := c.Write([]byte{modeEcho}); err != nil {
		c.Close()
		return nil, err
	}
	return &echoer{c: c, msg: echoMessage(), in: make([]byte, smallBody), stop: closeOnDone(ctx, c)}, nil
}

// roundTrip sends the message, reads it back, checks it, and returns how long it took.
func (e *echoer) roundTrip() (time.Duration, error) {
	t0 := time.Now()
	if _, err := e.c.Write(e.msg); err != nil {
		return 0, fmt.Errorf("write: %w", err)
	}
	if _, err := io.ReadFull(e.c, e.in); err != nil {
		return 0, fmt.Errorf("read: %w", err)
	}
	rtt := time.Since(t0)
	if !bytes.Equal(e.in, e.msg) {
		return 0, errors.New("echo came back different")
	}
	return rtt, nil
}

func (e *echoer) close() {
	e.stop()
	e.c.Close()
}

// percentile returns the p-th percentile (0-100) of sorted durations, in microseconds.
func percentile(sorted []time.Duration, p float64) float64 {
	i := min(len(sorted)-1, int(float64(len(sorted))*p/100))
	return float64(sorted[i]) / float64(time.Microsecond)
}

// openIdle opens n connections, workers at a time, each confirmed end to end by a
// one-byte echo, and leaves them open. On error it closes what it opened.
func openIdle(ctx context.Context, addr string, n, workers int, limit time.Duration) ([]net.Conn, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var mu sync.Mutex
	conns := make([]net.Conn, 0, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	deadline := time.Now().Add(limit)
	for range workers {
		wg.Go(func() {
			for next.Add(1) <= int64(n) && ctx.Err() == nil {
				if time.Now().After(deadline) {
					mu.Lock()
					cancel(fmt.Errorf("opened only %d of %d connections within %s", len(conns), n, limit))
					mu.Unlock()
					return
				}
				c, err := openOne(ctx, addr)
				if err != nil {
					mu.Lock()
					cancel(fmt.Errorf("idle connection %d: %w", len(conns)+1, err))
					mu.Unlock()
					return
				}
				mu.Lock()
				conns = append(conns, c)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		closeAll(conns)
		return nil, err
	}
	return conns, nil
}

func openOne(ctx context.Context, addr string) (net.Conn, error) {
	c, err := dial(ctx, addr)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(roundTripTimeout))
	var b [1]byte
	if _, err := c.Write([]byte{modeEcho, 'x'}); err != nil {
		c.Close()
		return nil, err
	}
	if _, err := io.ReadFull(c, b[:]); err != nil || b[0] != 'x' {
		c.Close()
		return nil, fmt.Errorf("echo of one byte: got %q, %v", b[0], err)
	}
	c.SetDeadline(time.Time{})
	return c, nil
}

func closeAll(conns []net.Conn) {
	for _, c := range conns {
		c.Close()
	}
}
