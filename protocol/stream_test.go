package protocol_test

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/ferrytunnel/ferry/protocol"
)

func TestStreamHeaderRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		h    protocol.StreamHeader
	}{
		{"zero", protocol.StreamHeader{}},
		{"http", protocol.StreamHeader{TunnelID: 1, Proto: protocol.StreamHTTP, ClientAddr: "203.0.113.7:51234", Host: "app.example.com"}},
		{"tcp, no host", protocol.StreamHeader{TunnelID: 0xFFFFFFFF, Proto: protocol.StreamTCP, ClientAddr: "[2001:db8::1]:443"}},
		{"tls", protocol.StreamHeader{TunnelID: 42, Proto: protocol.StreamTLS, ClientAddr: "198.51.100.1:1", Host: "x.example.com"}},
		{"tls terminated", protocol.StreamHeader{TunnelID: 42, Proto: protocol.StreamTLSTerminated, ClientAddr: "198.51.100.1:1", Host: "x.example.com"}},
		{"unknown proto is carried", protocol.StreamHeader{TunnelID: 3, Proto: 200, ClientAddr: "a", Host: "b"}},
		{"255-byte fields", protocol.StreamHeader{TunnelID: 9, Proto: protocol.StreamTLS, ClientAddr: strings.Repeat("c", 255), Host: strings.Repeat("h", 255)}},
		{"binary bytes", protocol.StreamHeader{ClientAddr: "\x00\xff", Host: "\xfe"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			frame, err := tt.h.AppendFrame(nil)
			if err != nil {
				t.Fatalf("AppendFrame(%+v) error = %v, want nil", tt.h, err)
			}
			if want := protocol.HeaderLen + 7 + len(tt.h.ClientAddr) + len(tt.h.Host); len(frame) != want {
				t.Errorf("AppendFrame(%+v) = %d bytes, want %d", tt.h, len(frame), want)
			}

			// Through the frame reader, as the agent reads it.
			got, err := protocol.ReadStreamHeader(bytes.NewReader(frame))
			if err != nil {
				t.Fatalf("ReadStreamHeader(AppendFrame(%+v)) error = %v, want nil", tt.h, err)
			}
			if got != tt.h {
				t.Errorf("ReadStreamHeader = %+v, want %+v", got, tt.h)
			}

			// And the body alone.
			var body protocol.StreamHeader
			if err := body.UnmarshalBinary(frame[protocol.HeaderLen:]); err != nil {
				t.Fatalf("UnmarshalBinary error = %v, want nil", err)
			}
			if body != tt.h {
				t.Errorf("UnmarshalBinary = %+v, want %+v", body, tt.h)
			}
		})
	}
}

func TestStreamHeaderAppendKeepsPrefix(t *testing.T) {
	h := protocol.StreamHeader{TunnelID: 1, Proto: protocol.StreamTCP, ClientAddr: "1.2.3.4:5"}
	frame, err := h.AppendFrame([]byte("prefix"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(frame, []byte("prefix")) {
		t.Fatalf("AppendFrame(prefix) = %q, want it to start with %q", frame, "prefix")
	}
	got, err := protocol.ReadStreamHeader(bytes.NewReader(frame[len("prefix"):]))
	if err != nil || got != h {
		t.Errorf("ReadStreamHeader = %+v, %v; want %+v, nil", got, err, h)
	}
}

func TestStreamHeaderTooLong(t *testing.T) {
	tests := []struct {
		name string
		h    protocol.StreamHeader
	}{
		{"client address of 256 bytes", protocol.StreamHeader{ClientAddr: strings.Repeat("c", 256)}},
		{"host of 256 bytes", protocol.StreamHeader{Host: strings.Repeat("h", 256)}},
		{"both too long", protocol.StreamHeader{ClientAddr: strings.Repeat("c", 1000), Host: strings.Repeat("h", 1000)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := []byte("keep")
			out, err := tt.h.AppendFrame(in)
			if err == nil {
				t.Fatalf("AppendFrame(%d-byte address, %d-byte host) error = nil, want an error", len(tt.h.ClientAddr), len(tt.h.Host))
			}
			if !bytes.Equal(out, in) {
				t.Errorf("AppendFrame on error returned %q, want the input %q unchanged", out, in)
			}
		})
	}
}

func TestStreamHeaderUnmarshalErrors(t *testing.T) {
	tests := []struct {
		name    string
		body    []byte
		wantErr string
	}{
		{"empty", nil, "body too short"},
		{"5 bytes", []byte{0, 0, 0, 1, 2}, "body too short"},
		{"no host length", []byte{0, 0, 0, 1, 2, 0}, "host: body too short"},
		{"client address cut short", []byte{0, 0, 0, 1, 2, 5, 'a', 'b'}, "client address: body too short"},
		{"host cut short", []byte{0, 0, 0, 1, 2, 1, 'a', 3, 'h'}, "host: body too short"},
		{"one trailing byte", []byte{0, 0, 0, 1, 2, 1, 'a', 1, 'h', 'x'}, "1 trailing bytes"},
		{"many trailing bytes", append([]byte{0, 0, 0, 1, 2, 0, 0}, make([]byte, 100)...), "100 trailing bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h protocol.StreamHeader
			err := h.UnmarshalBinary(tt.body)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("UnmarshalBinary(%x) error = %v, want it to contain %q", tt.body, err, tt.wantErr)
			}
		})
	}
}

