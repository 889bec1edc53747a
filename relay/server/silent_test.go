package server_test

import (
	"context"
	"crypto/tls"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/ferrytunnel/ferry/protocol"
	"github.com/ferrytunnel/ferry/protocol/transport"
	"github.com/ferrytunnel/ferry/relay/config"
	"github.com/ferrytunnel/ferry/relay/server/servertest"
)

// TestSilentAgentFreed: an agent that stops talking (killed, frozen, its network gone)
// while its QUIC connection still acknowledges packets loses its names after the silence
// limit, so the port can be bound again.
func TestSilentAgentFreed(t *testing.T) {
	r := servertest.Start(t, servertest.Options{Log: testLogger(t),
		Configure: func(c *config.Config) { c.AgentSilence = "1s" }})
	// A hand-made agent: Hello, Auth, one Bind, then silence.
	sess, err := transport.DialQUIC(t.Context(), r.Srv.QUICAddr().String(), &tls.Config{ServerName: "127.0.0.1", RootCAs: r.CA.Pool, MinVersion: tls.VersionTLS13})
	if err != nil {
		t.Fatal(err)
	}
	defer sess.CloseWithError(0, "")
	ctrl, err := sess.OpenStream(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(protocol.WriteMsg(ctrl, protocol.TypeHello, protocol.NewHello("silent")))
	var hr protocol.HelloResp
	must(protocol.ReadMsg(ctrl, protocol.MaxControlFrame, protocol.TypeHelloResp, &hr))
	must(protocol.WriteMsg(ctrl, protocol.TypeAuth, &protocol.Auth{Authtoken: r.Token}))
	var ar protocol.AuthResp
	must(protocol.ReadMsg(ctrl, protocol.MaxControlFrame, protocol.TypeAuthResp, &ar))
	must(protocol.WriteMsg(ctrl, protocol.TypeBind, &protocol.Bind{TunnelID: 1, Name: "quiet", Proto: protocol.ProtoTCP}))
	var br protocol.BindResp
	must(protocol.ReadMsg(ctrl, protocol.MaxControlFrame, protocol.TypeBindResp, &br))
	if br.Error != nil || len(br.URLs) != 1 {
		t.Fatalf("bind = %+v", br)
	}
	_, p, _ := net.SplitHostPort(br.URLs[0][len("tcp://"):])
	port, _ := strconv.Atoi(p)
	if r.Srv.Table().Port(port) == nil {
		t.Fatalf("port %d not bound", port)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	for r.Srv.Table().Port(port) != nil {
		if ctx.Err() != nil {
			t.Fatalf("the silent agent still holds port %d after 5 s (silence limit 1 s)", port)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestAgentStreamLimit: an agent may hold only a few streams open towards the relay (it
// needs one); more wait for credit instead of piling up unaccepted on the relay.
func TestAgentStreamLimit(t *testing.T) {
	r := servertest.Start(t, servertest.Options{Log: testLogger(t)})
	sess, err := transport.DialQUIC(t.Context(), r.Srv.QUICAddr().String(), &tls.Config{ServerName: "127.0.0.1", RootCAs: r.CA.Pool, MinVersion: tls.VersionTLS13})
	if err != nil {
		t.Fatal(err)
	}
	defer sess.CloseWithError(0, "")
	opened := 0
	for range transport.MaxAgentStreams + 3 {
		ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
		st, err := sess.OpenStream(ctx)
		cancel()
		if err != nil {
			break
		}
		st.Write([]byte{0}) //nolint:errcheck // a stream exists for the peer once it carries data
		opened++
	}
	if opened != transport.MaxAgentStreams {
		t.Errorf("an agent opened %d streams towards the relay, want the limit %d", opened, transport.MaxAgentStreams)
	}
}
