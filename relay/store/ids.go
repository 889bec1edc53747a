package store

import (
	"crypto/rand"
	"encoding/binary"
	"sync"
	"time"
)

// Id prefixes, one per kind of object.
const (
	PrefixAccount              = "acct"
	PrefixCredential           = "cr"
	PrefixAPIKey               = "ak"
	PrefixReservedDomain       = "rd"
	PrefixTLSCertificate       = "cert"
	PrefixCertificateAuthority = "ca"
	PrefixReservedAddr         = "ra"
)

// idAlphabet is Crockford's base32 in lower case: its characters are in ASCII order, so
// ids compare as text in the order of the numbers they encode.
const idAlphabet = "0123456789abcdefghjkmnpqrstvwxyz"

// idLen is the length of an id after its prefix and "_": 128 bits in 5-bit digits.
const idLen = 26

// NewID returns prefix + "_" + 26 lower-case base32 digits of a 48-bit Unix time in
// milliseconds followed by 80 random bits. Ids sort by creation: within one
// millisecond (or if the clock steps back) the random part counts up from the previous
// id's, as in ULID's monotonic mode.
func NewID(prefix string) string {
	return prefix + "_" + ids.next(time.Now())
}

// ids is the process's id source. It is shared state on purpose, like crypto/rand's
// reader: every Store in the process must hand out ids in one order.
var ids idSource

type idSource struct {
	mu   sync.Mutex
	ms   uint64   // time part of the last id
	rand [10]byte // random part of the last id
}

func (g *idSource) next(t time.Time) string {
	ms := uint64(t.UnixMilli()) & (1<<48 - 1)
	g.mu.Lock()
	defer g.mu.Unlock()
	if ms > g.ms || !g.increment() {
		if ms <= g.ms { // the random part overflowed: borrow the next millisecond
			ms = g.ms + 1
		}
		g.ms = ms
		rand.Read(g.rand[:])
	}
	var b [16]byte
	binary.BigEndian.PutUint16(b[0:], uint16(g.ms>>32))
	binary.BigEndian.PutUint32(b[2:], uint32(g.ms))
	copy(b[6:], g.rand[:])
	return encodeID(b)
}

// increment adds one to the random part, reporting false if it overflowed.
func (g *idSource) increment() bool {
	for i := len(g.rand) - 1; i >= 0; i-- {
		g.rand[i]++
		if g.rand[i] != 0 {
			return true
		}
	}
	return false
}

// encodeID writes the 128-bit big-endian b as 26 base32 digits (the first holds 3 bits).
func encodeID(b [16]byte) string {
	hi := binary.BigEndian.Uint64(b[:8])
	lo := binary.BigEndian.Uint64(b[8:])
	var out [idLen]byte
	for i := idLen - 1; i >= 0; i-- {
		out[i] = idAlphabet[lo&31]
		lo = lo>>5 | hi<<59
		hi >>= 5
	}
	return string(out[:])
}
