package sni

import (
	"errors"
	"fmt"
)

// ClientHello is what the relay learned from a peeked TLS ClientHello.
type ClientHello struct {
	ServerName string   // SNI host_name, normalised: lower-case, trailing dot stripped; "" if absent
	ALPN       []string // application_layer_protocol_negotiation, in order
	Versions   []uint16 // supported_versions extension if present, else [legacy_version]
}

// Errors returned by Parse and Peek; test with errors.Is, the returned errors add detail.
var (
	// ErrIncomplete means the data ends before the ClientHello does: read more and retry.
	ErrIncomplete = errors.New("incomplete ClientHello")
	// ErrNotTLS means the data does not start with a TLS handshake record (e.g. plain HTTP).
	ErrNotTLS = errors.New("not a TLS handshake")
	// ErrMalformed means the data is a TLS handshake record but not a valid ClientHello.
	ErrMalformed = errors.New("malformed ClientHello")
	// ErrTooLarge means the ClientHello does not fit in Peek's maxBytes.
	ErrTooLarge = errors.New("ClientHello too large")
	// ErrTimeout means Peek's deadline passed before a whole ClientHello arrived.
	ErrTimeout = errors.New("client sent no complete ClientHello in time")
)

// Wire constants (RFC 8446 §4, §5; RFC 6066 §3; RFC 7301 §3.1).
const (
	recordHeaderLen    = 5           // type(1) version(2) length(2)
	maxRecordLen       = 16384 + 256 // record body limit; larger is malformed
	handshakeHeaderLen = 4           // msg_type(1) length(3)

	// minHelloLen is the shortest body parseHello accepts: legacy_version, random,
	// empty session_id, one cipher suite, one compression method, no extensions.
	minHelloLen = 2 + 32 + 1 + 2 + 2 + 1 + 1
	// maxHelloLen is the longest possible ClientHello body: every vector at its maximum.
	maxHelloLen = 2 + 32 + (1 + 32) + (2 + 65534) + (1 + 255) + (2 + 65535)

	recordTypeAlert          = 21
	recordTypeHandshake      = 22
	handshakeTypeClientHello = 1

	extServerName        = 0
	extALPN              = 16
	extSupportedVersions = 43

	nameTypeHostName = 0
)

// Parse parses the ClientHello from the raw bytes of one or more TLS records (record layer
// included). It returns ErrIncomplete (wrapped or exact, check with errors.Is) when more bytes are
// needed, and a descriptive error (ErrNotTLS for non-handshake data, e.g. "GET / HTTP/1.1",
// ErrMalformed otherwise) for malformed input. It handles a ClientHello fragmented across several
// handshake records, ignores any bytes after the ClientHello, never panics and never reads past
// len(data). The result does not alias data.
func Parse(data []byte) (*ClientHello, error) {
	h, _, err := parse(data)
	return h, err
}

// parse is Parse that also returns, with ErrIncomplete, a lower bound (> len(data)) on the
// total length data must reach before the ClientHello can be complete. Peek uses it to skip
// useless re-parses and to reject a hello that cannot fit in its buffer.
func parse(data []byte) (*ClientHello, int, error) {
	var (
		msg   []byte // handshake bytes gathered so far
		owned bool   // msg is a private copy rather than a sub-slice of data
	)
	off := 0
	for {
		rest := data[off:]
		if err := checkRecordHeader(rest, off == 0); err != nil {
			return nil, 0, err
		}
		if len(rest) < recordHeaderLen {
			return nil, off + recordHeaderLen + msgNeed(msg), ErrIncomplete
		}
		n := int(rest[3])<<8 | int(rest[4])
		if n == 0 {
			return nil, 0, malformed("empty handshake record")
		}
		if n > maxRecordLen {
			return nil, 0, malformed(fmt.Sprintf("record length %d exceeds %d", n, maxRecordLen))
		}
		end := off + recordHeaderLen + n
		frag := rest[recordHeaderLen:min(len(rest), recordHeaderLen+n)]
		switch {
		case off == 0:
			msg = frag
		case !owned:
			// Second record: copy once into a buffer that can hold everything that is left
			// (bounded by len(data), never by a declared length).
			buf := make([]byte, len(msg), len(msg)+len(rest))
			copy(buf, msg)
			msg, owned = append(buf, frag...), true
		default:
			msg = append(msg, frag...)
		}

		if len(msg) >= 1 && msg[0] != handshakeTypeClientHello {
			return nil, 0, malformed(fmt.Sprintf("handshake message type %d is not ClientHello", msg[0]))
		}
		if len(msg) >= handshakeHeaderLen {
			bodyLen := int(msg[1])<<16 | int(msg[2])<<8 | int(msg[3])
			if bodyLen > maxHelloLen {
				return nil, 0, malformed(fmt.Sprintf("handshake length %d exceeds %d", bodyLen, maxHelloLen))
			}
			if total := handshakeHeaderLen + bodyLen; len(msg) >= total {
				h, err := parseHello(msg[handshakeHeaderLen:total])
				return h, 0, err
			}
		}
		if end > len(data) {
			need, left := msgNeed(msg), end-len(data)
			if need <= left {
				return nil, len(data) + need, ErrIncomplete
			}
			return nil, end + recordHeaderLen + need - left, ErrIncomplete
		}
		off = end
	}
}