func TestReadStreamHeaderErrors(t *testing.T) {
	good, err := (&protocol.StreamHeader{TunnelID: 1, Proto: protocol.StreamTCP, ClientAddr: "a:1"}).AppendFrame(nil)
	if err != nil {
		t.Fatal(err)
	}
	wrongType := append([]byte(nil), good...)
	wrongType[0] = byte(protocol.TypeStreamResp)
	tests := []struct {
		name     string
		in       []byte
		wantIs   error
		wantCode protocol.ErrorCode // when wantIs is nil: a *protocol.Error with this code
	}{
		{"empty", nil, io.EOF, 0},
		{"truncated", good[:len(good)-1], io.ErrUnexpectedEOF, 0},
		{"too large", header(protocol.TypeStreamHeader, protocol.MaxStreamFrame+1), protocol.ErrFrameTooLarge, 0},
		{"wrong type", wrongType, nil, protocol.CodeProtocol},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := protocol.ReadStreamHeader(bytes.NewReader(tt.in))
			if tt.wantIs != nil {
				if !errors.Is(err, tt.wantIs) {
					t.Fatalf("ReadStreamHeader(%x) error = %v, want %v", tt.in, err, tt.wantIs)
				}
				return
			}
			var pe *protocol.Error
			if !errors.As(err, &pe) || pe.Code != tt.wantCode {
				t.Fatalf("ReadStreamHeader(%x) error = %T %v, want *protocol.Error with code %v", tt.in, err, err, tt.wantCode)
			}
		})
	}
}

func TestStreamProtoString(t *testing.T) {
	tests := []struct {
		p    protocol.StreamProto
		want string
	}{
		{protocol.StreamHTTP, "http"},
		{protocol.StreamTCP, "tcp"},
		{protocol.StreamTLS, "tls"},
		{protocol.StreamTLSTerminated, "tls-terminated"},
		{0, "StreamProto(0)"},
		{77, "StreamProto(77)"},
	}
	for _, tt := range tests {
		if got := tt.p.String(); got != tt.want {
			t.Errorf("StreamProto(%d).String() = %q, want %q", uint8(tt.p), got, tt.want)
		}
	}
}

func TestStreamRespRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		r    protocol.StreamResp
	}{
		{"ok", protocol.StreamResp{Code: protocol.CodeOK}},
		{"refused", protocol.StreamResp{Code: protocol.CodeUpstreamRefused, Message: "dial localhost:8080: connection refused"}},
		{"tunnel gone", protocol.StreamResp{Code: protocol.CodeTunnelGone, Message: "tunnel 4"}},
		{"unknown code", protocol.StreamResp{Code: 0xFFFF, Message: "x"}},
		{"longest message", protocol.StreamResp{Code: protocol.CodeInternal, Message: strings.Repeat("m", protocol.MaxStreamFrame-2)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			frame := tt.r.AppendFrame(nil)
			typ, body, err := protocol.ReadFrame(bytes.NewReader(frame), protocol.MaxStreamFrame)
			if err != nil || typ != protocol.TypeStreamResp {
				t.Fatalf("ReadFrame(AppendFrame(%v)) = %v, %v; want StreamResp, nil", tt.r.Code, typ, err)
			}
			var got protocol.StreamResp
			if err := got.UnmarshalBinary(body); err != nil {
				t.Fatalf("UnmarshalBinary error = %v, want nil", err)
			}
			if got != tt.r {
				t.Errorf("UnmarshalBinary = {%v %.40q}, want {%v %.40q}", got.Code, got.Message, tt.r.Code, tt.r.Message)
			}
		})
	}
}

