package config_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"

	"github.com/ferrytunnel/ferry/relay/config"
)

func TestDefaults(t *testing.T) {
	got := config.Defaults()
	want := config.Config{
		QUICAddr:  ":443",
		HTTPSAddr: ":443",
		HTTPAddr:  ":80",
		TCPPorts:  "10000-10999",
		Data:      "./ferry-data",
		APIAddr:   "127.0.0.1:4041",
		ACMECA:    "https://acme-v02.api.letsencrypt.org/directory",
		LogFormat: "logfmt",
		LogLevel:  "info",
	}
	if got != want {
		t.Fatalf("Defaults() = %+v, want %+v", got, want)
	}
}

func TestApplyDev(t *testing.T) {
	c := config.Defaults()
	c.ApplyDev()
	want := config.Config{
		QUICAddr:           "127.0.0.1:4443",
		HTTPSAddr:          "127.0.0.1:4443",
		HTTPAddr:           "127.0.0.1:4080",
		TCPPorts:           "40000-40099",
		Domain:             "localhost",
		EventsAllowPrivate: true,
		Data:               "./ferry-data",
		APIAddr:            "127.0.0.1:4041",
		ACMECA:             "https://acme-v02.api.letsencrypt.org/directory",
		LogFormat:          "logfmt",
		LogLevel:           "info",
		Dev:                true,
	}
	if c != want {
		t.Fatalf("Defaults()+ApplyDev() = %+v, want %+v", c, want)
	}
	// Dev needs no certificate: the dev CA issues one.
	if err := c.Validate(); err != nil {
		t.Errorf("Defaults()+ApplyDev() Validate() = %v, want nil", err)
	}
}

