package protocol_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/ferrytunnel/ferry/protocol"
)

// Each fuzz target checks that decoding never panics and that whatever decodes survives
// encode → decode unchanged. Seed inputs are the valid encodings below plus the files in
// testdata/fuzz/<FuzzName>/.

func FuzzReadFrame(f *testing.F) {
	f.Add(protocol.AppendFrame(nil, protocol.TypeHello, []byte(`{"version":1,"min_version":1}`)), uint32(protocol.MaxPreAuthFrame))
	f.Add(protocol.AppendFrame(nil, protocol.TypeHeartbeat, nil), uint32(0))
	f.Add(protocol.AppendFrame(nil, protocol.TypeStreamResp, []byte{0, 0}), uint32(protocol.MaxStreamFrame))
	f.Add(header(protocol.TypeBind, 0xFFFFFFFF), uint32(protocol.MaxControlFrame))
	f.Add([]byte{1, 0, 0}, uint32(protocol.MaxControlFrame))
	f.Fuzz(func(t *testing.T, data []byte, limit uint32) {
		// Keep the limit small enough that the fuzzer cannot ask for a huge allocation
		// with a frame it did not supply: ReadFrame allocates up to limit bytes.
		limit %= protocol.MaxControlFrame + 1
		typ, body, err := protocol.ReadFrame(bytes.NewReader(data), limit)
		if err != nil {
			if body != nil {
				t.Fatalf("ReadFrame(%x) = body %x with error %v, want nil body", data, body, err)
			}
			if len(data) >= protocol.HeaderLen {
				declared := uint32(data[1])<<24 | uint32(data[2])<<16 | uint32(data[3])<<8 | uint32(data[4])
				if declared > limit && !errors.Is(err, protocol.ErrFrameTooLarge) {
					t.Fatalf("ReadFrame(%x, limit %d) error = %v, want ErrFrameTooLarge", data, limit, err)
				}
			}
			return
		}
		if uint32(len(body)) > limit {
			t.Fatalf("ReadFrame(limit %d) returned %d bytes", limit, len(body))
		}
		frame := protocol.AppendFrame(nil, typ, body)
		if !bytes.Equal(frame, data[:len(frame)]) {
			t.Fatalf("AppendFrame(ReadFrame(%x)) = %x, want the input's first %d bytes", data, frame, len(frame))
		}
		typ2, body2, err := protocol.ReadFrame(bytes.NewReader(frame), limit)
		if err != nil {
			t.Fatalf("ReadFrame(AppendFrame(%v, %x)) error = %v, want nil", typ, body, err)
		}
		if typ2 != typ || !bytes.Equal(body2, body) {
			t.Fatalf("round trip = %v %x, want %v %x", typ2, body2, typ, body)
		}
	})
}

func FuzzStreamHeader(f *testing.F) {
	for _, h := range []protocol.StreamHeader{
		{TunnelID: 1, Proto: protocol.StreamHTTP, ClientAddr: "203.0.113.7:51234", Host: "app.example.com"},
		{TunnelID: 2, Proto: protocol.StreamTCP, ClientAddr: "[2001:db8::1]:443"},
		{TunnelID: 3, Proto: protocol.StreamTLS, ClientAddr: "1.2.3.4:5", Host: strings.Repeat("h", 255)},
		{},
	} {
		frame, err := h.AppendFrame(nil)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(frame[protocol.HeaderLen:])
	}
	f.Add([]byte{0, 0, 0, 1, 2, 5, 'a'})
	f.Add([]byte{0, 0, 0, 1, 2, 0, 0, 'x'})
	f.Fuzz(func(t *testing.T, body []byte) {
		var h protocol.StreamHeader
		if err := h.UnmarshalBinary(body); err != nil {
			return
		}
		frame, err := h.AppendFrame(nil)
		if err != nil {
			t.Fatalf("AppendFrame(UnmarshalBinary(%x)) error = %v, want nil", body, err)
		}
		// The layout has one encoding per value, and UnmarshalBinary refuses trailing bytes.
		if !bytes.Equal(frame[protocol.HeaderLen:], body) {
			t.Fatalf("AppendFrame(UnmarshalBinary(%x)) body = %x, want the input", body, frame[protocol.HeaderLen:])
		}
		got, err := protocol.ReadStreamHeader(bytes.NewReader(frame))
		if err != nil {
			t.Fatalf("ReadStreamHeader(%x) error = %v, want nil", frame, err)
		}
		if got != h {
			t.Fatalf("round trip = %+v, want %+v", got, h)
		}
	})
}