// msgNeed is the least number of handshake bytes still missing after msg.
func msgNeed(msg []byte) int {
	if len(msg) < handshakeHeaderLen {
		return handshakeHeaderLen - len(msg) + minHelloLen
	}
	return handshakeHeaderLen + (int(msg[1])<<16 | int(msg[2])<<8 | int(msg[3])) - len(msg)
}

// checkRecordHeader checks the bytes of a record header that are present. For the first record a
// mismatch means the peer does not speak TLS at all; later it means a broken ClientHello.
func checkRecordHeader(hdr []byte, first bool) error {
	if len(hdr) >= 1 && hdr[0] != recordTypeHandshake {
		if first {
			return fmt.Errorf("%w: first byte 0x%02x is not a handshake record", ErrNotTLS, hdr[0])
		}
		return malformed(fmt.Sprintf("record type %d inside ClientHello", hdr[0]))
	}
	if len(hdr) >= 2 && hdr[1] != 3 {
		if first {
			return fmt.Errorf("%w: record version major %d", ErrNotTLS, hdr[1])
		}
		return malformed(fmt.Sprintf("record version major %d inside ClientHello", hdr[1]))
	}
	return nil
}

func malformed(what string) error {
	return fmt.Errorf("%w: %s", ErrMalformed, what)
}

// parseHello parses a ClientHello body (after the handshake header), RFC 8446 §4.1.2.
func parseHello(body []byte) (*ClientHello, error) {
	r := reader(body)
	vers, ok := r.u16()
	if !ok {
		return nil, malformed("truncated legacy_version")
	}
	if _, ok := r.bytes(32); !ok {
		return nil, malformed("truncated random")
	}
	sid, ok := r.vec8()
	if !ok {
		return nil, malformed("truncated session_id")
	}
	if len(sid) > 32 {
		return nil, malformed(fmt.Sprintf("session_id length %d exceeds 32", len(sid)))
	}
	suites, ok := r.vec16()
	if !ok {
		return nil, malformed("truncated cipher_suites")
	}
	if len(suites) == 0 || len(suites)%2 != 0 {
		return nil, malformed(fmt.Sprintf("cipher_suites length %d is not a positive even number", len(suites)))
	}
	comp, ok := r.vec8()
	if !ok {
		return nil, malformed("truncated compression_methods")
	}
	if len(comp) == 0 {
		return nil, malformed("no compression_methods")
	}

	h := &ClientHello{}
	if len(r) > 0 { // extensions are optional before TLS 1.3
		exts, ok := r.vec16()
		if !ok {
			return nil, malformed("truncated extensions")
		}
		if len(r) != 0 {
			return nil, malformed(fmt.Sprintf("%d bytes after extensions", len(r)))
		}
		if err := h.parseExtensions(exts); err != nil {
			return nil, err
		}
	}
	if h.Versions == nil {
		h.Versions = []uint16{vers}
	}
	return h, nil
}