func TestStreamRespTruncatesLongMessage(t *testing.T) {
	r := protocol.StreamResp{Code: protocol.CodeUpstreamRefused, Message: strings.Repeat("x", 5000)}
	frame := r.AppendFrame(nil)
	if want := protocol.HeaderLen + protocol.MaxStreamFrame; len(frame) != want {
		t.Fatalf("AppendFrame(5000-byte message) = %d bytes, want %d", len(frame), want)
	}
	err := protocol.ReadStreamResp(bytes.NewReader(frame))
	var pe *protocol.Error
	if !errors.As(err, &pe) {
		t.Fatalf("ReadStreamResp = %T %v, want *protocol.Error", err, err)
	}
	if pe.Code != r.Code || pe.Message != r.Message[:protocol.MaxStreamFrame-2] {
		t.Errorf("ReadStreamResp = {%v, %d bytes}, want {%v, %d bytes}", pe.Code, len(pe.Message), r.Code, protocol.MaxStreamFrame-2)
	}
}

func TestStreamRespUnmarshalShort(t *testing.T) {
	for _, body := range [][]byte{nil, {0}} {
		var r protocol.StreamResp
		if err := r.UnmarshalBinary(body); err == nil {
			t.Errorf("UnmarshalBinary(%x) error = nil, want body too short", body)
		}
	}
}

func TestStreamRespErr(t *testing.T) {
	if err := (&protocol.StreamResp{Code: protocol.CodeOK, Message: "ignored"}).Err(); err != nil {
		t.Errorf("StreamResp{OK}.Err() = %v, want nil", err)
	}
	err := (&protocol.StreamResp{Code: protocol.CodeUpstreamRefused, Message: "no"}).Err()
	var pe *protocol.Error
	if !errors.As(err, &pe) || pe.Code != protocol.CodeUpstreamRefused || pe.Message != "no" {
		t.Errorf("StreamResp{UpstreamRefused}.Err() = %#v, want *protocol.Error{UpstreamRefused, no}", err)
	}
}

func TestReadStreamResp(t *testing.T) {
	refusal := (&protocol.StreamResp{Code: protocol.CodeUpstreamRefused, Message: "dial localhost:8080: connection refused"}).AppendFrame(nil)
	okWithMsg := (&protocol.StreamResp{Code: protocol.CodeOK, Message: "fine"}).AppendFrame(nil)
	wrongType := append([]byte(nil), refusal...)
	wrongType[0] = byte(protocol.TypeStreamHeader)
	tests := []struct {
		name     string
		in       []byte
		wantNil  bool
		wantCode protocol.ErrorCode // a *protocol.Error with this code (when wantIs is nil)
		wantMsg  string
		wantIs   error
	}{
		{"ok with message", okWithMsg, true, 0, "", nil},
		{"refused", refusal, false, protocol.CodeUpstreamRefused, "dial localhost:8080: connection refused", nil},
		{"wrong type", wrongType, false, protocol.CodeProtocol, "got StreamHeader, want StreamResp", nil},
		{"empty", nil, false, 0, "", io.EOF},
		{"short header", refusal[:3], false, 0, "", io.ErrUnexpectedEOF},
		{"short body", refusal[:protocol.HeaderLen+4], false, 0, "", io.ErrUnexpectedEOF},
		{"too large", header(protocol.TypeStreamResp, protocol.MaxStreamFrame+1), false, 0, "", protocol.ErrFrameTooLarge},
		{"4 GiB", header(protocol.TypeStreamResp, 0xFFFFFFFF), false, 0, "", protocol.ErrFrameTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := protocol.ReadStreamResp(bytes.NewReader(tt.in))
			switch {
			case tt.wantNil:
				if err != nil {
					t.Fatalf("ReadStreamResp(%x) = %v, want nil", tt.in, err)
				}
			case tt.wantIs != nil:
				if !errors.Is(err, tt.wantIs) {
					t.Fatalf("ReadStreamResp(%x) = %v, want %v", tt.in, err, tt.wantIs)
				}
			default:
				var pe *protocol.Error
				if !errors.As(err, &pe) {
					t.Fatalf("ReadStreamResp(%x) = %T %v, want *protocol.Error", tt.in, err, err)
				}
				if pe.Code != tt.wantCode || pe.Message != tt.wantMsg {
					t.Errorf("ReadStreamResp(%x) = {%v %q}, want {%v %q}", tt.in, pe.Code, pe.Message, tt.wantCode, tt.wantMsg)
				}
			}
		})
	}
}

