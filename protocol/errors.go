package protocol

import "fmt"

// ErrorCode is carried in Error messages, BindResp, StreamResp, and as the QUIC
// application error code of a closed session or a reset stream.
type ErrorCode uint16

// Error codes. Values are part of the wire protocol: never renumber.
const (
	CodeOK              ErrorCode = 0
	CodeProtocol        ErrorCode = 1  // malformed or unexpected frame
	CodeVersionMismatch ErrorCode = 2  // no common protocol version
	CodeAuthFailed      ErrorCode = 3  // authtoken missing, unknown or revoked
	CodeBindConflict    ErrorCode = 4  // the name or address is already bound
	CodeBindRefused     ErrorCode = 5  // the bind is invalid or not allowed
	CodeNoCapacity      ErrorCode = 6  // no free port, or a limit was reached
	CodeTunnelGone      ErrorCode = 7  // the stream names a tunnel the agent no longer serves
	CodeUpstreamRefused ErrorCode = 8  // the agent could not reach its upstream
	CodeInternal        ErrorCode = 9  // a bug or unexpected failure
	CodeShuttingDown    ErrorCode = 10 // the sender is going away
	CodeRateLimited     ErrorCode = 11 // too many attempts; retry later
	CodeClosed          ErrorCode = 12 // normal close of a stream or session
)

var codeNames = map[ErrorCode]string{
	CodeOK: "ok", CodeProtocol: "protocol_error", CodeVersionMismatch: "version_mismatch",
	CodeAuthFailed: "auth_failed", CodeBindConflict: "bind_conflict", CodeBindRefused: "bind_refused",
	CodeNoCapacity: "no_capacity", CodeTunnelGone: "tunnel_gone", CodeUpstreamRefused: "upstream_refused",
	CodeInternal: "internal_error", CodeShuttingDown: "shutting_down", CodeRateLimited: "rate_limited",
	CodeClosed: "closed",
}

func (c ErrorCode) String() string {
	if n, ok := codeNames[c]; ok {
		return n
	}
	return fmt.Sprintf("error_%d", uint16(c))
}

// Error is a protocol-level error with a code the receiver can act on and a message for people.
// Sent by either side as a TypeError frame; also embedded in BindResp.
type Error struct {
	Code    ErrorCode `json:"code"`
	Message string    `json:"message"`
}

func (e *Error) Error() string {
	if e.Message == "" {
		return e.Code.String()
	}
	return e.Message
}

// Errorf returns an *Error with a formatted message.
func Errorf(code ErrorCode, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}