func FuzzStreamResp(f *testing.F) {
	for _, r := range []protocol.StreamResp{
		{Code: protocol.CodeOK},
		{Code: protocol.CodeUpstreamRefused, Message: "dial localhost:8080: connection refused"},
		{Code: protocol.CodeTunnelGone, Message: "tunnel 9 is gone"},
		{Code: 0xFFFF, Message: "\xff\xfe"},
	} {
		f.Add(r.AppendFrame(nil)[protocol.HeaderLen:])
	}
	f.Add([]byte{0})
	f.Fuzz(func(t *testing.T, body []byte) {
		var r protocol.StreamResp
		if err := r.UnmarshalBinary(body); err != nil {
			return
		}
		frame := r.AppendFrame(nil)
		var want protocol.StreamResp = r
		if len(body) > protocol.MaxStreamFrame {
			// AppendFrame cuts the message to fit the frame limit.
			want.Message = r.Message[:protocol.MaxStreamFrame-2]
		} else if !bytes.Equal(frame[protocol.HeaderLen:], body) {
			t.Fatalf("AppendFrame(UnmarshalBinary(%x)) body = %x, want the input", body, frame[protocol.HeaderLen:])
		}
		typ, body2, err := protocol.ReadFrame(bytes.NewReader(frame), protocol.MaxStreamFrame)
		if err != nil || typ != protocol.TypeStreamResp {
			t.Fatalf("ReadFrame(%x) = %v, %v; want StreamResp, nil", frame, typ, err)
		}
		var got protocol.StreamResp
		if err := got.UnmarshalBinary(body2); err != nil {
			t.Fatalf("UnmarshalBinary(%x) error = %v, want nil", body2, err)
		}
		if got != want {
			t.Fatalf("round trip = %+v, want %+v", got, want)
		}
		err = protocol.ReadStreamResp(bytes.NewReader(frame))
		if want.Code == protocol.CodeOK {
			if err != nil {
				t.Fatalf("ReadStreamResp(%x) = %v, want nil", frame, err)
			}
			return
		}
		var pe *protocol.Error
		if !errors.As(err, &pe) || pe.Code != want.Code || pe.Message != want.Message {
			t.Fatalf("ReadStreamResp(%x) = %#v, want *protocol.Error{%v, %q}", frame, err, want.Code, want.Message)
		}
	})
}

// controlTypes are the JSON control messages and a constructor for each.
var controlTypes = []struct {
	t   protocol.MsgType
	new func() any
}{
	{protocol.TypeHello, func() any { return new(protocol.Hello) }},
	{protocol.TypeHelloResp, func() any { return new(protocol.HelloResp) }},
	{protocol.TypeAuth, func() any { return new(protocol.Auth) }},
	{protocol.TypeAuthResp, func() any { return new(protocol.AuthResp) }},
	{protocol.TypeBind, func() any { return new(protocol.Bind) }},
	{protocol.TypeBindResp, func() any { return new(protocol.BindResp) }},
	{protocol.TypeUnbind, func() any { return new(protocol.Unbind) }},
	{protocol.TypeUnbindResp, func() any { return new(protocol.UnbindResp) }},
	{protocol.TypeHeartbeat, func() any { return new(protocol.Heartbeat) }},
	{protocol.TypeGoAway, func() any { return new(protocol.GoAway) }},
	{protocol.TypeError, func() any { return new(protocol.Error) }},
}

