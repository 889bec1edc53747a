//go:build linux

package main

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/ferrytunnel/ferry/agent/forward"
	"github.com/ferrytunnel/ferry/agent/session"
)

// inprocAgent is an agent session inside the bench process, binding many tunnels at once
// (the command line binds one per process).
type inprocAgent struct {
	cancel context.CancelFunc
	done   chan error
}

// bindTunnels starts an in-process agent that binds n http tunnels to upstream and
// returns once the relay has bound every one of them (or limit has passed).
func bindTunnels(ctx context.Context, relay, transport, token string, roots *x509.CertPool, upstream string, n int, limit time.Duration) (*inprocAgent, error) {
	tunnels := make([]*forward.Tunnel, n)
	for i := range tunnels {
		tunnels[i] = &forward.Tunnel{Name: "bench-" + strconv.Itoa(i), Proto: "http", Addr: upstream}
	}
	ready := make(chan int, 1)
	client := session.New(session.Config{
		Relay: relay, Authtoken: token, RootCAs: roots, Tunnels: tunnels, Transport: transport,
		Log: slog.New(slog.DiscardHandler), Version: "bench", ConnectAttempts: 1,
		OnReady: func(st []session.Status) {
			bound := 0
			for _, s := range st {
				if len(s.URLs) > 0 {
					bound++
				}
			}
			select {
			case ready <- bound:
			default:
			}
		},
	})
	actx, cancel := context.WithCancel(ctx)
	a := &inprocAgent{cancel: cancel, done: make(chan error, 1)}
	go func() { a.done <- client.Run(actx) }()
	select {
	case bound := <-ready:
		if bound != n {
			a.stop() //nolint:errcheck // the bind count is the error
			return nil, fmt.Errorf("in-process agent: %d of %d tunnels bound", bound, n)
		}
		return a, nil
	case err := <-a.done:
		cancel()
		if err == nil {
			err = context.Cause(ctx)
		}
		return nil, fmt.Errorf("in-process agent with %d tunnels: %w", n, err)
	case <-time.After(limit):
		a.stop() //nolint:errcheck // the timeout is the error
		return nil, fmt.Errorf("in-process agent: %d tunnels not bound within %s", n, limit)
	}
}

// stop ends the session (the relay then releases its tunnels) and waits for it.
func (a *inprocAgent) stop() error {
	a.cancel()
	select {
	case err := <-a.done:
		return err
	case <-time.After(15 * time.Second):
		return errors.New("in-process agent did not stop within 15s")
	}
}
