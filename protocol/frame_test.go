package protocol_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"runtime"
	"strings"
	"testing"

	"github.com/ferrytunnel/ferry/protocol"
)

// header returns a frame header declaring n body bytes of type t.
func header(t protocol.MsgType, n uint32) []byte {
	b := []byte{byte(t), 0, 0, 0, 0}
	binary.BigEndian.PutUint32(b[1:], n)
	return b
}

// declaringReader yields a frame header and then counts every attempt to read the body;
// the body itself is never there (io.EOF).
type declaringReader struct {
	hdr       []byte
	bodyReads int
}

func (r *declaringReader) Read(p []byte) (int, error) {
	if len(r.hdr) > 0 {
		n := copy(p, r.hdr)
		r.hdr = r.hdr[n:]
		return n, nil
	}
	r.bodyReads++
	return 0, io.EOF
}

func TestReadFrameRefusesOverLimitBeforeAllocating(t *testing.T) {
	tests := []struct {
		name     string
		declared uint32
		limit    uint32
	}{
		{"4 GiB declared, control limit", 0xFFFFFFFF, protocol.MaxControlFrame},
		{"4 GiB declared, pre-auth limit", 0xFFFFFFFF, protocol.MaxPreAuthFrame},
		{"4 GiB declared, stream limit", 0xFFFFFFFF, protocol.MaxStreamFrame},
		{"one over the limit", protocol.MaxPreAuthFrame + 1, protocol.MaxPreAuthFrame},
		{"1 byte, limit 0", 1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &declaringReader{hdr: header(protocol.TypeBind, tt.declared)}
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			typ, body, err := protocol.ReadFrame(r, tt.limit)
			runtime.ReadMemStats(&after)

			if !errors.Is(err, protocol.ErrFrameTooLarge) {
				t.Fatalf("ReadFrame(declared %d, limit %d) error = %v, want ErrFrameTooLarge", tt.declared, tt.limit, err)
			}
			if body != nil {
				t.Errorf("ReadFrame body = %d bytes, want nil", len(body))
			}
			if typ != protocol.TypeBind {
				t.Errorf("ReadFrame type = %v, want Bind", typ)
			}
			if r.bodyReads != 0 {
				t.Errorf("ReadFrame read the body %d times, want 0", r.bodyReads)
			}
			// A body of tt.declared bytes would show in TotalAlloc; the error text is tiny.
			if got := after.TotalAlloc - before.TotalAlloc; got > 64<<10 {
				t.Errorf("ReadFrame allocated %d bytes, want < 64 KiB", got)
			}
		})
	}
}

func TestReadFrameAllocs(t *testing.T) {
	// The refusal path allocates only the error, never a body-sized buffer.
	frame := header(protocol.TypeHello, 0xFFFFFFFF)
	allocs := testing.AllocsPerRun(100, func() {
		if _, _, err := protocol.ReadFrame(bytes.NewReader(frame), protocol.MaxPreAuthFrame); err == nil {
			t.Fatal("ReadFrame accepted a 4 GiB frame")
		}
	})
	if allocs > 10 {
		t.Errorf("ReadFrame refusing a 4 GiB frame: %v allocations, want <= 10", allocs)
	}
}

func TestReadFrame(t *testing.T) {
	tests := []struct {
		name     string
		in       []byte
		limit    uint32
		wantType protocol.MsgType
		wantBody []byte
	}{
		{"empty body", header(protocol.TypeHeartbeat, 0), 16, protocol.TypeHeartbeat, []byte{}},
		{"body", append(header(protocol.TypeAuth, 3), "abc"...), 16, protocol.TypeAuth, []byte("abc")},
		{"body at the limit", append(header(protocol.TypeAuth, 3), "abc"...), 3, protocol.TypeAuth, []byte("abc")},
		{"trailing bytes stay unread", append(header(protocol.TypeGoAway, 1), "xyz"...), 16, protocol.TypeGoAway, []byte("x")},
		{"unknown type is returned", append(header(200, 1), 'z'), 16, 200, []byte("z")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			typ, body, err := protocol.ReadFrame(bytes.NewReader(tt.in), tt.limit)
			if err != nil {
				t.Fatalf("ReadFrame(%x) error = %v, want nil", tt.in, err)
			}
			if typ != tt.wantType {
				t.Errorf("ReadFrame type = %v, want %v", typ, tt.wantType)
			}
			if !bytes.Equal(body, tt.wantBody) {
				t.Errorf("ReadFrame body = %q, want %q", body, tt.wantBody)
			}
		})
	}
}

