package sni

import (
	"bytes"
	"crypto/tls"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// FuzzParse checks that Parse never panics, that every error is one it documents, that a
// successful result is normalised, does not alias its input and survives an encode/parse round
// trip, and that no prefix of a parseable input parses to something else.
func FuzzParse(f *testing.F) {
	for _, tc := range realHelloCases {
		rec := captureHello(f, tc.cfg)
		f.Add(rec)
		f.Add(refragment(f, rec, 2, len(rec)/2))
		f.Add(rec[:len(rec)/2])
		f.Add(rec[:len(rec)-1])
	}
	f.Add(captureHello(f, &tls.Config{ServerName: "relay.example", MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS10}))
	f.Add(helloSpec{exts: []ext{sniExt(host("A.Example."), nameEntry{1, "x"}), alpnExt("h2", "h3")}}.bytes())
	f.Add(helloSpec{noExts: true}.bytes())
	f.Add([]byte("GET / HTTP/1.1\r\nHost: relay.example\r\n\r\n"))
	f.Add([]byte{recordTypeHandshake, 3, 1, 0, 4, handshakeTypeClientHello, 0xff, 0xff, 0xff})

	f.Fuzz(func(t *testing.T, data []byte) {
		in := bytes.Clone(data)
		h, err := Parse(in)
		if err != nil {
			if h != nil {
				t.Fatalf("Parse returned hello %+v and error %v, want nil hello", h, err)
			}
			if !isKnownError(err) {
				t.Fatalf("Parse error %v matches none of ErrIncomplete, ErrNotTLS, ErrMalformed", err)
			}
			return
		}

		if got := Normalize(h.ServerName); got != h.ServerName || strings.ToLower(h.ServerName) != h.ServerName {
			t.Fatalf("ServerName %q is not normalised (Normalize gives %q)", h.ServerName, got)
		}
		if len(h.Versions) == 0 {
			t.Fatalf("Versions is empty, want at least the legacy version")
		}

		// The result owns its memory.
		want := &ClientHello{ServerName: strings.Clone(h.ServerName), ALPN: append([]string(nil), h.ALPN...), Versions: append([]uint16(nil), h.Versions...)}
		for i := range in {
			in[i] = 0xff
		}
		if !reflect.DeepEqual(h, want) {
			t.Fatalf("hello changed when its input was overwritten: %+v, want %+v", h, want)
		}

		// Round trip: encode what was learned and parse it again.
		again, err := Parse(encodeHello(h))
		if err != nil {
			t.Fatalf("Parse(encode(%+v)) = %v, want nil error", h, err)
		}
		if !reflect.DeepEqual(again, h) {
			t.Fatalf("Parse(encode(h)) = %+v, want %+v", again, h)
		}

		// No prefix parses to anything but the same hello. Checking every prefix would make each
		// run quadratic and the fuzzer's minimiser crawl on hello-sized inputs, so check about 256
		// spread over the input, always including the longest (TestParsePrefixes checks them all
		// for real hellos).
		step := max(1, len(data)/256)
		for i := 0; i < len(data); i += step {
			if i+step >= len(data) && step > 1 {
				i = len(data) - 1
			}
			p, err := Parse(data[:i])
			if err == nil && !reflect.DeepEqual(p, h) {
				t.Fatalf("Parse(first %d of %d bytes) = %+v, want an error or %+v", i, len(data), p, h)
			}
			if err != nil && !errors.Is(err, ErrIncomplete) {
				t.Fatalf("Parse(first %d of %d bytes) = %v, want ErrIncomplete or success", i, len(data), err)
			}
		}
	})
}
