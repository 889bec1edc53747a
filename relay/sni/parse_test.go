package sni

import (
	"bytes"
	"crypto/tls"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// realHelloCases are crypto/tls client configurations and what Parse must find in their hellos.
var realHelloCases = []struct {
	name string
	cfg  *tls.Config
	want ClientHello
}{
	{
		name: "sni mixed case",
		cfg:  &tls.Config{ServerName: "Relay.Example"},
		want: ClientHello{ServerName: "relay.example", Versions: []uint16{tls.VersionTLS13, tls.VersionTLS12}},
	},
	{
		name: "ip address sends no sni",
		cfg:  &tls.Config{ServerName: "127.0.0.1"},
		want: ClientHello{Versions: []uint16{tls.VersionTLS13, tls.VersionTLS12}},
	},
	{
		name: "alpn h2 http/1.1",
		cfg:  &tls.Config{ServerName: "relay.example", NextProtos: []string{"h2", "http/1.1"}},
		want: ClientHello{ServerName: "relay.example", ALPN: []string{"h2", "http/1.1"}, Versions: []uint16{tls.VersionTLS13, tls.VersionTLS12}},
	},
	{
		name: "tls 1.2 only",
		cfg:  &tls.Config{ServerName: "relay.example", MaxVersion: tls.VersionTLS12},
		want: ClientHello{ServerName: "relay.example", Versions: []uint16{tls.VersionTLS12}},
	},
	{
		name: "tls 1.3 only",
		cfg:  &tls.Config{ServerName: "relay.example", MinVersion: tls.VersionTLS13},
		want: ClientHello{ServerName: "relay.example", Versions: []uint16{tls.VersionTLS13}},
	},
}

func TestParseRealHellos(t *testing.T) {
	for _, tc := range realHelloCases {
		t.Run(tc.name, func(t *testing.T) {
			rec := captureHello(t, tc.cfg)
			inputs := map[string][]byte{
				"one record":      rec,
				"three records":   refragment(t, rec, 2, len(rec)/2),
				"trailing record": append(bytes.Clone(rec), record(recordTypeAlert, []byte{3, 3}, []byte{2, 40})...),
			}
			for name, data := range inputs {
				got, err := Parse(data)
				if err != nil {
					t.Fatalf("%s: Parse = %v, want nil error", name, err)
				}
				if !reflect.DeepEqual(*got, tc.want) {
					t.Errorf("%s: Parse = %+v, want %+v", name, *got, tc.want)
				}
			}
		})
	}
}

// TestParsePrefixes checks that every strict prefix of a real hello, whole or fragmented, is
// ErrIncomplete, and that parse's size hint is a lower bound beyond the prefix.
func TestParsePrefixes(t *testing.T) {
	rec := captureHello(t, &tls.Config{ServerName: "relay.example", NextProtos: []string{"h2"}})
	for name, data := range map[string][]byte{
		"one record":    rec,
		"three records": refragment(t, rec, 2, len(rec)/2),
		"byte records":  refragment(t, rec, 1, 2, 3, 4, 5, 6),
	} {
		for i := range len(data) {
			h, need, err := parse(data[:i])
			if !errors.Is(err, ErrIncomplete) {
				t.Fatalf("%s: Parse(first %d of %d bytes) = %+v, %v; want ErrIncomplete", name, i, len(data), h, err)
			}
			if need <= i || need > len(data) {
				t.Fatalf("%s: parse(first %d of %d bytes) need = %d, want in (%d, %d]", name, i, len(data), need, i, len(data))
			}
		}
	}
}

func TestParseHandBuilt(t *testing.T) {
	h12 := []uint16{tls.VersionTLS12}
	tests := []struct {
		name string
		data []byte
		want ClientHello
	}{
		{
			name: "trailing dot and upper case",
			data: helloSpec{exts: []ext{sniExt(host("WWW.Example.COM."))}}.bytes(),
			want: ClientHello{ServerName: "www.example.com", Versions: h12},
		},
		{
			name: "no extensions block",
			data: helloSpec{vers: tls.VersionTLS10, noExts: true}.bytes(),
			want: ClientHello{Versions: []uint16{tls.VersionTLS10}},
		},
		{
			name: "empty extensions block",
			data: helloSpec{}.bytes(),
			want: ClientHello{Versions: h12},
		},
		{
			name: "unknown name type skipped",
			data: helloSpec{exts: []ext{sniExt(nameEntry{7, "ignored"}, host("a.example"))}}.bytes(),
			want: ClientHello{ServerName: "a.example", Versions: h12},
		},
		{
			name: "unknown extensions ignored",
			data: helloSpec{exts: []ext{{0xfafa, nil}, {21, make([]byte, 300)}, alpnExt("x")}}.bytes(),
			want: ClientHello{ALPN: []string{"x"}, Versions: h12},
		},
		{
			name: "supported_versions wins over legacy_version",
			data: helloSpec{exts: []ext{versionsExt(0x7f1c, tls.VersionTLS13)}}.bytes(),
			want: ClientHello{Versions: []uint16{0x7f1c, tls.VersionTLS13}},
		},
		{
			name: "session id of 32 bytes",
			data: helloSpec{sessionID: make([]byte, 32), exts: []ext{sniExt(host("b.example"))}}.bytes(),
			want: ClientHello{ServerName: "b.example", Versions: h12},
		},
		{
			name: "handshake header split over records",
			data: refragment(t, helloSpec{exts: []ext{sniExt(host("c.example"))}}.bytes(), 1, 3, 4, 40),
			want: ClientHello{ServerName: "c.example", Versions: h12},
		},
		{
			name: "bytes after the hello in its record are ignored",
			data: record(recordTypeHandshake, []byte{3, 1}, append(handshakeMsg(helloSpec{}.body()), 0, 0, 0, 0)),
			want: ClientHello{Versions: h12},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse(tc.data)
			if err != nil {
				t.Fatalf("Parse = %v, want nil error", err)
			}
			if !reflect.DeepEqual(*got, tc.want) {
				t.Errorf("Parse = %+v, want %+v", *got, tc.want)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	valid := helloSpec{exts: []ext{sniExt(host("relay.example"))}}.bytes()
	v := []byte{3, 1}
	hugeLen := []byte{handshakeTypeClientHello, 0xff, 0xff, 0xff}
	tests := []struct {
		name    string
		data    []byte
		wantErr error
		wantMsg string // substring of the error message, if set
	}{
		{"empty", nil, ErrIncomplete, ""},
		{"one byte", []byte{recordTypeHandshake}, ErrIncomplete, ""},
		{"header only", valid[:5], ErrIncomplete, ""},
		{"half", valid[:len(valid)/2], ErrIncomplete, ""},
		{"all but one", valid[:len(valid)-1], ErrIncomplete, ""},
		{"http request", []byte("GET / HTTP/1.1\r\nHost: relay.example\r\n\r\n"), ErrNotTLS, "0x47"},
		{"single G", []byte("G"), ErrNotTLS, ""},
		{"ssh banner", []byte("SSH-2.0-OpenSSH_9.6\r\n"), ErrNotTLS, ""},
		{"sslv2 hello", []byte{0x80, 0x2e, 0x01, 0x03, 0x01}, ErrNotTLS, ""},
		{"alert record first", record(recordTypeAlert, []byte{3, 3}, []byte{2, 40}), ErrNotTLS, ""},
		{"bad record major version", []byte{recordTypeHandshake, 4, 1}, ErrNotTLS, ""},
		{"empty record", []byte{recordTypeHandshake, 3, 1, 0, 0}, ErrMalformed, "empty"},
		{"record too long", []byte{recordTypeHandshake, 3, 1, 0x41, 0x01}, ErrMalformed, "16641 exceeds 16640"},
		{"server hello", record(recordTypeHandshake, v, []byte{2, 0, 0, 0}), ErrMalformed, "type 2"},
		{"handshake length too large", record(recordTypeHandshake, v, hugeLen), ErrMalformed, "exceeds"},
		{"application data mid hello", append(record(recordTypeHandshake, v, valid[5:20]), record(23, []byte{3, 3}, []byte{1})...), ErrMalformed, "record type 23"},
		{"bad major in second record", append(record(recordTypeHandshake, v, valid[5:20]), 22, 2), ErrMalformed, "major"},
		{"body shorter than random", record(recordTypeHandshake, v, handshakeMsg(make([]byte, 20))), ErrMalformed, "random"},
		{"session id 33 bytes", helloSpec{sessionID: make([]byte, 33)}.bytes(), ErrMalformed, "session_id"},
		{"odd cipher suites", helloSpec{suites: []byte{1, 2, 3}}.bytes(), ErrMalformed, "cipher_suites"},
		{"no cipher suites", helloSpec{suites: []byte{}}.bytes(), ErrMalformed, "cipher_suites"},
		{"no compression", helloSpec{compression: []byte{}}.bytes(), ErrMalformed, "compression"},
		{"bytes after extensions", helloSpec{trailing: []byte{0}}.bytes(), ErrMalformed, "after extensions"},
		{"extensions length overrun", helloSpec{noExts: true, trailing: []byte{0, 9, 0}}.bytes(), ErrMalformed, "extensions"},
		{"extension body overrun", helloSpec{noExts: true, trailing: []byte{0, 4, 0, 0, 0, 9}}.bytes(), ErrMalformed, "extension 0"},
		{"duplicate sni", helloSpec{exts: []ext{sniExt(host("a.example")), sniExt(host("b.example"))}}.bytes(), ErrMalformed, "duplicate server_name"},
		{"two host names", helloSpec{exts: []ext{sniExt(host("a.example"), host("b.example"))}}.bytes(), ErrMalformed, "more than one"},
		{"empty host name", helloSpec{exts: []ext{sniExt(host(""))}}.bytes(), ErrMalformed, "empty"},
		{"empty server name list", helloSpec{exts: []ext{{extServerName, []byte{0, 0}}}}.bytes(), ErrMalformed, "server_name"},
		{"sni list overrun", helloSpec{exts: []ext{{extServerName, []byte{0, 9, 0}}}}.bytes(), ErrMalformed, "server_name"},
		{"sni junk after list", helloSpec{exts: []ext{{extServerName, append(sniExt(host("a")).data, 0)}}}.bytes(), ErrMalformed, "server_name"},
		{"host name dot only", helloSpec{exts: []ext{sniExt(host("."))}}.bytes(), ErrMalformed, "empty label"},
		{"host name two trailing dots", helloSpec{exts: []ext{sniExt(host("a.example.."))}}.bytes(), ErrMalformed, "empty label"},
		{"host name leading dot", helloSpec{exts: []ext{sniExt(host(".a.example"))}}.bytes(), ErrMalformed, "empty label"},
		{"host name with NUL", helloSpec{exts: []ext{sniExt(host("a.example\x00.evil"))}}.bytes(), ErrMalformed, "0x00"},
		{"host name with space", helloSpec{exts: []ext{sniExt(host("a example"))}}.bytes(), ErrMalformed, "0x20"},
		{"host name non ascii", helloSpec{exts: []ext{sniExt(host("\u212Aelvin.example"))}}.bytes(), ErrMalformed, "0xe2"},
		{"duplicate alpn", helloSpec{exts: []ext{alpnExt("h2"), alpnExt("h2")}}.bytes(), ErrMalformed, "duplicate application"},
		{"empty alpn name", helloSpec{exts: []ext{alpnExt("h2", "")}}.bytes(), ErrMalformed, "ALPN"},
		{"empty alpn list", helloSpec{exts: []ext{{extALPN, []byte{0, 0}}}}.bytes(), ErrMalformed, "application_layer"},
		{"duplicate supported_versions", helloSpec{exts: []ext{versionsExt(0x0304), versionsExt(0x0304)}}.bytes(), ErrMalformed, "duplicate supported_versions"},
		{"odd supported_versions", helloSpec{exts: []ext{{extSupportedVersions, []byte{3, 3, 4, 3}}}}.bytes(), ErrMalformed, "supported_versions"},
		{"empty supported_versions", helloSpec{exts: []ext{{extSupportedVersions, []byte{0}}}}.bytes(), ErrMalformed, "supported_versions"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse(tc.data)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Parse = %+v, %v; want error %v", got, err, tc.wantErr)
			}
			if got != nil {
				t.Errorf("Parse returned hello %+v with error, want nil", got)
			}
			if !strings.Contains(err.Error(), tc.wantMsg) {
				t.Errorf("Parse error = %q, want it to contain %q", err, tc.wantMsg)
			}
		})
	}
}

// TestParseDoesNotAlias checks that the result owns its memory: the relay keeps the hello
// after the replay buffer has been read and dropped.
func TestParseDoesNotAlias(t *testing.T) {
	data := helloSpec{exts: []ext{sniExt(host("relay.example")), alpnExt("h2")}}.bytes()
	h, err := Parse(data)
	if err != nil {
		t.Fatalf("Parse = %v, want nil error", err)
	}
	for i := range data {
		data[i] = 'X'
	}
	if h.ServerName != "relay.example" || len(h.ALPN) != 1 || h.ALPN[0] != "h2" {
		t.Errorf("after overwriting the input, hello = %+v, want relay.example [h2]", *h)
	}
}

func TestNormalize(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{".", ""},
		{"relay.example", "relay.example"},
		{"Relay.EXAMPLE.", "relay.example"},
		{"a..", "a."},
		{"MiXeD-09_Z", "mixed-09_z"},
		{"\u212Aelvin.example", "\u212Aelvin.example"}, // Kelvin sign must not fold to "k"
		{"ÄÖ.Example", "ÄÖ.example"},
	}
	for _, tc := range tests {
		if got := Normalize(tc.in); got != tc.want {
			t.Errorf("Normalize(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
