package protocol_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/ferrytunnel/ferry/protocol"
)

func TestNegotiate(t *testing.T) {
	tests := []struct {
		name                                   string
		agentMin, agentMax, relayMin, relayMax uint16
		want                                   uint16
		wantErr                                string // substring; "" means success
	}{
		{"same single version", 1, 1, 1, 1, 1, ""},
		{"same range", 1, 3, 1, 3, 3, ""},
		{"agent newer, overlap", 2, 5, 1, 3, 3, ""},
		{"relay newer, overlap", 1, 3, 2, 5, 3, ""},
		{"agent range inside relay range", 2, 3, 1, 9, 3, ""},
		{"relay range inside agent range", 1, 9, 4, 6, 6, ""},
		{"overlap at one version, agent low", 1, 2, 2, 4, 2, ""},
		{"overlap at one version, agent high", 2, 4, 1, 2, 2, ""},
		{"agent too old", 1, 1, 2, 3, 0, "upgrade the ferry agent"},
		{"agent far too old", 1, 2, 5, 9, 0, "upgrade the ferry agent"},
		{"relay too old", 2, 3, 1, 1, 0, "upgrade ferry-relay"},
		{"relay far too old", 5, 9, 1, 2, 0, "upgrade ferry-relay"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := protocol.Negotiate(tt.agentMin, tt.agentMax, tt.relayMin, tt.relayMax)
			if tt.wantErr == "" {
				if err != nil || got != tt.want {
					t.Fatalf("Negotiate(%d, %d, %d, %d) = %d, %v; want %d, nil", tt.agentMin, tt.agentMax, tt.relayMin, tt.relayMax, got, err, tt.want)
				}
				return
			}
			if got != 0 {
				t.Errorf("Negotiate(%d, %d, %d, %d) version = %d, want 0", tt.agentMin, tt.agentMax, tt.relayMin, tt.relayMax, got)
			}
			var pe *protocol.Error
			if !errors.As(err, &pe) || pe.Code != protocol.CodeVersionMismatch {
				t.Fatalf("Negotiate(%d, %d, %d, %d) error = %T %v, want *protocol.Error with CodeVersionMismatch", tt.agentMin, tt.agentMax, tt.relayMin, tt.relayMax, err, err)
			}
			if !strings.Contains(pe.Message, tt.wantErr) {
				t.Errorf("Negotiate(%d, %d, %d, %d) error = %q, want it to contain %q", tt.agentMin, tt.agentMax, tt.relayMin, tt.relayMax, pe.Message, tt.wantErr)
			}
		})
	}
}

func TestNegotiateThisBuild(t *testing.T) {
	got, err := protocol.Negotiate(protocol.MinVersion, protocol.Version, protocol.MinVersion, protocol.Version)
	if err != nil || got != protocol.Version {
		t.Fatalf("Negotiate(this build with itself) = %d, %v; want %d, nil", got, err, protocol.Version)
	}
}

func TestDecodeValid(t *testing.T) {
	tests := []struct {
		name string
		typ  protocol.MsgType
		body string
		m    any
	}{
		{"hello", protocol.TypeHello, `{"version":1,"min_version":1,"agent_version":"0.1.0"}`, &protocol.Hello{}},
		{"hello, min 0", protocol.TypeHello, `{"version":2}`, &protocol.Hello{}},
		{"hello, unknown field ignored", protocol.TypeHello, `{"version":1,"min_version":1,"future":true}`, &protocol.Hello{}},
		{"auth", protocol.TypeAuth, `{"authtoken":"fy_x"}`, &protocol.Auth{}},
		{"bind http", protocol.TypeBind, `{"tunnel_id":1,"proto":"http"}`, &protocol.Bind{}},
		{"bind tcp", protocol.TypeBind, `{"tunnel_id":1,"proto":"tcp","remote_addr":":10000"}`, &protocol.Bind{}},
		{"bind tls edge", protocol.TypeBind, `{"proto":"tls","terminate_at":"edge"}`, &protocol.Bind{}},
		{"bind tls agent", protocol.TypeBind, `{"proto":"tls","terminate_at":"agent"}`, &protocol.Bind{}},
		{"bind tls upstream", protocol.TypeBind, `{"proto":"tls","terminate_at":"upstream"}`, &protocol.Bind{}},
		{"bind domain of 253 bytes", protocol.TypeBind, `{"proto":"http","domain":"` + strings.Repeat("a", 253) + `"}`, &protocol.Bind{}},
		{"heartbeat", protocol.TypeHeartbeat, `{"seq":18446744073709551615}`, &protocol.Heartbeat{}},
		{"goaway", protocol.TypeGoAway, `{"reason":"restart"}`, &protocol.GoAway{}},
		{"error", protocol.TypeError, `{"code":3,"message":"no"}`, &protocol.Error{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := protocol.Decode(tt.typ, []byte(tt.body), tt.m); err != nil {
				t.Fatalf("Decode(%v, %s) error = %v, want nil", tt.typ, tt.body, err)
			}
		})
	}
}

