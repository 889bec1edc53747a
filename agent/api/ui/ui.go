// Package ui is the agent's inspection web page, served on the local API address
// (default http://127.0.0.1:4040/): a live list of the HTTP requests that passed through
// the agent's tunnels, each request and response in detail, and replay (as recorded, or
// edited).
//
// The page is plain HTML, CSS and JavaScript embedded in the binary: no build step and no
// request to anywhere but the local API. It uses the API's own routes for the details
// (GET /api/requests/http/ID), replay (POST /api/requests/http), clearing (DELETE
// /api/requests/http) and the tunnels (GET /api/tunnels). For the live list, which would
// otherwise download every captured body each time, this package adds two routes that
// send one short summary per request, newest first:
//
//	GET /ui/requests  {"requests": [summary...]}
//	GET /ui/events    Server-Sent Events: an event "requests" with the same JSON at once
//	                  and after every change (new requests, clear), at most every 200 ms
//
// Mount it last, on "GET /", so that the API's routes take precedence:
//
//	mux.Handle("GET /", ui.Handler(store))
package ui

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"io/fs"
	"net/http"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/ferrytunnel/ferry/agent/inspect"
)

//go:embed static
var staticFS embed.FS

// Timings of the event stream; variables so that tests can shorten them.
var (
	// minInterval is the least time between two snapshots sent on one stream.
	minInterval = 200 * time.Millisecond
	// checkInterval is how often a stream looks for changes that come without a
	// notification from the store (Clear does not notify).
	checkInterval = time.Second
	// keepAlive is how long a stream may stay silent before a comment is sent, so that
	// dead connections are noticed.
	keepAlive = 20 * time.Second
)

// contentSecurityPolicy allows nothing but the page's own files and the local API.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

type asset struct {
	body        []byte
	contentType string
	etag        string
}

// assets maps URL paths to the embedded files: "/" is index.html, the rest are under /ui/.
var assets = func() map[string]asset {
	types := map[string]string{
		".html": "text/html; charset=utf-8",
		".css":  "text/css; charset=utf-8",
		".js":   "text/javascript; charset=utf-8",
		".svg":  "image/svg+xml",
	}
	m := map[string]asset{}
	err := fs.WalkDir(staticFS, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := staticFS.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		a := asset{body: b, contentType: types[path.Ext(p)], etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
		if a.contentType == "" {
			a.contentType = "application/octet-stream"
		}
		name := strings.TrimPrefix(p, "static/")
		if name == "index.html" {
			m["/"] = a
		} else {
			m["/ui/"+name] = a
		}
		return nil
	})
	if err != nil {
		panic("ui: embedded files: " + err.Error())
	}
	return m
}()

// Handler serves the page, its files and the summary routes for the requests in store.
func Handler(store *inspect.Store) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ui/requests", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		b, _ := snapshot(store)
		w.Write(b) //nolint:errcheck // the client went away
	})
	mux.HandleFunc("GET /ui/events", func(w http.ResponseWriter, r *http.Request) {
		events(w, r, store)
	})
	mux.HandleFunc("GET /", serveAsset)
	return mux
}

func serveAsset(w http.ResponseWriter, r *http.Request) {
	a, ok := assets[r.URL.Path]
	if !ok {
		if strings.HasPrefix(r.URL.Path, "/api/") {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNotFound)
			json.NewEncoder(w).Encode(map[string]any{"status_code": http.StatusNotFound, "msg": "not found: " + r.URL.Path}) //nolint:errcheck
			return
		}
		http.NotFound(w, r)
		return
	}
	h := w.Header()
	h.Set("Content-Type", a.contentType)
	h.Set("ETag", a.etag)
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	if r.URL.Path == "/" {
		h.Set("Content-Security-Policy", contentSecurityPolicy)
		h.Set("X-Frame-Options", "DENY")
	}
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(a.body))
}

// summary is one line of the request list: no headers, no bodies.
type summary struct {
	ID           string    `json:"id"`
	TunnelName   string    `json:"tunnel_name"`
	RemoteAddr   string    `json:"remote_addr"`
	Start        time.Time `json:"start"`
	Duration     int64     `json:"duration"` // nanoseconds
	ReplayOf     string    `json:"replay_of,omitempty"`
	Error        string    `json:"error,omitempty"`
	Method       string    `json:"method"`
	URI          string    `json:"uri"`
	Host         string    `json:"host"`
	StatusCode   int       `json:"status_code,omitempty"`
	Status       string    `json:"status,omitempty"`
	RequestSize  int64     `json:"request_size"`
	ResponseSize int64     `json:"response_size"`
	ContentType  string    `json:"content_type,omitempty"` // the response's
}

// snapshot is the JSON of every stored request's summary, newest first, and the
// fingerprint of that list.
func snapshot(store *inspect.Store) ([]byte, string) {
	list := store.List(0, "")
	out := make([]summary, 0, len(list))
	for _, e := range list {
		s := summary{ID: e.ID, TunnelName: e.TunnelName, RemoteAddr: e.RemoteAddr, Start: e.Start,
			Duration: int64(e.Duration), ReplayOf: e.Replay, Error: e.Error,
			Method: e.Request.Method, URI: e.Request.URI, Host: e.Request.Host, RequestSize: e.Request.Body.Size}
		if r := e.Response; r != nil {
			s.StatusCode, s.Status, s.ResponseSize = r.StatusCode, r.Status, r.Body.Size
			s.ContentType = r.Header.Get("Content-Type")
		}
		out = append(out, s)
	}
	b, err := json.Marshal(map[string]any{"requests": out})
	if err != nil { // cannot happen: strings, numbers and times only
		b = []byte(`{"requests":[]}`)
	}
	return b, fingerprintOf(list)
}

// fingerprint tells whether the store changed: its newest and oldest ids and its length.
func fingerprint(store *inspect.Store) string { return fingerprintOf(store.List(0, "")) }

func fingerprintOf(list []*inspect.Exchange) string {
	if len(list) == 0 {
		return ""
	}
	return list[0].ID + "/" + list[len(list)-1].ID + "/" + strconv.Itoa(len(list))
}

// events streams snapshots as Server-Sent Events until the client goes away.
func events(w http.ResponseWriter, r *http.Request, store *inspect.Store) {
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return
	}

	changed, stop := store.Subscribe()
	defer stop()
	check := time.NewTicker(checkInterval)
	defer check.Stop()

	lastWrite := time.Now()
	write := func(s string) bool {
		if _, err := w.Write([]byte(s)); err != nil {
			return false
		}
		lastWrite = time.Now()
		return rc.Flush() == nil
	}
	b, last := snapshot(store)
	if !write("retry: 2000\nevent: requests\ndata: " + string(b) + "\n\n") {
		return
	}
	for {
		select {
		case <-r.Context().Done():
			return
		case <-changed:
		case <-check.C:
			if fp := fingerprint(store); fp == last {
				if time.Since(lastWrite) >= keepAlive && !write(": keep-alive\n\n") {
					return
				}
				continue
			}
		}
		b, last = snapshot(store)
		if !write("event: requests\ndata: " + string(b) + "\n\n") {
			return
		}
		// Coalesce bursts: changes in the meantime wait in the subscription (or are
		// seen by the next check) and go out in the next snapshot.
		select {
		case <-r.Context().Done():
			return
		case <-time.After(minInterval):
		}
	}
}
