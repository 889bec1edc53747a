package protocol

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
)

// StreamProto says what the bytes after a StreamHeader are.
type StreamProto uint8

// Stream protocols.
const (
	// StreamHTTP: HTTP/1.1 requests from the relay's proxy for an http tunnel.
	StreamHTTP StreamProto = 1
	// StreamTCP: raw bytes of a tcp tunnel's public connection.
	StreamTCP StreamProto = 2
	// StreamTLS: the raw TLS stream of a tls tunnel, ClientHello included (agent or upstream terminates).
	StreamTLS StreamProto = 3
	// StreamTLSTerminated: plaintext of a tls tunnel whose TLS the relay terminated at the edge.
	StreamTLSTerminated StreamProto = 4
)

func (p StreamProto) String() string {
	switch p {
	case StreamHTTP:
		return "http"
	case StreamTCP:
		return "tcp"
	case StreamTLS:
		return "tls"
	case StreamTLSTerminated:
		return "tls-terminated"
	}
	return fmt.Sprintf("StreamProto(%d)", uint8(p))
}

// StreamHeader is the first frame on every relay-opened stream (TypeStreamHeader).
//
// Binary body layout:
//
//	tunnel_id uint32 BE | proto uint8 | len uint8 | client_addr | len uint8 | host
type StreamHeader struct {
	TunnelID uint32
	Proto    StreamProto
	// ClientAddr is the public client's address, "ip:port".
	ClientAddr string
	// Host is the SNI (tls) or Host (http) the client asked for; "" for tcp.
	Host string
}

var errShortBody = errors.New("body too short")

// AppendFrame appends h as a complete frame.
func (h *StreamHeader) AppendFrame(b []byte) ([]byte, error) {
	if len(h.ClientAddr) > 255 || len(h.Host) > 255 {
		return b, fmt.Errorf("stream header: client address or host longer than 255 bytes")
	}
	n := 4 + 1 + 1 + len(h.ClientAddr) + 1 + len(h.Host)
	b = append(b, byte(TypeStreamHeader), 0, 0, 0, 0)
	binary.BigEndian.PutUint32(b[len(b)-4:], uint32(n))
	b = binary.BigEndian.AppendUint32(b, h.TunnelID)
	b = append(b, byte(h.Proto), byte(len(h.ClientAddr)))
	b = append(b, h.ClientAddr...)
	b = append(b, byte(len(h.Host)))
	return append(b, h.Host...), nil
}

// UnmarshalBinary decodes a StreamHeader body.
func (h *StreamHeader) UnmarshalBinary(body []byte) error {
	if len(body) < 6 {
		return fmt.Errorf("stream header: %w", errShortBody)
	}
	h.TunnelID = binary.BigEndian.Uint32(body)
	h.Proto = StreamProto(body[4])
	rest := body[5:]
	var err error
	if h.ClientAddr, rest, err = readStr8(rest); err != nil {
		return fmt.Errorf("stream header client address: %w", err)
	}
	if h.Host, rest, err = readStr8(rest); err != nil {
		return fmt.Errorf("stream header host: %w", err)
	}
	if len(rest) != 0 {
		return fmt.Errorf("stream header: %d trailing bytes", len(rest))
	}
	return nil
}

func readStr8(b []byte) (string, []byte, error) {
	if len(b) < 1 {
		return "", nil, errShortBody
	}
	n := int(b[0])
	if len(b) < 1+n {
		return "", nil, errShortBody
	}
	return string(b[1 : 1+n]), b[1+n:], nil
}

// ReadStreamHeader reads the StreamHeader frame that opens a data stream.
func ReadStreamHeader(r io.Reader) (StreamHeader, error) {
	var h StreamHeader
	t, body, err := ReadFrame(r, MaxStreamFrame)
	if err != nil {
		return h, err
	}
	if t != TypeStreamHeader {
		return h, Errorf(CodeProtocol, "got %v, want StreamHeader", t)
	}
	return h, h.UnmarshalBinary(body)
}

// StreamResp is the agent's first frame on a data stream (TypeStreamResp).
//
// Binary body layout: code uint16 BE | message (rest of the body, UTF-8).
type StreamResp struct {
	Code    ErrorCode
	Message string
}

// AppendFrame appends r as a complete frame.
func (r *StreamResp) AppendFrame(b []byte) []byte {
	msg := r.Message
	if len(msg) > MaxStreamFrame-2 {
		msg = msg[:MaxStreamFrame-2]
	}
	b = append(b, byte(TypeStreamResp), 0, 0, 0, 0)
	binary.BigEndian.PutUint32(b[len(b)-4:], uint32(2+len(msg)))
	b = binary.BigEndian.AppendUint16(b, uint16(r.Code))
	return append(b, msg...)
}

// UnmarshalBinary decodes a StreamResp body.
func (r *StreamResp) UnmarshalBinary(body []byte) error {
	if len(body) < 2 {
		return fmt.Errorf("stream response: %w", errShortBody)
	}
	r.Code = ErrorCode(binary.BigEndian.Uint16(body))
	r.Message = string(body[2:])
	return nil
}

// Err returns nil for CodeOK and an *Error otherwise.
func (r *StreamResp) Err() error {
	if r.Code == CodeOK {
		return nil
	}
	return &Error{Code: r.Code, Message: r.Message}
}

var okResp = (&StreamResp{Code: CodeOK}).AppendFrame(nil)

// WriteStreamOK writes the StreamResp that accepts a stream, without allocating.
func WriteStreamOK(w io.Writer) error {
	_, err := w.Write(okResp)
	return err
}

var respBufPool = sync.Pool{New: func() any { b := make([]byte, HeaderLen+MaxStreamFrame); return &b }}

// ReadStreamResp reads the StreamResp frame the agent writes first on a data stream.
// It returns the agent's error (an *Error) if the agent refused the stream.
func ReadStreamResp(r io.Reader) error {
	bp := respBufPool.Get().(*[]byte)
	defer respBufPool.Put(bp)
	buf := *bp
	if _, err := io.ReadFull(r, buf[:HeaderLen]); err != nil {
		return err
	}
	if t := MsgType(buf[0]); t != TypeStreamResp {
		return Errorf(CodeProtocol, "got %v, want StreamResp", t)
	}
	n := binary.BigEndian.Uint32(buf[1:HeaderLen])
	if n > MaxStreamFrame {
		return fmt.Errorf("StreamResp of %d bytes, limit %d: %w", n, MaxStreamFrame, ErrFrameTooLarge)
	}
	body := buf[HeaderLen : HeaderLen+int(n)]
	if _, err := io.ReadFull(r, body); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return fmt.Errorf("read StreamResp body: %w", err)
	}
	var resp StreamResp
	if err := resp.UnmarshalBinary(body); err != nil {
		return err
	}
	return resp.Err()
}
