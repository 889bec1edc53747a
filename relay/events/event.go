package events

import (
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Event types.
const (
	// TypeTunnelStarted: a tunnel was bound. Fields: tunnel_id, name, url, proto.
	TypeTunnelStarted = "tunnel_started"
	// TypeTunnelStopped: a tunnel was released. Fields: tunnel_id, name, url, proto.
	TypeTunnelStopped = "tunnel_stopped"
	// TypeHTTPRequestComplete: the edge answered an HTTP request. Fields: tunnel_id, url,
	// host, method, path, status, duration_ms, bytes_in, bytes_out, client_ip.
	TypeHTTPRequestComplete = "http_request_complete"
	// TypeTCPConnectionClosed: a tcp tunnel's public connection closed. Fields:
	// tunnel_id, url, client_ip, bytes_in, bytes_out, duration_ms.
	TypeTCPConnectionClosed = "tcp_connection_closed"
	// TypeTLSConnectionClosed: a tls tunnel's public connection closed. Fields:
	// tunnel_id, url, client_ip, server_name, bytes_in, bytes_out, duration_ms.
	TypeTLSConnectionClosed = "tls_connection_closed"
)

// Field names the relay puts in Event.Fields.
const (
	FieldTunnelID   = "tunnel_id"   // string
	FieldName       = "name"        // string: the tunnel's name, if it has one
	FieldURL        = "url"         // string: the tunnel's public URL
	FieldProto      = "proto"       // string: http, tcp or tls
	FieldHost       = "host"        // string: the request's Host
	FieldMethod     = "method"      // string
	FieldPath       = "path"        // string: the URL path, without the query (it may hold secrets)
	FieldStatus     = "status"      // int: the status code sent to the client
	FieldDurationMS = "duration_ms" // number: milliseconds (fractions allowed)
	FieldBytesIn    = "bytes_in"    // int: bytes from the client
	FieldBytesOut   = "bytes_out"   // int: bytes to the client
	FieldClientIP   = "client_ip"   // string: the client's address, without the port
	FieldServerName = "server_name" // string: the TLS SNI
)

var typeFields = map[string][]string{
	TypeTunnelStarted:       {FieldTunnelID, FieldName, FieldURL, FieldProto},
	TypeTunnelStopped:       {FieldTunnelID, FieldName, FieldURL, FieldProto},
	TypeHTTPRequestComplete: {FieldTunnelID, FieldURL, FieldHost, FieldMethod, FieldPath, FieldStatus, FieldDurationMS, FieldBytesIn, FieldBytesOut, FieldClientIP},
	TypeTCPConnectionClosed: {FieldTunnelID, FieldURL, FieldClientIP, FieldBytesIn, FieldBytesOut, FieldDurationMS},
	TypeTLSConnectionClosed: {FieldTunnelID, FieldURL, FieldClientIP, FieldServerName, FieldBytesIn, FieldBytesOut, FieldDurationMS},
}

var validTypes = []string{TypeTunnelStarted, TypeTunnelStopped, TypeHTTPRequestComplete, TypeTCPConnectionClosed, TypeTLSConnectionClosed}

// ValidTypes lists the event types a subscription may select.
func ValidTypes() []string { return slices.Clone(validTypes) }

// TypeFields lists the fields an event of type typ carries (nil for an unknown type).
func TypeFields(typ string) []string { return slices.Clone(typeFields[typ]) }

// Event is something that happened on the relay, for one account.
type Event struct {
	// Type is one of the Type constants.
	Type string
	// Time is when it happened (zero: when it is published).
	Time time.Time
	// AccountID is whose tunnel it concerns; only that account's subscriptions see it.
	AccountID string
	// Fields holds the details, keyed by the Field constants; values must encode as
	// JSON. Publish keeps the map: the caller must not change it afterwards.
	Fields map[string]any
}

// Record is an event as a destination receives it: one line of a file, one element of
// a webhook's JSON array.
type Record struct {
	// ID names the event; the same in every destination and every retry.
	ID             string         `json:"id"`
	SubscriptionID string         `json:"subscription_id"`
	AccountID      string         `json:"account_id"`
	EventType      string         `json:"event_type"`
	EventTimestamp time.Time      `json:"event_timestamp"`
	Object         map[string]any `json:"object"`
}

// Destination kinds.
const (
	KindWebhook = "webhook"
	KindFile    = "file"
)

// Subscription sends an account's events of the selected types to its destinations.
type Subscription struct {
	// ID names the subscription (required).
	ID string
	// AccountID is the account whose events it receives (required).
	AccountID string
	// Types are the event types it receives (at least one; see ValidTypes).
	Types []string
	// Fields are the fields kept in each event (empty: all of them).
	Fields []string
	// Destinations are where the events go (at least one).
	Destinations []Destination
}

// Destination is where a subscription's events are delivered.
type Destination struct {
	// Kind is "webhook" or "file".
	Kind string
	// URL (webhook) receives POSTs of JSON arrays of records; http or https.
	URL string
	// Secret (webhook, required) keys the Ferry-Signature HMAC; see the package doc.
	Secret string
	// Path (file) is the absolute path of the file the records are appended to, one per
	// line.
	Path string
}

// Validate checks a subscription and names the first bad field and the fix.
func (s Subscription) Validate() error {
	if strings.TrimSpace(s.ID) == "" {
		return errors.New("id: required")
	}
	if strings.TrimSpace(s.AccountID) == "" {
		return errors.New("account_id: required")
	}
	if len(s.Types) == 0 {
		return fmt.Errorf("event_types: select at least one event type; known: %s", strings.Join(validTypes, ", "))
	}
	known := map[string]bool{}
	for i, t := range s.Types {
		fs, ok := typeFields[t]
		if !ok {
			return fmt.Errorf("event_types[%d]: unknown event type %q; known: %s", i, t, strings.Join(validTypes, ", "))
		}
		for _, f := range fs {
			known[f] = true
		}
	}
	for i, f := range s.Fields {
		if !known[f] {
			names := make([]string, 0, len(known))
			for k := range known {
				names = append(names, k)
			}
			slices.Sort(names)
			return fmt.Errorf("fields[%d]: %q is not a field of the selected types; known: %s", i, f, strings.Join(names, ", "))
		}
	}
	if len(s.Destinations) == 0 {
		return errors.New("destinations: add at least one (a webhook or a file)")
	}
	for i, d := range s.Destinations {
		if err := d.validate(); err != nil {
			return fmt.Errorf("destinations[%d].%w", i, err)
		}
	}
	return nil
}

func (d Destination) validate() error {
	switch d.Kind {
	case KindWebhook:
		if d.Path != "" {
			return errors.New("path: only a file destination has a path")
		}
		if d.URL == "" {
			return errors.New("url: required for a webhook")
		}
		u, err := url.Parse(d.URL)
		if err != nil {
			return fmt.Errorf("url: %w", err)
		}
		if u.Scheme != "http" && u.Scheme != "https" {
			return errors.New("url: want http or https")
		}
		if u.Host == "" {
			return errors.New("url: want a host, like https://example.com/hooks/ferry")
		}
		if d.Secret == "" {
			return errors.New("secret: required for a webhook (it signs every request)")
		}
	case KindFile:
		if d.URL != "" || d.Secret != "" {
			return errors.New("url: only a webhook destination has a url and a secret")
		}
		if d.Path == "" {
			return errors.New("path: required for a file")
		}
		if !filepath.IsAbs(d.Path) {
			return fmt.Errorf("path: want an absolute path, got %q", d.Path)
		}
	default:
		return fmt.Errorf("kind: want %q or %q, got %q", KindWebhook, KindFile, d.Kind)
	}
	return nil
}
