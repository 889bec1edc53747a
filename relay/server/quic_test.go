package server_test

import (
	"context"
	"crypto/tls"

	"github.com/ferrytunnel/ferry/protocol/transport"
)

func dialQUIC(ctx context.Context, addr string, conf *tls.Config) (transport.Session, error) {
	return transport.DialQUIC(ctx, addr, conf)
}
