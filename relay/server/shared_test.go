package server_test

import (
	"errors"
	"testing"
	"time"

	"github.com/ferrytunnel/ferry/agent/forward"
	"github.com/ferrytunnel/ferry/agent/session"
	"github.com/ferrytunnel/ferry/relay/server"
	"github.com/ferrytunnel/ferry/relay/store"
)

// TestChangesFromAnotherRelay: a change another relay sharing the store makes through its
// API (here: written to the store and the revision bumped, as that relay's API does)
// reaches this relay within a poll, with no reload call: a new reservation can be bound,
// a deleted one takes its tunnel offline, and a deleted authtoken ends its session.
func TestChangesFromAnotherRelay(t *testing.T) {
	old := server.StorePoll
	server.StorePoll = 50 * time.Millisecond
	t.Cleanup(func() { server.StorePoll = old })
	r := newRelay(t)
	ctx := t.Context()
	other := func(change func() error) { // what the other relay's API does
		t.Helper()
		if err := change(); err != nil {
			t.Fatal(err)
		}
		if _, err := r.Store.Bump(ctx); err != nil {
			t.Fatal(err)
		}
	}
	up := named(t, "shop")
	var d store.ReservedDomain
	other(func() (err error) {
		d, err = r.Store.CreateReservedDomain(ctx, store.ReservedDomain{AccountID: r.Account, Domain: "shop.example.test"})
		return err
	})
	var a *agentEnv
	waitFor(t, "the reservation made elsewhere to be usable", func() bool {
		var err error
		a, err = r.tryAgent(r.agentConfig(&forward.Tunnel{Name: "shop", Proto: "http", Addr: up, Domain: "shop.example.test"}))
		return err == nil
	})
	other(func() error { return r.Store.DeleteReservedDomain(ctx, r.Account, d.ID) })
	var se *session.Error
	if err := a.waitEnded(t, "the agent whose reservation was deleted elsewhere"); !errors.As(err, &se) || se.Kind != session.KindBind {
		t.Errorf("agent ended with %v, want its tunnel refused after the reservation went", err)
	}

	cred, err := r.Store.CreateCredential(ctx, r.Account, "elsewhere", "")
	if err != nil {
		t.Fatal(err)
	}
	cfg := r.agentConfig(&forward.Tunnel{Name: "web", Proto: "http", Addr: up})
	cfg.Authtoken = cred.Token
	b, err := r.tryAgent(cfg)
	if err != nil {
		t.Fatal(err)
	}
	keep := r.startAgent(&forward.Tunnel{Name: "keep", Proto: "http", Addr: up}) // another token
	other(func() error { return r.Store.DeleteCredential(ctx, r.Account, cred.ID) })
	if err := b.waitEnded(t, "the agent whose authtoken was deleted elsewhere"); !errors.As(err, &se) || se.Kind != session.KindAuth {
		t.Errorf("agent ended with %v, want its authtoken refused", err)
	}
	if !keep.client.Connected() {
		t.Error("an agent with another authtoken lost its session")
	}
}