func TestReadStreamRespBodyTooShort(t *testing.T) {
	for _, n := range []uint32{0, 1} {
		in := append(header(protocol.TypeStreamResp, n), make([]byte, n)...)
		if err := protocol.ReadStreamResp(bytes.NewReader(in)); err == nil {
			t.Errorf("ReadStreamResp(%d-byte body) = nil, want an error", n)
		}
	}
}

func TestReadStreamRespLeavesFollowingBytes(t *testing.T) {
	// The relay reads the StreamResp and then the upstream's bytes from the same stream.
	in := append((&protocol.StreamResp{Code: protocol.CodeOK}).AppendFrame(nil), "HTTP/1.1 200 OK\r\n"...)
	r := bytes.NewReader(in)
	if err := protocol.ReadStreamResp(r); err != nil {
		t.Fatalf("ReadStreamResp = %v, want nil", err)
	}
	rest, _ := io.ReadAll(r)
	if string(rest) != "HTTP/1.1 200 OK\r\n" {
		t.Errorf("bytes after StreamResp = %q, want %q", rest, "HTTP/1.1 200 OK\r\n")
	}
}

func TestWriteStreamOK(t *testing.T) {
	var buf bytes.Buffer
	if err := protocol.WriteStreamOK(&buf); err != nil {
		t.Fatalf("WriteStreamOK error = %v, want nil", err)
	}
	if want := []byte{byte(protocol.TypeStreamResp), 0, 0, 0, 2, 0, 0}; !bytes.Equal(buf.Bytes(), want) {
		t.Errorf("WriteStreamOK wrote %x, want %x", buf.Bytes(), want)
	}
	typ, body, err := protocol.ReadFrame(bytes.NewReader(buf.Bytes()), protocol.MaxStreamFrame)
	if err != nil || typ != protocol.TypeStreamResp {
		t.Fatalf("ReadFrame(WriteStreamOK) = %v, %v; want StreamResp, nil", typ, err)
	}
	var r protocol.StreamResp
	if err := r.UnmarshalBinary(body); err != nil {
		t.Fatalf("UnmarshalBinary error = %v, want nil", err)
	}
	if r.Code != protocol.CodeOK || r.Message != "" {
		t.Errorf("WriteStreamOK decodes to {%v %q}, want {ok \"\"}", r.Code, r.Message)
	}
	if err := protocol.ReadStreamResp(bytes.NewReader(buf.Bytes())); err != nil {
		t.Errorf("ReadStreamResp(WriteStreamOK) = %v, want nil", err)
	}
}

type failWriter struct{ err error }

func (w failWriter) Write([]byte) (int, error) { return 0, w.err }

func TestWriteStreamOKError(t *testing.T) {
	want := errors.New("stream reset")
	if err := protocol.WriteStreamOK(failWriter{want}); !errors.Is(err, want) {
		t.Errorf("WriteStreamOK(failing writer) = %v, want %v", err, want)
	}
}

func TestStreamRespNoAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector changes allocation counts")
	}
	ok := (&protocol.StreamResp{Code: protocol.CodeOK}).AppendFrame(nil)
	r := bytes.NewReader(ok)
	if n := testing.AllocsPerRun(100, func() {
		if err := protocol.WriteStreamOK(io.Discard); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("WriteStreamOK: %v allocations, want 0", n)
	}
	if n := testing.AllocsPerRun(100, func() {
		r.Reset(ok)
		if err := protocol.ReadStreamResp(r); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("ReadStreamResp(OK): %v allocations, want 0", n)
	}
}

// A StreamResp header whose body never comes is a truncated frame, as ReadFrame reports it;
// it must not look like the agent's normal close (io.EOF).
func TestReadStreamRespHeaderOnly(t *testing.T) {
	in := header(protocol.TypeStreamResp, 2)
	if _, _, err := protocol.ReadFrame(bytes.NewReader(in), protocol.MaxStreamFrame); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("ReadFrame(%x) = %v, want io.ErrUnexpectedEOF", in, err)
	}
	err := protocol.ReadStreamResp(bytes.NewReader(in))
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("ReadStreamResp(%x) = %v, want io.ErrUnexpectedEOF", in, err)
	}
}
