package api

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/ferrytunnel/ferry/agent/inspect"
)

// exchangeJSON is an inspected exchange as the local API returns it (shaped like ngrok's
// /api/requests/http entries), with bodies as text or base64.
type exchangeJSON struct {
	URI        string       `json:"uri"`
	ID         string       `json:"id"`
	TunnelName string       `json:"tunnel_name"`
	RemoteAddr string       `json:"remote_addr"`
	Start      time.Time    `json:"start"`
	Duration   int64        `json:"duration"` // nanoseconds
	ReplayOf   string       `json:"replay_of,omitempty"`
	Error      string       `json:"error,omitempty"`
	Request    messageJSON  `json:"request"`
	Response   *messageJSON `json:"response,omitempty"`
}

type messageJSON struct {
	Method     string      `json:"method,omitempty"`
	URI        string      `json:"uri,omitempty"`
	Host       string      `json:"host,omitempty"`
	Status     string      `json:"status,omitempty"`
	StatusCode int         `json:"status_code,omitempty"`
	Proto      string      `json:"proto"`
	Headers    http.Header `json:"headers"`
	Body       bodyJSON    `json:"body"`
}

type bodyJSON struct {
	Size      int64  `json:"size"`
	Truncated bool   `json:"truncated"`
	Base64    string `json:"base64"`
}

func toJSON(e *inspect.Exchange) exchangeJSON {
	out := exchangeJSON{URI: "/api/requests/http/" + e.ID, ID: e.ID, TunnelName: e.TunnelName, RemoteAddr: e.RemoteAddr,
		Start: e.Start, Duration: int64(e.Duration), ReplayOf: e.Replay, Error: e.Error,
		Request: messageJSON{Method: e.Request.Method, URI: e.Request.URI, Host: e.Request.Host, Proto: e.Request.Proto,
			Headers: e.Request.Header, Body: body(e.Request.Body)}}
	if r := e.Response; r != nil {
		out.Response = &messageJSON{Status: r.Status, StatusCode: r.StatusCode, Proto: r.Proto, Headers: r.Header, Body: body(r.Body)}
	}
	return out
}

func body(b inspect.Body) bodyJSON {
	return bodyJSON{Size: b.Size, Truncated: b.Truncated, Base64: base64.StdEncoding.EncodeToString(b.Data)}
}

// replayJSON is the body of POST /api/requests/http: replay exchange ID, optionally with
// edits to the method, URI, headers or body.
type replayJSON struct {
	ID         string      `json:"id"`
	TunnelName string      `json:"tunnel_name"`
	Method     string      `json:"method"`
	URI        string      `json:"uri"`
	Headers    http.Header `json:"headers"`
	BodyBase64 *string     `json:"body_base64"`
	Body       *string     `json:"body"`
}

// maxReplayBody bounds the replay request the local API accepts.
const maxReplayBody = 2 * inspect.MaxBody

func requestRoutes(mux *http.ServeMux, l TunnelLister, store *inspect.Store) {
	mux.HandleFunc("GET /api/requests/http", func(w http.ResponseWriter, r *http.Request) {
		limit, _ := strconv.Atoi(r.URL.Query().Get("limit"))
		list := []exchangeJSON{}
		for _, e := range store.List(limit, r.URL.Query().Get("tunnel_name")) {
			list = append(list, toJSON(e))
		}
		writeJSON(w, map[string]any{"uri": "/api/requests/http", "requests": list})
	})
	mux.HandleFunc("GET /api/requests/http/{id}", func(w http.ResponseWriter, r *http.Request) {
		e := store.Get(r.PathValue("id"))
		if e == nil {
			apiError(w, http.StatusNotFound, "request not found: "+r.PathValue("id"))
			return
		}
		writeJSON(w, toJSON(e))
	})
	mux.HandleFunc("DELETE /api/requests/http", func(w http.ResponseWriter, r *http.Request) {
		store.Clear()
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /api/requests/http", func(w http.ResponseWriter, r *http.Request) {
		var in replayJSON
		if err := json.NewDecoder(io.LimitReader(r.Body, maxReplayBody)).Decode(&in); err != nil {
			apiError(w, http.StatusBadRequest, "body: want JSON {\"id\": \"req_...\"}: "+err.Error())
			return
		}
		e := store.Get(in.ID)
		if e == nil {
			apiError(w, http.StatusNotFound, "request not found: "+in.ID)
			return
		}
		name := e.TunnelName
		if in.TunnelName != "" {
			name = in.TunnelName
		}
		t := l.Tunnel(name)
		if t == nil {
			apiError(w, http.StatusNotFound, "tunnel not found: "+name)
			return
		}
		req := e.Request
		if in.Method != "" {
			req.Method = in.Method
		}
		if in.URI != "" {
			if !strings.HasPrefix(in.URI, "/") {
				apiError(w, http.StatusBadRequest, fmt.Sprintf("uri %q: want a path starting with /, e.g. /orders?id=7", in.URI))
				return
			}
			req.URI = in.URI
		}
		if in.Headers != nil {
			req.Header = in.Headers
		}
		switch {
		case in.Body != nil:
			req.Body = inspect.Body{Data: []byte(*in.Body), Size: int64(len(*in.Body))}
		case in.BodyBase64 != nil:
			b, err := base64.StdEncoding.DecodeString(*in.BodyBase64)
			if err != nil {
				apiError(w, http.StatusBadRequest, fmt.Sprintf("body_base64: %v", err))
				return
			}
			req.Body = inspect.Body{Data: b, Size: int64(len(b))}
		}
		if err := t.Replay(r.Context(), req, e.ID); err != nil {
			apiError(w, http.StatusBadRequest, err.Error())
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
}