func TestReadFrameTruncated(t *testing.T) {
	full := append(header(protocol.TypeBind, 4), "abcd"...)
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"nothing: clean end", nil, io.EOF},
		{"1 header byte", full[:1], io.ErrUnexpectedEOF},
		{"4 header bytes", full[:4], io.ErrUnexpectedEOF},
		{"header, no body", full[:protocol.HeaderLen], io.ErrUnexpectedEOF},
		{"header, half the body", full[:protocol.HeaderLen+2], io.ErrUnexpectedEOF},
		{"header, body less one byte", full[:len(full)-1], io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, body, err := protocol.ReadFrame(bytes.NewReader(tt.in), protocol.MaxControlFrame)
			if !errors.Is(err, tt.want) {
				t.Fatalf("ReadFrame(%x) error = %v, want %v", tt.in, err, tt.want)
			}
			if body != nil {
				t.Errorf("ReadFrame(%x) body = %q, want nil", tt.in, body)
			}
		})
	}
}

func TestAppendFrame(t *testing.T) {
	got := protocol.AppendFrame([]byte("pre"), protocol.TypeAuth, []byte("body"))
	want := append([]byte("pre"), append(header(protocol.TypeAuth, 4), "body"...)...)
	if !bytes.Equal(got, want) {
		t.Fatalf("AppendFrame = %x, want %x", got, want)
	}
}

// countingWriter counts Write calls.
type countingWriter struct {
	bytes.Buffer
	writes int
}

func (w *countingWriter) Write(p []byte) (int, error) {
	w.writes++
	return w.Buffer.Write(p)
}

func TestWriteFrameSingleWrite(t *testing.T) {
	var w countingWriter
	if err := protocol.WriteFrame(&w, protocol.TypeGoAway, []byte(`{"reason":"x"}`)); err != nil {
		t.Fatalf("WriteFrame error = %v, want nil", err)
	}
	if w.writes != 1 {
		t.Errorf("WriteFrame made %d Write calls, want 1", w.writes)
	}
	typ, body, err := protocol.ReadFrame(&w.Buffer, protocol.MaxControlFrame)
	if err != nil || typ != protocol.TypeGoAway || string(body) != `{"reason":"x"}` {
		t.Errorf("ReadFrame(WriteFrame) = %v, %q, %v; want GoAway, %q, nil", typ, body, err, `{"reason":"x"}`)
	}
}

func TestWriteMsgReadMsg(t *testing.T) {
	var buf bytes.Buffer
	in := protocol.Bind{TunnelID: 7, Name: "web", Proto: protocol.ProtoLabeled, Labels: map[string]string{"k": "v"}}
	if err := protocol.WriteMsg(&buf, protocol.TypeBind, &in); err != nil {
		t.Fatalf("WriteMsg error = %v, want nil", err)
	}
	var out protocol.Bind
	if err := protocol.ReadMsg(&buf, protocol.MaxControlFrame, protocol.TypeBind, &out); err != nil {
		t.Fatalf("ReadMsg error = %v, want nil", err)
	}
	if out.TunnelID != in.TunnelID || out.Name != in.Name || out.Proto != in.Proto || out.Domain != in.Domain ||
		out.Labels["k"] != "v" {
		t.Errorf("ReadMsg = %+v, want %+v", out, in)
	}
}

func TestWriteMsgUnencodable(t *testing.T) {
	var buf bytes.Buffer
	err := protocol.WriteMsg(&buf, protocol.TypeBind, make(chan int))
	if err == nil {
		t.Fatal("WriteMsg(chan) error = nil, want an encode error")
	}
	if buf.Len() != 0 {
		t.Errorf("WriteMsg(chan) wrote %d bytes, want 0", buf.Len())
	}
}