func TestParsePorts(t *testing.T) {
	tests := []struct {
		in      string
		want    config.PortRange
		wantErr bool
	}{
		{"10000-10999", config.PortRange{Low: 10000, High: 10999}, false},
		{"1-65535", config.PortRange{Low: 1, High: 65535}, false},
		{"8080", config.PortRange{Low: 8080, High: 8080}, false},
		{"8080-8080", config.PortRange{Low: 8080, High: 8080}, false},
		{" 100 - 200 ", config.PortRange{Low: 100, High: 200}, false},
		{"200-100", config.PortRange{}, true},     // reversed
		{"0-100", config.PortRange{}, true},       // below range
		{"0", config.PortRange{}, true},           // below range
		{"1-65536", config.PortRange{}, true},     // above range
		{"70000", config.PortRange{}, true},       // above range
		{"-5-10", config.PortRange{}, true},       // negative
		{"", config.PortRange{}, true},            // empty
		{"abc", config.PortRange{}, true},         // garbage
		{"10-x", config.PortRange{}, true},        // garbage high
		{"10000:10999", config.PortRange{}, true}, // wrong separator
		{"1-2-3", config.PortRange{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := config.ParsePorts(tt.in)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("ParsePorts(%q) = %+v, nil; want an error", tt.in, got)
				}
				for _, s := range []string{"--tcp-ports", "tcp_ports", "LOW-HIGH", tt.in} {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("ParsePorts(%q) error = %q, want it to name %q", tt.in, err, s)
					}
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParsePorts(%q) = %+v, %v; want %+v, nil", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestPortRangeContains(t *testing.T) {
	r := config.PortRange{Low: 10, High: 20}
	tests := []struct {
		p    int
		want bool
	}{{9, false}, {10, true}, {15, true}, {20, true}, {21, false}}
	for _, tt := range tests {
		if got := r.Contains(tt.p); got != tt.want {
			t.Errorf("PortRange{10,20}.Contains(%d) = %v, want %v", tt.p, got, tt.want)
		}
	}
}

// valid returns a production configuration that passes Validate.
func valid() config.Config {
	c := config.Defaults()
	c.Domain = "tunnel.example.com"
	c.TLSCert = "cert.pem"
	c.TLSKey = "key.pem"
	return c
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name    string
		edit    func(*config.Config)
		wantErr []string // substrings; none means valid
	}{
		{"valid", func(*config.Config) {}, nil},
		{"dev without cert", func(c *config.Config) { c.TLSCert, c.TLSKey = "", ""; c.ApplyDev() }, nil},
		{"empty https and http disable them", func(c *config.Config) { c.HTTPSAddr, c.HTTPAddr = "", "" }, nil},
		{"json logs, debug", func(c *config.Config) { c.LogFormat, c.LogLevel = "json", "debug" }, nil},
		{"missing domain", func(c *config.Config) { c.Domain = "" }, []string{"--domain is required"}},
		{"wildcard domain", func(c *config.Config) { c.Domain = "*.example.com" }, []string{`--domain "*.example.com"`, "no wildcard"}},
		{"domain with port", func(c *config.Config) { c.Domain = "example.com:443" }, []string{`--domain "example.com:443"`}},
		{"domain with leading dot", func(c *config.Config) { c.Domain = ".example.com" }, []string{`--domain ".example.com"`}},
		{"missing cert and key without dev", func(c *config.Config) { c.TLSCert, c.TLSKey = "", "" }, []string{"--tls-cert and --tls-key are required", "--dev"}},
		{"cert without key", func(c *config.Config) { c.TLSKey = "" }, []string{"--tls-cert and --tls-key go together"}},
		{"key without cert, dev", func(c *config.Config) { c.ApplyDev(); c.TLSCert = "" }, []string{"--tls-cert and --tls-key go together"}},
		{"bad log format", func(c *config.Config) { c.LogFormat = "text" }, []string{`--log-format "text": want logfmt or json`}},
		{"bad log level", func(c *config.Config) { c.LogLevel = "trace" }, []string{`--log-level "trace"`}},
		{"bad quic address", func(c *config.Config) { c.QUICAddr = "443" }, []string{`--quic-addr "443": want HOST:PORT`}},
		{"bad https address", func(c *config.Config) { c.HTTPSAddr = "example.com" }, []string{`--https-addr "example.com": want HOST:PORT`}},
		{"bad http address", func(c *config.Config) { c.HTTPAddr = "[::1" }, []string{`--http-addr "[::1": want HOST:PORT`}},
		{"empty quic address", func(c *config.Config) { c.QUICAddr = "" }, []string{"--quic-addr is empty"}},
		{"bad tcp ports", func(c *config.Config) { c.TCPPorts = "9-1" }, []string{"--tcp-ports", `"9-1"`}},
		{"several problems at once", func(c *config.Config) { c.Domain = ""; c.LogFormat = "x"; c.TCPPorts = "" },
			[]string{"--domain is required", `--log-format "x"`, "--tcp-ports"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := valid()
			tt.edit(&c)
			err := c.Validate()
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatalf("Validate(%+v) = %v, want nil", c, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate(%+v) = nil, want an error naming %q", c, tt.wantErr)
			}
			for _, s := range tt.wantErr {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("Validate() = %q, want it to contain %q", err, s)
				}
			}
		})
	}
}

func writeFile(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "relay.toml")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLoad(t *testing.T) {
	path := writeFile(t, `# relay
domain = "tunnel.example.com"
tls_cert = "/etc/ferry/cert.pem"
tls_key = "/etc/ferry/key.pem"
tcp_ports = "20000-20099"
log_format = "json"
dev = false
`)
	c := config.Defaults()
	if err := c.Load(path); err != nil {
		t.Fatalf("Load(%s) = %v, want nil", path, err)
	}
	want := config.Defaults()
	want.Domain = "tunnel.example.com"
	want.TLSCert = "/etc/ferry/cert.pem"
	want.TLSKey = "/etc/ferry/key.pem"
	want.TCPPorts = "20000-20099"
	want.LogFormat = "json"
	if c != want {
		t.Errorf("Load(%s) = %+v, want %+v", path, c, want)
	}
}

