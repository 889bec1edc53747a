package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/ferrytunnel/ferry/relay/events"
	"github.com/ferrytunnel/ferry/relay/router"
	"github.com/ferrytunnel/ferry/relay/store"
)

// Event subscriptions are kept as documents like edges.
const (
	kindEventSubscription   = "event_subscriptions"
	prefixEventSubscription = "esb"
)

// EventSubscription is an event_subscriptions document.
type EventSubscription struct {
	router.Common
	EventTypes   []string           `json:"event_types"`
	Fields       []string           `json:"fields,omitempty"`
	Destinations []EventDestination `json:"destinations"`
}

// EventDestination is where a subscription's events go: a signed webhook or a file.
type EventDestination struct {
	Kind   string `json:"kind"`
	URL    string `json:"url,omitempty"`
	Secret string `json:"secret,omitempty"`
	Path   string `json:"path,omitempty"`
}

func (d EventSubscription) subscription(id, account string) events.Subscription {
	s := events.Subscription{ID: id, AccountID: account, Types: d.EventTypes, Fields: d.Fields}
	for _, dst := range d.Destinations {
		s.Destinations = append(s.Destinations, events.Destination{Kind: dst.Kind, URL: dst.URL, Secret: dst.Secret, Path: dst.Path})
	}
	return s
}

// Subscriptions turns the stored event_subscriptions documents into the bus's subscriptions.
func Subscriptions(objs []store.Object) []events.Subscription {
	var out []events.Subscription
	for _, o := range objs {
		if o.Kind != kindEventSubscription {
			continue
		}
		var d EventSubscription
		if json.Unmarshal(o.Doc, &d) == nil {
			out = append(out, d.subscription(o.ID, o.AccountID))
		}
	}
	return out
}

func checkEventSubscription(a *API, r *http.Request, account, self string, raw []byte) (any, *Error) {
	var d EventSubscription
	if e := strict(raw, &d); e != nil {
		return nil, e
	}
	if len(d.Destinations) > 10 {
		return nil, badField("destinations", "at most 10")
	}
	if self != "" { // a subscription sent back as shown keeps its stored secrets
		if o, err := a.cfg.Store.GetObject(r.Context(), account, kindEventSubscription, self); err == nil {
			var old EventSubscription
			json.Unmarshal(o.Doc, &old) //nolint:errcheck
			for i := range d.Destinations {
				if d.Destinations[i].Secret != hidden {
					continue
				}
				if i >= len(old.Destinations) || old.Destinations[i].URL != d.Destinations[i].URL {
					return nil, badField(fmt.Sprintf("destinations[%d].secret", i), "send the secret itself (%s is how answers hide it)", hidden)
				}
				d.Destinations[i].Secret = old.Destinations[i].Secret
			}
		}
	} else {
		for i, dst := range d.Destinations {
			if dst.Secret == hidden {
				return nil, badField(fmt.Sprintf("destinations[%d].secret", i), "send the secret itself (%s is how answers hide it)", hidden)
			}
		}
	}
	id := self
	if id == "" {
		id = "new"
	}
	sub := d.subscription(id, account)
	check := sub.Validate
	if a.cfg.Events != nil {
		check = func() error { return a.cfg.Events.Check(sub) }
	}
	if err := check(); err != nil {
		// The events package's messages start with the field's JSON path ("destinations[0].url: ...").
		field, _, _ := strings.Cut(err.Error(), ": ")
		if strings.ContainsAny(field, " \"") {
			field = ""
		}
		return nil, &Error{Status: http.StatusBadRequest, Code: "FERRY_BAD_FIELD", Field: field, Msg: fmt.Sprintf("event subscription: %v", err)}
	}
	return d, checkCommon(d.Common)
}

// hideSecrets hides webhook secrets of a subscription.
func hideSecrets(doc map[string]any) {
	ds, _ := doc["destinations"].([]any)
	for _, d := range ds {
		if m, ok := d.(map[string]any); ok && m["secret"] != nil {
			m["secret"] = hidden
		}
	}
}