func TestDecodeInvalid(t *testing.T) {
	tests := []struct {
		name    string
		typ     protocol.MsgType
		body    string
		m       any
		wantErr string
	}{
		{"hello, version 0", protocol.TypeHello, `{"version":0,"min_version":0}`, &protocol.Hello{}, "invalid Hello: version range 0..0 is empty"},
		{"hello, empty body", protocol.TypeHello, `{}`, &protocol.Hello{}, "invalid Hello: version range 0..0 is empty"},
		{"hello, min above max", protocol.TypeHello, `{"version":1,"min_version":2}`, &protocol.Hello{}, "invalid Hello: version range 2..1 is empty"},
		{"hello, version negative", protocol.TypeHello, `{"version":-1}`, &protocol.Hello{}, "malformed Hello"},
		{"hello, version too large", protocol.TypeHello, `{"version":65536}`, &protocol.Hello{}, "malformed Hello"},
		{"auth, empty token", protocol.TypeAuth, `{"authtoken":""}`, &protocol.Auth{}, "invalid Auth: authtoken is empty"},
		{"auth, no token", protocol.TypeAuth, `{}`, &protocol.Auth{}, "invalid Auth: authtoken is empty"},
		{"auth, null", protocol.TypeAuth, `null`, &protocol.Auth{}, "invalid Auth: authtoken is empty"},
		{"bind, no proto", protocol.TypeBind, `{"tunnel_id":1}`, &protocol.Bind{}, `invalid Bind: proto "": want http, tcp, tls or labeled`},
		{"bind, bad proto", protocol.TypeBind, `{"proto":"udp"}`, &protocol.Bind{}, `invalid Bind: proto "udp": want http, tcp, tls or labeled`},
		{"bind, proto in upper case", protocol.TypeBind, `{"proto":"HTTP"}`, &protocol.Bind{}, `proto "HTTP"`},
		{"bind, bad terminate_at", protocol.TypeBind, `{"proto":"tls","terminate_at":"client"}`, &protocol.Bind{}, `invalid Bind: terminate_at "client": want edge, agent or upstream`},
		{"bind, domain of 254 bytes", protocol.TypeBind, `{"proto":"http","domain":"` + strings.Repeat("a", 254) + `"}`, &protocol.Bind{}, "invalid Bind: domain is 254 bytes, at most 253"},
		{"bind, domain of 4000 bytes", protocol.TypeBind, `{"proto":"http","domain":"` + strings.Repeat("a", 4000) + `"}`, &protocol.Bind{}, "domain is 4000 bytes"},
		{"malformed json", protocol.TypeBind, `{"proto":`, &protocol.Bind{}, "malformed Bind"},
		{"wrong json type", protocol.TypeHeartbeat, `{"seq":"1"}`, &protocol.Heartbeat{}, "malformed Heartbeat"},
		{"not an object", protocol.TypeGoAway, `[1]`, &protocol.GoAway{}, "malformed GoAway"},
		{"empty body", protocol.TypeGoAway, ``, &protocol.GoAway{}, "malformed GoAway"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := protocol.Decode(tt.typ, []byte(tt.body), tt.m)
			var pe *protocol.Error
			if !errors.As(err, &pe) {
				t.Fatalf("Decode(%v, %.60s) error = %T %v, want *protocol.Error", tt.typ, tt.body, err, err)
			}
			if pe.Code != protocol.CodeProtocol {
				t.Errorf("Decode(%v, %.60s) code = %v, want %v", tt.typ, tt.body, pe.Code, protocol.CodeProtocol)
			}
			if !strings.Contains(pe.Message, tt.wantErr) {
				t.Errorf("Decode(%v, %.60s) error = %q, want it to contain %q", tt.typ, tt.body, pe.Message, tt.wantErr)
			}
		})
	}
}
