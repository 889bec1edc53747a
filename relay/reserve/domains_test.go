package reserve

import (
	"errors"
	"strings"
	"testing"
)

func TestNormalize(t *testing.T) {
	for _, tc := range []struct{ in, want, err string }{
		{"App.Example.COM.", "app.example.com", ""},
		{"*.Example.com", "*.example.com", ""},
		{"*.com", "", "two labels"},
		{"a.*.example.com", "", "whole first label"},
		{"*example.com", "", "whole first label"},
		{"exa_mple.com", "", "only letters"},
		{"", "", "empty"},
	} {
		got, err := Normalize(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("Normalize(%q) error = %v, want one mentioning %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("Normalize(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestRules(t *testing.T) {
	ix := NewDomains("tunnel.test")
	ix.Replace([]Reservation{
		{ID: "rd_a1", AccountID: "A", Domain: "*.example.com"},
		{ID: "rd_a2", AccountID: "A", Domain: "app.a-only.test"},
		{ID: "rd_b1", AccountID: "B", Domain: "mine.tunnel.test"},
	})
	// Reserving.
	for _, tc := range []struct {
		account, domain string
		taken           bool // want ErrTaken
		ok              bool
	}{
		{"B", "foo.example.com", true, false},   // covered by A's wildcard
		{"B", "x.y.example.com", true, false},   // nested: still covered
		{"B", "*.sub.example.com", true, false}, // wildcard inside A's wildcard
		{"B", "*.a-only.test", true, false},     // would cover A's app.a-only.test
		{"A", "foo.example.com", false, true},   // A may add a more specific one
		{"B", "example.com", false, true},       // the apex is not covered by *.example.com
		{"A", "mine.tunnel.test", true, false},  // B's name under the base domain
		{"A", "tunnel.test", false, false},      // base domain: never
		{"A", "*.tunnel.test", false, false},    // wildcard over random names: never
		{"A", "*.example.com", false, false},    // already A's: a clear error, not ErrTaken
		{"C", "free.tunnel.test", false, true},  // names under the base are reservable
	} {
		err := ix.CanReserve(tc.account, tc.domain)
		if tc.ok != (err == nil) || tc.taken != errors.Is(err, ErrTaken) {
			t.Errorf("CanReserve(%s, %s) = %v; want ok=%v taken=%v", tc.account, tc.domain, err, tc.ok, tc.taken)
		}
	}
	// Binding.
	for _, tc := range []struct {
		account, name string
		want          error
	}{
		{"A", "foo.example.com", nil},
		{"A", "a.b.example.com", nil},
		{"A", "*.example.com", nil},
		{"A", "*.x.example.com", nil},
		{"B", "foo.example.com", ErrTaken},
		{"B", "*.example.com", ErrTaken},
		{"B", "random123.tunnel.test", nil},
		{"A", "mine.tunnel.test", ErrTaken},
		{"B", "mine.tunnel.test", nil},
		{"B", "*.other.test", ErrNotReserved},
		{"B", "custom.other.test", ErrNotReserved},
		{"A", "app.a-only.test", nil},
		{"A", "other.a-only.test", ErrNotReserved},
	} {
		err := ix.CanBind(tc.account, tc.name)
		if (tc.want == nil) != (err == nil) || (tc.want != nil && !errors.Is(err, tc.want)) {
			t.Errorf("CanBind(%s, %s) = %v, want %v", tc.account, tc.name, err, tc.want)
		}
	}
	// The refusal names the reservation in the way, once, and the fix.
	if err := ix.CanBind("B", "foo.example.com"); err == nil || err.Error() != "foo.example.com is covered by *.example.com, reserved by another account: choose another --domain" {
		t.Errorf("CanBind(B, foo.example.com) = %v", err)
	}
	// Most specific reservation wins a lookup.
	ix.Put(Reservation{ID: "rd_a3", AccountID: "A", Domain: "foo.example.com", CertificateID: "cert_1"})
	if r, _ := ix.Lookup("foo.example.com"); r.ID != "rd_a3" {
		t.Errorf("Lookup(foo.example.com) = %s, want rd_a3", r.ID)
	}
	if r, _ := ix.Lookup("bar.example.com"); r.ID != "rd_a1" {
		t.Errorf("Lookup(bar.example.com) = %s, want rd_a1", r.ID)
	}
	ix.Delete("*.example.com")
	if _, ok := ix.Lookup("bar.example.com"); ok {
		t.Error("Lookup(bar.example.com) found a reservation after the wildcard was deleted")
	}
}

func TestAddrs(t *testing.T) {
	s := NewAddrs()
	s.Replace([]Addr{{ID: "ra_1", AccountID: "A", Addr: "relay.test:40001", Port: 40001}})
	if err := s.CanBind("A", 40001); err != nil {
		t.Errorf("owner CanBind(40001) = %v, want nil", err)
	}
	if err := s.CanBind("B", 40001); !errors.Is(err, ErrTaken) {
		t.Errorf("other account CanBind(40001) = %v, want ErrTaken", err)
	}
	if err := s.CanBind("A", 40002); !errors.Is(err, ErrNotReserved) {
		t.Errorf("CanBind(unreserved 40002) = %v, want ErrNotReserved", err)
	}
	if !s.Reserved(40001) || s.Reserved(40002) {
		t.Error("Reserved disagrees with the set")
	}
	s.Delete(40001)
	if s.Reserved(40001) {
		t.Error("Reserved(40001) after Delete")
	}
}
