// Package inspect records the HTTP exchanges that pass through the agent's http tunnels
// for the inspection UI and the local API: a bounded ring of the most recent requests,
// each with headers and the first MaxBody bytes of each body, and live notifications.
package inspect

import (
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"sync"
	"time"
)

// Limits on what is kept.
const (
	// MaxBody is how many bytes of each request and response body are kept.
	MaxBody = 1 << 20
	// MaxExchanges is how many exchanges are kept; older ones are dropped.
	MaxExchanges = 500
)

// Body is a captured body: the first bytes, the full size, and whether it was cut.
type Body struct {
	Data      []byte `json:"-"`
	Size      int64  `json:"size"`
	Truncated bool   `json:"truncated"`
}

// Request is the captured request.
type Request struct {
	Method string      `json:"method"`
	URI    string      `json:"uri"`
	Proto  string      `json:"proto"`
	Host   string      `json:"host"`
	Header http.Header `json:"headers"`
	Body   Body        `json:"body"`
}

// Response is the captured response.
type Response struct {
	Status     string      `json:"status"`
	StatusCode int         `json:"status_code"`
	Proto      string      `json:"proto"`
	Header     http.Header `json:"headers"`
	Body       Body        `json:"body"`
}

// Exchange is one request and its response.
type Exchange struct {
	ID         string        `json:"id"`
	TunnelName string        `json:"tunnel_name"`
	RemoteAddr string        `json:"remote_addr"`
	Start      time.Time     `json:"start"`
	Duration   time.Duration `json:"duration"`
	// Replay is the ID of the exchange this one replayed, if any.
	Replay   string    `json:"replay_of,omitempty"`
	Request  Request   `json:"request"`
	Response *Response `json:"response,omitempty"`
	// Error is set when no response came from the upstream.
	Error string `json:"error,omitempty"`
}

// Store keeps the most recent exchanges. It is safe for concurrent use.
type Store struct {
	mu   sync.Mutex
	ring []*Exchange // oldest first
	subs map[chan struct{}]struct{}
}

// NewStore returns an empty store.
func NewStore() *Store { return &Store{subs: make(map[chan struct{}]struct{})} }

// NewID returns a fresh exchange id.
func NewID() string {
	var b [8]byte
	rand.Read(b[:]) //nolint:errcheck // never fails
	return "req_" + hex.EncodeToString(b[:])
}

// Add stores a finished exchange and wakes subscribers.
func (s *Store) Add(e *Exchange) {
	s.mu.Lock()
	if len(s.ring) >= MaxExchanges {
		copy(s.ring, s.ring[1:])
		s.ring = s.ring[:len(s.ring)-1]
	}
	s.ring = append(s.ring, e)
	s.notifyLocked()
	s.mu.Unlock()
}

// List returns up to limit exchanges, newest first, optionally for one tunnel.
func (s *Store) List(limit int, tunnel string) []*Exchange {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []*Exchange{}
	for i := len(s.ring) - 1; i >= 0 && (limit <= 0 || len(out) < limit); i-- {
		if tunnel == "" || s.ring[i].TunnelName == tunnel {
			out = append(out, s.ring[i])
		}
	}
	return out
}

// Get returns one exchange, or nil.
func (s *Store) Get(id string) *Exchange {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range s.ring {
		if e.ID == id {
			return e
		}
	}
	return nil
}

// Clear drops every exchange.
func (s *Store) Clear() {
	s.mu.Lock()
	s.ring = nil
	s.notifyLocked()
	s.mu.Unlock()
}

func (s *Store) notifyLocked() {
	for ch := range s.subs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// Subscribe returns a channel that receives a value after each Add (coalesced), and a
// func to stop.
func (s *Store) Subscribe() (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	s.mu.Lock()
	s.subs[ch] = struct{}{}
	s.mu.Unlock()
	return ch, func() {
		s.mu.Lock()
		delete(s.subs, ch)
		s.mu.Unlock()
	}
}

// Capture is an io.Writer that keeps the first MaxBody bytes written and counts the rest.
type Capture struct {
	mu   sync.Mutex
	body Body
}

func (c *Capture) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.body.Size += int64(len(p))
	if room := MaxBody - len(c.body.Data); room > 0 {
		c.body.Data = append(c.body.Data, p[:min(room, len(p))]...)
	}
	if len(c.body.Data) < int(c.body.Size) {
		c.body.Truncated = true
	}
	return len(p), nil
}

// Body returns what was captured.
func (c *Capture) Body() Body {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.body
}
