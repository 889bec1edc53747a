package store

import (
	"errors"
	"testing"
	"time"
)

func TestRebindDollar(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"SELECT 1", "SELECT 1"},
		{"a = ? AND b = ?", "a = $1 AND b = $2"},
		{"x = '?' AND y = ? AND z = \"?\"", "x = '?' AND y = $1 AND z = \"?\""},
		{"'it''s' ? ?", "'it''s' $1 $2"},
	} {
		if got := rebindDollar(tc.in); got != tc.want {
			t.Errorf("rebindDollar(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestTimeText(t *testing.T) {
	in := time.Date(2026, 7, 8, 9, 10, 11, 12, time.FixedZone("CEST", 2*3600))
	s := formatTime(in)
	if s != "2026-07-08T07:10:11.000000012Z" {
		t.Errorf("formatTime = %s, want fixed-width UTC", s)
	}
	got, err := parseTime(s)
	if err != nil || !got.Equal(in) || got.Location() != time.UTC {
		t.Errorf("parseTime(%s) = %v, %v; want %v in UTC", s, got, err, in)
	}
	// Fixed width: text order is time order.
	if formatTime(in) >= formatTime(in.Add(time.Nanosecond*999_999_988)) {
		t.Error("text of an earlier time does not sort first")
	}
	if _, err := parseTime("yesterday"); err == nil {
		t.Error("parseTime(yesterday) = nil error")
	}
}

func TestNormalizeDomain(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"example.com", "example.com"},
		{"App.Example.COM.", "app.example.com"},
		{"*.Example.com", "*.example.com"},
		{"localhost", "localhost"},
		{"xn--bcher-kva.example", "xn--bcher-kva.example"},
		{"a-b.c-d.example", "a-b.c-d.example"},
	} {
		got, err := NormalizeDomain(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("NormalizeDomain(%q) = %q, %v; want %q, nil", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", ".", "*", "*.", "a..b", ".a.com", "-a.com", "a-.com", "a*.b.com", "a.*.com", "*.*.com", "a b.com", "exa_mple.com", "bücher.example", "a.com:443", strings64() + ".com"} {
		if got, err := NormalizeDomain(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("NormalizeDomain(%q) = %q, %v; want ErrInvalid", bad, got, err)
		}
	}
}

func strings64() string {
	b := make([]byte, 64)
	for i := range b {
		b[i] = 'a'
	}
	return string(b)
}

func TestNormalizeAddr(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"tcp.example.com:20001", "tcp.example.com:20001"},
		{"TCP.Example.com:020001", "tcp.example.com:20001"},
		{"[::1]:80", "[::1]:80"},
		{"0.0.0.0:65535", "0.0.0.0:65535"},
	} {
		got, err := NormalizeAddr(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("NormalizeAddr(%q) = %q, %v; want %q, nil", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "host", ":80", "host:0", "host:65536", "host:http", "::1:80", "a b:80", "host:-1"} {
		if got, err := NormalizeAddr(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("NormalizeAddr(%q) = %q, %v; want ErrInvalid", bad, got, err)
		}
	}
}
