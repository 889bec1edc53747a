package protocol

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// ALPN is the TLS application protocol the agent and the relay negotiate.
const ALPN = "ferry/1"

// DataALPN is the ALPN of a direct data connection: over the TCP fallback, an agent also
// opens TLS connections that each carry one stream, without the multiplexer (see
// DataJoin). The relay uses one for a public connection when it has one idle.
const DataALPN = "ferry-data/1"

// Version is the highest protocol version this build speaks; MinVersion the lowest.
const (
	Version    uint16 = 1
	MinVersion uint16 = 1
)

// Frame size limits, checked against the declared length before any allocation.
const (
	HeaderLen       = 5
	MaxPreAuthFrame = 4 << 10   // Hello and Auth, before the peer is known
	MaxControlFrame = 256 << 10 // any control message after authentication (Bind carries CA PEMs)
	MaxStreamFrame  = 1 << 10   // StreamHeader and StreamResp
)

// MsgType identifies a frame's body.
type MsgType uint8

// Message types. Each comment says who sends it, when, and what answers it.
const (
	// TypeHello: agent → relay, first frame on the control stream. Answered by HelloResp or Error.
	TypeHello MsgType = 1
	// TypeHelloResp: relay → agent, the selected version.
	TypeHelloResp MsgType = 2
	// TypeAuth: agent → relay, after HelloResp. Answered by AuthResp or Error.
	TypeAuth MsgType = 3
	// TypeAuthResp: relay → agent, the session is authenticated.
	TypeAuthResp MsgType = 4
	// TypeBind: agent → relay, start a tunnel. Answered by BindResp.
	TypeBind MsgType = 5
	// TypeBindResp: relay → agent, the public URLs or the reason the bind was refused.
	TypeBindResp MsgType = 6
	// TypeUnbind: agent → relay, stop a tunnel. Answered by UnbindResp.
	TypeUnbind MsgType = 7
	// TypeUnbindResp: relay → agent, the tunnel is stopped.
	TypeUnbindResp MsgType = 8
	// TypeHeartbeat: either side, any time after AuthResp. Answered by HeartbeatAck.
	TypeHeartbeat MsgType = 9
	// TypeHeartbeatAck: echo of a Heartbeat.
	TypeHeartbeatAck MsgType = 10
	// TypeGoAway: relay → agent, the relay is shutting down; reconnect. Not answered.
	TypeGoAway MsgType = 11
	// TypeError: either side, a fatal session error; the sender closes the session after it.
	TypeError MsgType = 12
	// TypeDataJoin: agent → relay, first and only frame the agent sends on a new data
	// connection (ALPN DataALPN) before the relay uses it; not answered. The relay's
	// first bytes on it, whenever a public connection arrives, are a StreamHeader.
	TypeDataJoin MsgType = 13

	// TypeStreamHeader: relay → agent, first frame on every data stream. Answered by StreamResp.
	TypeStreamHeader MsgType = 32
	// TypeStreamResp: agent → relay, first frame the agent writes on a data stream.
	TypeStreamResp MsgType = 33
)

var typeNames = map[MsgType]string{
	TypeHello: "Hello", TypeHelloResp: "HelloResp", TypeAuth: "Auth", TypeAuthResp: "AuthResp",
	TypeBind: "Bind", TypeBindResp: "BindResp", TypeUnbind: "Unbind", TypeUnbindResp: "UnbindResp",
	TypeHeartbeat: "Heartbeat", TypeHeartbeatAck: "HeartbeatAck", TypeGoAway: "GoAway", TypeError: "Error",
	TypeDataJoin:     "DataJoin",
	TypeStreamHeader: "StreamHeader", TypeStreamResp: "StreamResp",
}

func (t MsgType) String() string {
	if n, ok := typeNames[t]; ok {
		return n
	}
	return fmt.Sprintf("MsgType(%d)", uint8(t))
}

// ErrFrameTooLarge is returned when a frame declares a body larger than the reader allows.
var ErrFrameTooLarge = errors.New("frame too large")

// ErrUnknownType is returned for a message type the reader does not know.
var ErrUnknownType = errors.New("unknown message type")

// ReadFrame reads one frame. A body longer than limit is refused before allocation.
func ReadFrame(r io.Reader, limit uint32) (MsgType, []byte, error) {
	var hdr [HeaderLen]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	t := MsgType(hdr[0])
	n := binary.BigEndian.Uint32(hdr[1:])
	if n > limit {
		return t, nil, fmt.Errorf("%v frame of %d bytes, limit %d: %w", t, n, limit, ErrFrameTooLarge)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return t, nil, fmt.Errorf("read %v body: %w", t, err)
	}
	return t, body, nil
}

// AppendFrame appends a frame with the given type and body to b.
func AppendFrame(b []byte, t MsgType, body []byte) []byte {
	b = append(b, byte(t), 0, 0, 0, 0)
	binary.BigEndian.PutUint32(b[len(b)-4:], uint32(len(body)))
	return append(b, body...)
}

// WriteFrame writes one frame in a single Write call.
func WriteFrame(w io.Writer, t MsgType, body []byte) error {
	_, err := w.Write(AppendFrame(make([]byte, 0, HeaderLen+len(body)), t, body))
	return err
}

// WriteMsg encodes m as JSON and writes it as a frame of type t.
func WriteMsg(w io.Writer, t MsgType, m any) error {
	body, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode %v: %w", t, err)
	}
	return WriteFrame(w, t, body)
}

// ReadMsg reads one frame and, if it has type want, decodes it into m. An Error frame
// is returned as *Error. Any other type is a protocol error.
func ReadMsg(r io.Reader, limit uint32, want MsgType, m any) error {
	t, body, err := ReadFrame(r, limit)
	if err != nil {
		return err
	}
	switch t {
	case want:
		return Decode(t, body, m)
	case TypeError:
		var e Error
		if err := Decode(t, body, &e); err != nil {
			return err
		}
		return &e
	default:
		return &Error{Code: CodeProtocol, Message: fmt.Sprintf("got %v, want %v", t, want)}
	}
}

// Decode decodes a JSON control body of type t into m. Unknown fields are ignored so that
// a newer peer can add optional fields without a version bump.
func Decode(t MsgType, body []byte, m any) error {
	if err := json.Unmarshal(body, m); err != nil {
		return &Error{Code: CodeProtocol, Message: fmt.Sprintf("malformed %v: %v", t, err)}
	}
	if v, ok := m.(interface{ validate() error }); ok {
		if err := v.validate(); err != nil {
			return &Error{Code: CodeProtocol, Message: fmt.Sprintf("invalid %v: %v", t, err)}
		}
	}
	return nil
}
