package route

import "testing"

func TestHostMostSpecific(t *testing.T) {
	tb := NewTable()
	exact := &Tunnel{Host: "foo.example.com"}
	wild := &Tunnel{Host: "*.example.com"}
	nested := &Tunnel{Host: "*.bar.example.com"}
	for _, tu := range []*Tunnel{exact, wild, nested} {
		if err := tb.AddHost(tu.Host, tu); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		host string
		want *Tunnel
	}{
		{"foo.example.com", exact},
		{"baz.example.com", wild},
		{"a.b.c.example.com", wild},
		{"x.bar.example.com", nested},
		{"y.x.bar.example.com", nested},
		{"bar.example.com", wild},
		{"example.com", nil},
		{"other.com", nil},
		{"fooexample.com", nil},
	} {
		if got := tb.Host(tc.host); got != tc.want {
			t.Errorf("Host(%q) = %v, want %v", tc.host, name(got), name(tc.want))
		}
	}
	tb.Remove(wild)
	if got := tb.Host("baz.example.com"); got != nil {
		t.Errorf("after removing the wildcard, Host(baz.example.com) = %s, want nil", got.Host)
	}
	tb.Remove(nested)
	if tb.wildcards != 0 {
		t.Errorf("wildcard count = %d after removing both, want 0", tb.wildcards)
	}
}

func name(t *Tunnel) string {
	if t == nil {
		return "<nil>"
	}
	return t.Host
}

func TestWildcardCovers(t *testing.T) {
	for _, tc := range []struct {
		pattern, name string
		want          bool
	}{
		{"*.example.com", "a.example.com", true},
		{"*.example.com", "a.b.example.com", true},
		{"*.example.com", "example.com", false},
		{"*.example.com", "aexample.com", false},
		{"a.example.com", "a.example.com", true},
		{"a.example.com", "b.example.com", false},
	} {
		if got := WildcardCovers(tc.pattern, tc.name); got != tc.want {
			t.Errorf("WildcardCovers(%q, %q) = %v, want %v", tc.pattern, tc.name, got, tc.want)
		}
	}
}