func TestLoadKeepsUnsetFields(t *testing.T) {
	c := config.Defaults()
	c.ApplyDev()
	if err := c.Load(writeFile(t, "log_level = \"debug\"\n")); err != nil {
		t.Fatal(err)
	}
	if c.QUICAddr != "127.0.0.1:4443" || c.Domain != "localhost" || !c.Dev || c.LogLevel != "debug" {
		t.Errorf("Load over dev defaults = %+v, want dev values with log_level debug", c)
	}
}

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name    string
		content string
		want    string // prefix after "PATH:" (the line and message)

	}{
		{"unknown key on line 1", "x = 1\n", `1: unknown key "x"`},
		{"unknown key on line 3", "domain = \"a.com\"\n\nx = 1\n", `3: unknown key "x"`},
		{"unknown key after comments", "# c\n# c\n# c\ndomain = \"a.com\"\nlog_levle = \"info\"\n", `5: unknown key "log_levle"`},
		{"unknown key in an inline table", "domain = \"a.com\"\nlimits = { max = 3 }\n", `2: unknown key "limits"`},
		{"unknown table", "domain = \"a.com\"\n[limits]\nmax = 3\n", `2: unknown key "limits"`},
		{"syntax error line 1", "domain = \n", "1: "},
		{"syntax error line 4", "domain = \"a\"\n\n# c\ndev = tru\n", "4: "},
		{"unterminated string line 2", "domain = \"a\"\ntls_cert = \"x\n", "2: "},
		{"duplicate key line 3", "domain = \"a\"\n\ndomain = \"b\"\n", "3: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeFile(t, tt.content)
			c := config.Defaults()
			err := c.Load(path)
			if err == nil {
				t.Fatalf("Load(%q) = nil, want an error", tt.content)
			}
			if want := path + ":" + tt.want; !strings.HasPrefix(err.Error(), want) {
				t.Errorf("Load(%q) = %q, want it to start with %q", tt.content, err, want)
			}
		})
	}
}

func TestLoadUnknownKeyNamesFlags(t *testing.T) {
	c := config.Defaults()
	err := c.Load(writeFile(t, "tls-cert = \"x\"\n"))
	if err == nil || !strings.Contains(err.Error(), "ferry-relay --help") {
		t.Fatalf("Load(tls-cert) = %v, want an error that points at `ferry-relay --help`", err)
	}
}

func TestLoadTypeMismatch(t *testing.T) {
	path := writeFile(t, "dev = \"yes\"\n")
	c := config.Defaults()
	err := c.Load(path)
	if err == nil || !strings.HasPrefix(err.Error(), path) {
		t.Fatalf("Load(dev = \"yes\") = %v, want an error starting with %s", err, path)
	}
}

func TestLoadMissingFile(t *testing.T) {
	c := config.Defaults()
	err := c.Load(filepath.Join(t.TempDir(), "nope.toml"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Load(missing) = %v, want fs.ErrNotExist", err)
	}
}

func TestKeyLine(t *testing.T) {
	data := []byte(`# comment
domain = "a.com"
  log_level="info"
"quoted" = 1
dotted.key = 2

[tunnels.web]
proto = "http"
addr = "8080"

[tunnels.api]
proto = "tcp"
domain = "inner"

[other]
proto = "x"

[tunnels."my app"]
proto = "tls"

[tunnels.db] # the database
addr = "5432"
`)
	tests := []struct {
		key  toml.Key
		want int
	}{
		{toml.Key{"domain"}, 2},
		{toml.Key{"log_level"}, 3},
		{toml.Key{"quoted"}, 4},
		{toml.Key{"dotted", "key"}, 5},
		{toml.Key{"tunnels", "web", "proto"}, 8},
		{toml.Key{"tunnels", "web", "addr"}, 9},
		{toml.Key{"tunnels", "api", "proto"}, 12},
		{toml.Key{"tunnels", "api", "domain"}, 13},
		{toml.Key{"other", "proto"}, 16},
		{toml.Key{"missing"}, 0},
		{toml.Key{"tunnels", "web", "domain"}, 7}, // not written: its table's line
		{toml.Key{}, 0},
		{nil, 0},
		// A key that is a table is set by its [header] line.
		{toml.Key{"tunnels", "web"}, 7},
		{toml.Key{"other"}, 15},
		// A quoted table name: the header text keeps its quotes, the key does not.
		{toml.Key{"tunnels", "my app", "proto"}, 19},
		// A comment after a table header becomes part of the table name.
		{toml.Key{"tunnels", "db", "addr"}, 22},
	}
	for _, tt := range tests {
		t.Run(tt.key.String(), func(t *testing.T) {
			got := config.KeyLine(data, tt.key)
			if got != tt.want {
				t.Errorf("KeyLine(%q) = %d, want %d", tt.key.String(), got, tt.want)
			}
		})
	}
}