func FuzzControl(f *testing.F) {
	for _, m := range []any{
		&protocol.Hello{Version: 1, MinVersion: 1, AgentVersion: "0.1.0", Capabilities: []string{"x"}, OS: "linux", Arch: "amd64"},
		&protocol.HelloResp{Version: 1, RelayVersion: "0.1.0"},
		&protocol.Auth{Authtoken: "fy_0123456789abcdef"},
		&protocol.AuthResp{SessionID: "s1", Account: "default"},
		&protocol.Bind{TunnelID: 1, Name: "web", Proto: "tls", Domain: "a.example.com", TerminateAt: "edge",
			MutualTLSCAs: "-----BEGIN CERTIFICATE-----\n"},
		&protocol.Bind{TunnelID: 3, Proto: "labeled", Labels: map[string]string{"edge": "web", "env": "prod"}},
		&protocol.Bind{TunnelID: 2, Proto: "tcp", RemoteAddr: ":10001"},
		&protocol.BindResp{TunnelID: 1, URLs: []string{"https://a.example.com"}, Warnings: []string{"w"}},
		&protocol.BindResp{TunnelID: 1, Error: &protocol.Error{Code: protocol.CodeBindConflict, Message: "taken"}},
		&protocol.Unbind{TunnelID: 3},
		&protocol.UnbindResp{TunnelID: 3},
		&protocol.Heartbeat{Seq: 1 << 63},
		&protocol.GoAway{Reason: "restart"},
		&protocol.Error{Code: protocol.CodeAuthFailed, Message: "authtoken not recognised"},
	} {
		b, err := json.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"labels":{},"urls":[],"capabilities":[],"proto":"http"}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, ct := range controlTypes {
			v1 := ct.new()
			if err := protocol.Decode(ct.t, body, v1); err != nil {
				var pe *protocol.Error
				if !errors.As(err, &pe) || pe.Code != protocol.CodeProtocol {
					t.Fatalf("Decode(%v, %q) error = %T %v, want *protocol.Error with CodeProtocol", ct.t, body, err, err)
				}
				continue
			}
			enc1, err := json.Marshal(v1)
			if err != nil {
				t.Fatalf("json.Marshal(Decode(%v, %q)) error = %v", ct.t, body, err)
			}
			v2 := ct.new()
			if err := protocol.Decode(ct.t, enc1, v2); err != nil {
				t.Fatalf("Decode(%v, %s) error = %v after Decode(%q) succeeded", ct.t, enc1, err, body)
			}
			// JSON cannot tell an empty slice or map from an absent (omitempty) one.
			if !reflect.DeepEqual(emptyToNil(v1), emptyToNil(v2)) {
				t.Fatalf("%v round trip of %q:\n got %#v\nwant %#v", ct.t, body, v2, v1)
			}
			enc2, err := json.Marshal(v2)
			if err != nil {
				t.Fatalf("json.Marshal(%#v) error = %v", v2, err)
			}
			if !bytes.Equal(enc1, enc2) {
				t.Fatalf("%v encodings differ: %s then %s", ct.t, enc1, enc2)
			}
		}
	})
}

// emptyToNil sets every empty slice and map reachable from the pointer v to nil, in place,
// and returns v.
func emptyToNil(v any) any {
	var walk func(reflect.Value)
	walk = func(rv reflect.Value) {
		switch rv.Kind() {
		case reflect.Pointer:
			if !rv.IsNil() {
				walk(rv.Elem())
			}
		case reflect.Struct:
			for i := range rv.NumField() {
				if rv.Type().Field(i).IsExported() {
					walk(rv.Field(i))
				}
			}
		case reflect.Slice, reflect.Map:
			if !rv.IsNil() && rv.Len() == 0 && rv.CanSet() {
				rv.Set(reflect.Zero(rv.Type()))
			}
		}
	}
	walk(reflect.ValueOf(v))
	return v
}
