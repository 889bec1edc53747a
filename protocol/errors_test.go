package protocol_test

import (
	"testing"

	"github.com/ferrytunnel/ferry/protocol"
)

func TestErrorCodeString(t *testing.T) {
	tests := []struct {
		code protocol.ErrorCode
		want string
	}{
		{protocol.CodeOK, "ok"},
		{protocol.CodeProtocol, "protocol_error"},
		{protocol.CodeVersionMismatch, "version_mismatch"},
		{protocol.CodeAuthFailed, "auth_failed"},
		{protocol.CodeBindConflict, "bind_conflict"},
		{protocol.CodeBindRefused, "bind_refused"},
		{protocol.CodeNoCapacity, "no_capacity"},
		{protocol.CodeTunnelGone, "tunnel_gone"},
		{protocol.CodeUpstreamRefused, "upstream_refused"},
		{protocol.CodeInternal, "internal_error"},
		{protocol.CodeShuttingDown, "shutting_down"},
		{protocol.CodeRateLimited, "rate_limited"},
		{protocol.CodeClosed, "closed"},
		{13, "error_13"},
		{0xFFFF, "error_65535"},
	}
	for _, tt := range tests {
		if got := tt.code.String(); got != tt.want {
			t.Errorf("ErrorCode(%d).String() = %q, want %q", uint16(tt.code), got, tt.want)
		}
	}
}

// The codes are part of the wire protocol: a renumbering breaks every deployed peer.
func TestErrorCodeValues(t *testing.T) {
	tests := []struct {
		code protocol.ErrorCode
		want uint16
	}{
		{protocol.CodeOK, 0}, {protocol.CodeProtocol, 1}, {protocol.CodeVersionMismatch, 2},
		{protocol.CodeAuthFailed, 3}, {protocol.CodeBindConflict, 4}, {protocol.CodeBindRefused, 5},
		{protocol.CodeNoCapacity, 6}, {protocol.CodeTunnelGone, 7}, {protocol.CodeUpstreamRefused, 8},
		{protocol.CodeInternal, 9}, {protocol.CodeShuttingDown, 10}, {protocol.CodeRateLimited, 11},
		{protocol.CodeClosed, 12},
	}
	for _, tt := range tests {
		if uint16(tt.code) != tt.want {
			t.Errorf("%v = %d, want %d", tt.code, uint16(tt.code), tt.want)
		}
	}
}

func TestErrorError(t *testing.T) {
	tests := []struct {
		err  *protocol.Error
		want string
	}{
		{&protocol.Error{Code: protocol.CodeAuthFailed}, "auth_failed"},
		{&protocol.Error{Code: 40}, "error_40"},
		{&protocol.Error{Code: protocol.CodeAuthFailed, Message: "bad token"}, "bad token"},
		{protocol.Errorf(protocol.CodeNoCapacity, "no port in %d-%d", 1, 2), "no port in 1-2"},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("%+v.Error() = %q, want %q", *tt.err, got, tt.want)
		}
	}
}

func TestErrorf(t *testing.T) {
	e := protocol.Errorf(protocol.CodeBindConflict, "name %q is taken", "web")
	if e.Code != protocol.CodeBindConflict {
		t.Errorf("Errorf code = %v, want %v", e.Code, protocol.CodeBindConflict)
	}
	if want := `name "web" is taken`; e.Message != want {
		t.Errorf("Errorf message = %q, want %q", e.Message, want)
	}
}
