// Command upstream is the local service that scripts/inspect-ui/test.sh exposes through a
// ferry http tunnel. It counts and records the requests it serves, and tells a second,
// control address (never tunnelled) what it saw, so the browser test can check that a
// replay from the inspection page really reached the upstream.
//
//	upstream [-addr 127.0.0.1:0] [-control 127.0.0.1:0]
//
// It prints "listening HOST:PORT" (the service) and "control HOST:PORT" on stdout once both
// accept connections, and exits quietly on SIGTERM or SIGINT.
//
// The service answers:
//
//	/bin     10240 bytes of application/octet-stream (0x00..0xff repeated)
//	/gzip    a JSON document with Content-Encoding: gzip
//	/status/N  status N (e.g. /status/404), a short text body
//	anything else: JSON describing the request (method, path, query, bytes received)
//
// The control address answers GET /stats with {"count": N, "requests": [...]}: the number
// of requests served and the last 100 of them (method, uri, headers, body as text).
package main

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// seen is one request as the upstream received it.
type seen struct {
	Method   string      `json:"method"`
	URI      string      `json:"uri"`
	Headers  http.Header `json:"headers"`
	Body     string      `json:"body"` // the first 64 KiB
	BodySize int64       `json:"body_size"`
}

type recorder struct {
	mu    sync.Mutex
	count int
	last  []seen
}

func (rec *recorder) add(s seen) {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	rec.count++
	rec.last = append(rec.last, s)
	if len(rec.last) > 100 {
		rec.last = rec.last[1:]
	}
}

func (rec *recorder) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 8<<20))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	keep := body
	if len(keep) > 64<<10 {
		keep = keep[:64<<10]
	}
	rec.add(seen{Method: r.Method, URI: r.RequestURI, Headers: r.Header, Body: string(keep), BodySize: int64(len(body))})

	switch {
	case r.URL.Path == "/bin":
		b := make([]byte, 10240)
		for i := range b {
			b[i] = byte(i)
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Write(b) //nolint:errcheck // the client went away
	case r.URL.Path == "/gzip":
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		fmt.Fprintf(zw, `{"compressed":true,"items":[%s]}`, strings.TrimSuffix(strings.Repeat(`"ferry",`, 50), ","))
		zw.Close()
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Encoding", "gzip")
		w.Write(buf.Bytes()) //nolint:errcheck
	case strings.HasPrefix(r.URL.Path, "/status/"):
		code, err := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/status/"))
		if err != nil || code < 200 || code > 599 {
			code = http.StatusBadRequest
		}
		http.Error(w, http.StatusText(code), code)
	default:
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{ //nolint:errcheck
			"server": "ferry-inspect-ui-upstream", "method": r.Method, "path": r.URL.Path,
			"query": r.URL.Query(), "received_bytes": len(body),
		})
	}
}

func (rec *recorder) stats(w http.ResponseWriter, r *http.Request) {
	rec.mu.Lock()
	out := map[string]any{"count": rec.count, "requests": append([]seen{}, rec.last...)}
	rec.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(out) //nolint:errcheck
}

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "service `ADDR` (the tunnel's upstream)")
	control := flag.String("control", "127.0.0.1:0", "control `ADDR` (GET /stats)")
	flag.Parse()

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "upstream:", err)
		os.Exit(1)
	}
	cln, err := net.Listen("tcp", *control)
	if err != nil {
		fmt.Fprintln(os.Stderr, "upstream:", err)
		os.Exit(1)
	}
	rec := &recorder{}
	cmux := http.NewServeMux()
	cmux.HandleFunc("GET /stats", rec.stats)
	go (&http.Server{Handler: cmux, ReadHeaderTimeout: 10 * time.Second}).Serve(cln) //nolint:errcheck

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
	go func() {
		<-sig
		os.Exit(0)
	}()

	fmt.Printf("listening %s\ncontrol %s\n", ln.Addr(), cln.Addr())
	err = (&http.Server{Handler: http.HandlerFunc(rec.serve), ReadHeaderTimeout: 10 * time.Second}).Serve(ln)
	fmt.Fprintln(os.Stderr, "upstream:", err)
	os.Exit(1)
}
