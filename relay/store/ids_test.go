package store

import (
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestNewIDShape(t *testing.T) {
	re := regexp.MustCompile(`^rd_[0-9a-hjkmnp-tv-z]{26}$`)
	seen := map[string]bool{}
	for range 1000 {
		id := NewID(PrefixReservedDomain)
		if !re.MatchString(id) {
			t.Fatalf("NewID(rd) = %q, want rd_ and 26 lower-case Crockford base32 digits", id)
		}
		if seen[id] {
			t.Fatalf("NewID returned %q twice", id)
		}
		seen[id] = true
	}
}

func TestNewIDSortsByCreation(t *testing.T) {
	var list []string
	for range 5000 { // many in one millisecond
		list = append(list, NewID("x"))
	}
	if !slices.IsSorted(list) {
		t.Error("ids made one after another do not sort in creation order")
	}
	for i := 1; i < len(list); i++ {
		if list[i] == list[i-1] {
			t.Fatalf("id %s twice", list[i])
		}
	}
}

func TestIDSourceClock(t *testing.T) {
	var g idSource
	t0 := time.UnixMilli(1_750_000_000_000)
	a := g.next(t0)
	b := g.next(t0.Add(-time.Second)) // the clock stepped back
	c := g.next(t0.Add(time.Millisecond))
	if !(a < b && b < c) {
		t.Errorf("ids at t, t-1s, t+1ms = %s %s %s, want increasing", a, b, c)
	}
	// The time part is the first 10 digits: 48 bits of milliseconds.
	const want = "01jxt21q00" // 1750000000000 in 10 base32 digits (50 bits, top 2 zero)
	if a[:10] != want {
		t.Errorf("time part of an id at %d ms = %s, want %s", t0.UnixMilli(), a[:10], want)
	}
	// The random part overflowing moves to the next millisecond.
	for i := range g.rand {
		g.rand[i] = 0xff
	}
	d := g.next(t0)
	if d <= c || d[:10] == c[:10] {
		t.Errorf("id after the random part overflowed = %s, want > %s with a later time part", d, c)
	}
}

func TestEncodeID(t *testing.T) {
	for _, tc := range []struct {
		in   [16]byte
		want string
	}{
		{[16]byte{}, strings.Repeat("0", 26)},
		{[16]byte{15: 1}, strings.Repeat("0", 25) + "1"},
		{[16]byte{15: 31}, strings.Repeat("0", 25) + "z"},
		{[16]byte{15: 32}, strings.Repeat("0", 24) + "10"},
		{[16]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, "7" + strings.Repeat("z", 25)},
		{[16]byte{0: 0x80}, "4" + strings.Repeat("0", 25)},
	} {
		if got := encodeID(tc.in); got != tc.want {
			t.Errorf("encodeID(%x) = %s, want %s", tc.in, got, tc.want)
		}
	}
}