func (h *ClientHello) parseExtensions(exts reader) error {
	var seenSNI, seenALPN, seenVersions bool
	for len(exts) > 0 {
		typ, ok := exts.u16()
		if !ok {
			return malformed("truncated extension type")
		}
		data, ok := exts.vec16()
		if !ok {
			return malformed(fmt.Sprintf("truncated extension %d", typ))
		}
		var err error
		switch typ {
		case extServerName:
			if seenSNI {
				return malformed("duplicate server_name extension")
			}
			seenSNI = true
			err = h.parseServerName(data)
		case extALPN:
			if seenALPN {
				return malformed("duplicate application_layer_protocol_negotiation extension")
			}
			seenALPN = true
			err = h.parseALPN(data)
		case extSupportedVersions:
			if seenVersions {
				return malformed("duplicate supported_versions extension")
			}
			seenVersions = true
			err = h.parseVersions(data)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// parseServerName parses the server_name extension (RFC 6066 §3).
func (h *ClientHello) parseServerName(data reader) error {
	list, ok := data.vec16()
	if !ok || len(data) != 0 || len(list) == 0 {
		return malformed("bad server_name extension")
	}
	found := false
	for len(list) > 0 {
		typ, ok := list.u8()
		if !ok {
			return malformed("truncated server_name entry")
		}
		name, ok := list.vec16()
		if !ok || len(name) == 0 {
			return malformed("truncated or empty server_name entry")
		}
		if typ != nameTypeHostName {
			continue
		}
		if found {
			return malformed("more than one host_name in server_name")
		}
		found = true
		if err := checkHostName(name); err != nil {
			return err
		}
		h.ServerName = Normalize(string(name))
	}
	return nil
}

// checkHostName accepts printable ASCII with no empty label; one trailing dot is tolerated
// (and removed by Normalize).
func checkHostName(name []byte) error {
	if name[len(name)-1] == '.' {
		name = name[:len(name)-1]
	}
	if len(name) == 0 || name[0] == '.' || name[len(name)-1] == '.' {
		return malformed("server name has an empty label")
	}
	prevDot := false
	for _, b := range name {
		if b <= ' ' || b >= 0x7f {
			return malformed(fmt.Sprintf("server name contains byte 0x%02x", b))
		}
		if b == '.' && prevDot {
			return malformed("server name has an empty label")
		}
		prevDot = b == '.'
	}
	return nil
}

// parseALPN parses the application_layer_protocol_negotiation extension (RFC 7301 §3.1).
func (h *ClientHello) parseALPN(data reader) error {
	list, ok := data.vec16()
	if !ok || len(data) != 0 || len(list) == 0 {
		return malformed("bad application_layer_protocol_negotiation extension")
	}
	for len(list) > 0 {
		proto, ok := list.vec8()
		if !ok || len(proto) == 0 {
			return malformed("truncated or empty ALPN protocol name")
		}
		h.ALPN = append(h.ALPN, string(proto))
	}
	return nil
}

// parseVersions parses the supported_versions extension (RFC 8446 §4.2.1).
func (h *ClientHello) parseVersions(data reader) error {
	list, ok := data.vec8()
	if !ok || len(data) != 0 || len(list) == 0 || len(list)%2 != 0 {
		return malformed("bad supported_versions extension")
	}
	h.Versions = make([]uint16, 0, len(list)/2)
	for len(list) > 0 {
		v, _ := list.u16()
		h.Versions = append(h.Versions, v)
	}
	return nil
}

// Normalize returns name lower-cased (ASCII letters only) with one trailing dot removed, the
// form in which ClientHello.ServerName is reported. Use it for HTTP Host headers too (after
// removing any port) so both routes compare equal. Non-ASCII bytes are left alone: Unicode case
// folding could turn a look-alike such as the Kelvin sign into an ASCII letter.
func Normalize(name string) string {
	if n := len(name); n > 0 && name[n-1] == '.' {
		name = name[:n-1]
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; 'A' <= c && c <= 'Z' {
			b := []byte(name)
			for j := i; j < len(b); j++ {
				if 'A' <= b[j] && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return name
}

// reader consumes big-endian TLS wire data; every method reports false instead of reading
// past the end.
type reader []byte

func (r *reader) u8() (uint8, bool) {
	if len(*r) < 1 {
		return 0, false
	}
	v := (*r)[0]
	*r = (*r)[1:]
	return v, true
}

func (r *reader) u16() (uint16, bool) {
	if len(*r) < 2 {
		return 0, false
	}
	v := uint16((*r)[0])<<8 | uint16((*r)[1])
	*r = (*r)[2:]
	return v, true
}

func (r *reader) bytes(n int) (reader, bool) {
	if n < 0 || len(*r) < n {
		return nil, false
	}
	v := (*r)[:n:n]
	*r = (*r)[n:]
	return v, true
}

// vec8 reads a vector with a one-byte length prefix.
func (r *reader) vec8() (reader, bool) {
	n, ok := r.u8()
	if !ok {
		return nil, false
	}
	return r.bytes(int(n))
}

// vec16 reads a vector with a two-byte length prefix.
func (r *reader) vec16() (reader, bool) {
	n, ok := r.u16()
	if !ok {
		return nil, false
	}
	return r.bytes(int(n))
}