func TestReadMsgErrorFrame(t *testing.T) {
	var buf bytes.Buffer
	sent := protocol.Error{Code: protocol.CodeAuthFailed, Message: "authtoken not recognised"}
	if err := protocol.WriteMsg(&buf, protocol.TypeError, &sent); err != nil {
		t.Fatal(err)
	}
	var auth protocol.AuthResp
	err := protocol.ReadMsg(&buf, protocol.MaxControlFrame, protocol.TypeAuthResp, &auth)
	var pe *protocol.Error
	if !errors.As(err, &pe) {
		t.Fatalf("ReadMsg(Error frame) = %T %v, want *protocol.Error", err, err)
	}
	if *pe != sent {
		t.Errorf("ReadMsg(Error frame) = %+v, want %+v", *pe, sent)
	}
}

func TestReadMsgUnexpectedType(t *testing.T) {
	var buf bytes.Buffer
	if err := protocol.WriteMsg(&buf, protocol.TypeHello, &protocol.Hello{Version: 1, MinVersion: 1}); err != nil {
		t.Fatal(err)
	}
	var auth protocol.Auth
	err := protocol.ReadMsg(&buf, protocol.MaxControlFrame, protocol.TypeAuth, &auth)
	var pe *protocol.Error
	if !errors.As(err, &pe) {
		t.Fatalf("ReadMsg(Hello, want Auth) = %T %v, want *protocol.Error", err, err)
	}
	if pe.Code != protocol.CodeProtocol {
		t.Errorf("ReadMsg(Hello, want Auth) code = %v, want %v", pe.Code, protocol.CodeProtocol)
	}
	if want := "got Hello, want Auth"; pe.Message != want {
		t.Errorf("ReadMsg(Hello, want Auth) message = %q, want %q", pe.Message, want)
	}
}

func TestReadMsgFailures(t *testing.T) {
	tests := []struct {
		name     string
		in       []byte
		wantIs   error  // checked with errors.Is when set
		wantCode uint16 // a *protocol.Error with this code when wantIs is nil
		wantMsg  string // substring of the error
	}{
		{"too large", header(protocol.TypeAuth, protocol.MaxPreAuthFrame+1), protocol.ErrFrameTooLarge, 0, "limit 4096"},
		{"truncated", append(header(protocol.TypeAuth, 10), `{"a`...), io.ErrUnexpectedEOF, 0, "read Auth body"},
		{"malformed body", append(header(protocol.TypeAuth, 3), `{"a`...), nil, uint16(protocol.CodeProtocol), "malformed Auth"},
		{"invalid body", append(header(protocol.TypeAuth, 2), `{}`...), nil, uint16(protocol.CodeProtocol), "invalid Auth: authtoken is empty"},
		{"malformed Error frame", append(header(protocol.TypeError, 1), `[`...), nil, uint16(protocol.CodeProtocol), "malformed Error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var a protocol.Auth
			err := protocol.ReadMsg(bytes.NewReader(tt.in), protocol.MaxPreAuthFrame, protocol.TypeAuth, &a)
			if err == nil {
				t.Fatalf("ReadMsg(%q) error = nil, want %q", tt.in, tt.wantMsg)
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("ReadMsg(%q) error = %v, want errors.Is %v", tt.in, err, tt.wantIs)
			}
			if tt.wantIs == nil {
				var pe *protocol.Error
				if !errors.As(err, &pe) || uint16(pe.Code) != tt.wantCode {
					t.Errorf("ReadMsg(%q) error = %T %v, want *protocol.Error with code %d", tt.in, err, err, tt.wantCode)
				}
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("ReadMsg(%q) error = %q, want it to contain %q", tt.in, err, tt.wantMsg)
			}
		})
	}
}

func TestMsgTypeString(t *testing.T) {
	tests := []struct {
		t    protocol.MsgType
		want string
	}{
		{protocol.TypeHello, "Hello"},
		{protocol.TypeHeartbeatAck, "HeartbeatAck"},
		{protocol.TypeError, "Error"},
		{protocol.TypeStreamHeader, "StreamHeader"},
		{protocol.TypeStreamResp, "StreamResp"},
		{0, "MsgType(0)"},
		{99, "MsgType(99)"},
	}
	for _, tt := range tests {
		if got := tt.t.String(); got != tt.want {
			t.Errorf("MsgType(%d).String() = %q, want %q", uint8(tt.t), got, tt.want)
		}
	}
}
