package config_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/ferrytunnel/ferry/agent/config"
)

func writeFile(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ferry.toml")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestDefaultPath(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", dir)
	if got, want := config.DefaultPath(), filepath.Join(dir, "ferry", "ferry.toml"); got != want {
		t.Errorf("DefaultPath() with XDG_CONFIG_HOME=%s = %q, want %q", dir, got, want)
	}
	home := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", "")
	t.Setenv("HOME", home)
	if got, want := config.DefaultPath(), filepath.Join(home, ".config", "ferry", "ferry.toml"); got != want {
		t.Errorf("DefaultPath() with HOME=%s = %q, want %q", home, got, want)
	}
}

func TestLoadMissing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ferry", "ferry.toml")

	f, err := config.Load(path, false)
	if err != nil {
		t.Fatalf("Load(missing default path) = %v, want nil", err)
	}
	if f.Path != path || f.Authtoken != "" || f.Relay != "" || len(f.Tunnels) != 0 {
		t.Errorf("Load(missing default path) = %+v, want an empty File with Path %s", f, path)
	}
	if errs := f.Check(); len(errs) != 0 {
		t.Errorf("Check() of an empty File = %v, want none", errs)
	}

	f, err = config.Load(path, true)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Load(missing named path) = %v, want fs.ErrNotExist", err)
	}
	if f != nil {
		t.Errorf("Load(missing named path) file = %+v, want nil", f)
	}
}

func TestLoad(t *testing.T) {
	path := writeFile(t, `version = "1"
authtoken = "fy_abc"
relay = "relay.example.com:443"
relay_ca = "/etc/ferry/ca.pem"
api_addr = "false"
log = "stderr"
log_format = "json"
log_level = "debug"

[tunnels.web]
proto = "http"
addr = "8080"
domain = "web.example.com"

[tunnels.db]
proto = "tcp"
addr = "localhost:5432"
remote_addr = ":10001"

[tunnels.api]
proto = "tls"
addr = "8443"
crt = "crt.pem"
key = "key.pem"
mutual_tls_cas = "cas.pem"
terminate_at = "agent"
`)
	for _, named := range []bool{false, true} {
		f, err := config.Load(path, named)
		if err != nil {
			t.Fatalf("Load(named=%v) = %v, want nil", named, err)
		}
		if f.Path != path || f.Version != "1" || f.Authtoken != "fy_abc" || f.Relay != "relay.example.com:443" ||
			f.RelayCA != "/etc/ferry/ca.pem" || f.APIAddr != "false" || f.Log != "stderr" || f.LogFormat != "json" || f.LogLevel != "debug" {
			t.Errorf("Load(named=%v) = %+v, want every top-level key set", named, f)
		}
		want := map[string]config.Tunnel{
			"web": {Proto: "http", Addr: "8080", Domain: "web.example.com"},
			"db":  {Proto: "tcp", Addr: "localhost:5432", RemoteAddr: ":10001"},
			"api": {Proto: "tls", Addr: "8443", Crt: "crt.pem", Key: "key.pem", MutualTLSCAs: "cas.pem", TerminateAt: "agent"},
		}
		if len(f.Tunnels) != len(want) {
			t.Errorf("Load: %d tunnels, want %d", len(f.Tunnels), len(want))
		}
		for name, w := range want {
			if got := f.Tunnels[name]; !reflect.DeepEqual(got, w) {
				t.Errorf("Load: tunnels.%s = %+v, want %+v", name, got, w)
			}
		}
		if errs := f.Check(); len(errs) != 0 {
			t.Errorf("Check() = %v, want none", errs)
		}
	}
}

func TestLoadSyntaxError(t *testing.T) {
	path := writeFile(t, "version = \"1\"\n\nrelay = \n")
	_, err := config.Load(path, true)
	if err == nil || !strings.HasPrefix(err.Error(), path+":3: ") {
		t.Fatalf("Load(syntax error on line 3) = %v, want an error starting with %s:3:", err, path)
	}
}

func TestCheck(t *testing.T) {
	tests := []struct {
		name    string
		content string
		want    []string // each error, after "PATH:"; nil means valid

	}{
		{"valid", "version = \"1\"\n[tunnels.a]\nproto = \"tcp\"\naddr = \"22\"\n", nil},
		{"no version", "relay = \"r:1\"\n", nil},
		{"unknown top-level key", "version = \"1\"\n\nrealy = \"r:1\"\n",
			[]string{`3: unknown key "realy"`}},
		{"unknown tunnel key", "[tunnels.web]\nproto = \"http\"\naddr = \"8080\"\nport = 1\n",
			[]string{`4: unknown key "tunnels.web.port"`}},
		{"bad version", "# c\nversion = \"2\"\n",
			[]string{`2: version "2": this agent reads version "1"`}},
		{"bad proto", "[tunnels.web]\naddr = \"8080\"\nproto = \"ftp\"\n",
			[]string{`3: tunnels.web.proto "ftp": want http, tcp, tls, or labels = ["key=value"] for a labeled tunnel`}},
		// No proto line either: the [tunnels.web] header is the place to fix.
		{"missing proto", "[tunnels.web]\naddr = \"8080\"\n",
			[]string{`1: tunnels.web.proto "": want http, tcp, tls, or labels = ["key=value"] for a labeled tunnel`}},
		{"labeled", "[tunnels.web]\naddr = \"8080\"\nlabels = [\"edge=web\", \"env=prod\"]\n", nil},
		{"bad label", "[tunnels.web]\naddr = \"8080\"\nlabels = [\"edge\"]\n",
			[]string{`3: tunnels.web.labels: label "edge": want KEY=VALUE, e.g. edge=web`}},
		{"labels with proto http", "[tunnels.web]\naddr = \"8080\"\nproto = \"http\"\nlabels = [\"edge=web\"]\n",
			[]string{`4: tunnels.web.labels: labels make a labeled tunnel; drop proto "http" (or set proto = "labeled")`}},
		{"bad terminate_at", "[tunnels.web]\nproto = \"tls\"\naddr = \"8443\"\nterminate_at = \"client\"\n",
			[]string{`4: tunnels.web.terminate_at "client": want edge, agent or upstream`}},
		// A missing addr has no line of its own: the [tunnels.web] header is the place to fix.
		{"missing addr", "version = \"1\"\n\n[tunnels.web]\nproto = \"http\"\n",
			[]string{`3: tunnels.web: addr is required`}},
		{"unknown key and bad proto", "extra = true\n[tunnels.x]\nproto = \"udp\"\naddr = \"1\"\n",
			[]string{`1: unknown key "extra"`, `3: tunnels.x.proto "udp"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeFile(t, tt.content)
			f, err := config.Load(path, true)
			if err != nil {
				t.Fatalf("Load(%q) = %v, want nil", tt.content, err)
			}
			errs := f.Check()
			matches := func(want []string) bool {
				if len(errs) != len(want) {
					return false
				}
				for i, w := range want {
					if !strings.HasPrefix(errs[i].Error(), path+":"+w) {
						return false
					}
				}
				return true
			}
			if !matches(tt.want) {
				t.Errorf("Check(%q) =\n%q\nwant (after %s:)\n%q", tt.content, errs, path, tt.want)
			}
		})
	}
}

func TestCheckEveryTunnel(t *testing.T) {
	path := writeFile(t, "[tunnels.a]\nproto = \"x\"\naddr = \"1\"\n[tunnels.b]\nproto = \"y\"\naddr = \"1\"\n")
	f, err := config.Load(path, true)
	if err != nil {
		t.Fatal(err)
	}
	errs := f.Check()
	if len(errs) != 2 {
		t.Fatalf("Check() = %q, want 2 errors", errs)
	}
	joined := errors.Join(errs...).Error()
	for _, want := range []string{path + ":2: tunnels.a.proto", path + ":5: tunnels.b.proto"} {
		if !strings.Contains(joined, want) {
			t.Errorf("Check() = %q, want an error %q", joined, want)
		}
	}
}

func TestAddAuthtokenCreates(t *testing.T) {
	path := filepath.Join(t.TempDir(), "new", "dir", "ferry.toml")
	if err := config.AddAuthtoken(path, "fy_secret"); err != nil {
		t.Fatalf("AddAuthtoken(new file) = %v, want nil", err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if want := "version = \"1\"\nauthtoken = \"fy_secret\"\n"; string(data) != want {
		t.Errorf("new file = %q, want %q", data, want)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := st.Mode().Perm(); got != 0o600 {
		t.Errorf("new file mode = %v, want 0600", got)
	}
	dst, err := os.Stat(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	if got := dst.Mode().Perm(); got != 0o700 {
		t.Errorf("new directory mode = %v, want 0700", got)
	}
	f, err := config.Load(path, true)
	if err != nil || f.Authtoken != "fy_secret" || f.Version != "1" {
		t.Fatalf("Load(new file) = %+v, %v; want authtoken fy_secret, version 1", f, err)
	}
	if errs := f.Check(); len(errs) != 0 {
		t.Errorf("Check(new file) = %v, want none", errs)
	}
}

func TestAddAuthtokenEdits(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string
	}{
		{"empty file", "", "version = \"1\"\nauthtoken = \"NEW\"\n"},
		{
			"replaces the authtoken line, keeps the rest",
			"# my ferry config\nversion = \"1\"\n# token from the relay\nauthtoken = \"old\"\nrelay = \"r.example.com:443\"\n\n[tunnels.web] # web\nproto = \"http\"\naddr = \"8080\"\n",
			"# my ferry config\nversion = \"1\"\n# token from the relay\nauthtoken = \"NEW\"\nrelay = \"r.example.com:443\"\n\n[tunnels.web] # web\nproto = \"http\"\naddr = \"8080\"\n",
		},
		{"single-quoted, no spaces", "authtoken='old'\nrelay = \"r:1\"\n", "authtoken = \"NEW\"\nrelay = \"r:1\"\n"},
		{"no authtoken: added at the top", "# c\nrelay = \"r:1\"\n", "authtoken = \"NEW\"\n# c\nrelay = \"r:1\"\n"},
		{
			"no authtoken, tables: stays a top-level key",
			"[tunnels.web]\nproto = \"http\"\naddr = \"1\"\n",
			"authtoken = \"NEW\"\n[tunnels.web]\nproto = \"http\"\naddr = \"1\"\n",
		},
		{"commented-out authtoken is kept", "# authtoken = \"x\"\n", "authtoken = \"NEW\"\n# authtoken = \"x\"\n"},
		{"similar key is kept", "authtoken_old = \"x\"\n", "authtoken = \"NEW\"\nauthtoken_old = \"x\"\n"},
		{
			"blank line before the authtoken line",
			"version = \"1\"\n\nauthtoken = \"old\"\nrelay = \"r:1\"\n",
			"version = \"1\"\n\nauthtoken = \"NEW\"\nrelay = \"r:1\"\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeFile(t, tt.in)
			if err := config.AddAuthtoken(path, "NEW"); err != nil {
				t.Fatalf("AddAuthtoken = %v, want nil", err)
			}
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if string(data) != tt.want {
				t.Errorf("AddAuthtoken on %q wrote\n%q\nwant\n%q", tt.in, data, tt.want)
			}
			f, err := config.Load(path, true)
			if err != nil {
				t.Fatalf("Load after AddAuthtoken = %v, want nil", err)
			}
			if f.Authtoken != "NEW" {
				t.Errorf("Load after AddAuthtoken: authtoken = %q, want NEW", f.Authtoken)
			}
		})
	}
}

func TestAddAuthtokenTwice(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ferry.toml")
	for _, tok := range []string{"first", "second"} {
		if err := config.AddAuthtoken(path, tok); err != nil {
			t.Fatalf("AddAuthtoken(%q) = %v", tok, err)
		}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if want := "version = \"1\"\nauthtoken = \"second\"\n"; string(data) != want {
		t.Errorf("after two AddAuthtoken calls the file is %q, want %q", data, want)
	}
}

func TestAddAuthtokenRefuses(t *testing.T) {
	for _, tok := range []string{"", `a"b`, "a\nb", `a\b`, "\n", `"`} {
		t.Run(tok, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "ferry.toml")
			err := config.AddAuthtoken(path, tok)
			if err == nil {
				t.Fatalf("AddAuthtoken(%q) = nil, want an error", tok)
			}
			if _, statErr := os.Stat(path); !errors.Is(statErr, fs.ErrNotExist) {
				t.Errorf("AddAuthtoken(%q) created %s (stat: %v), want no file", tok, path, statErr)
			}
		})
	}
}

func TestAddAuthtokenRefusesKeepsFile(t *testing.T) {
	const in = "authtoken = \"old\"\n"
	path := writeFile(t, in)
	if err := config.AddAuthtoken(path, "bad\"token"); err == nil {
		t.Fatal(`AddAuthtoken("bad\"token") = nil, want an error`)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(data) != in {
		t.Errorf("file after a refused AddAuthtoken = %q, want %q", data, in)
	}
}

func TestAddAuthtokenRoundTrip(t *testing.T) {
	for _, tok := range []string{"fy_0123456789abcdef0123456789abcdef0123456789abcdef", "with space", "tab\there", "ünïcødé", "'single'", "#not-a-comment"} {
		t.Run(tok, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "ferry.toml")
			if err := config.AddAuthtoken(path, tok); err != nil {
				t.Fatalf("AddAuthtoken(%q) = %v, want nil", tok, err)
			}
			f, err := config.Load(path, true)
			if err != nil {
				t.Fatalf("Load after AddAuthtoken(%q) = %v, want nil", tok, err)
			}
			if f.Authtoken != tok {
				t.Errorf("Load after AddAuthtoken(%q): authtoken = %q, want %q", tok, f.Authtoken, tok)
			}
		})
	}
}

func TestAddAuthtokenPathIsDirectory(t *testing.T) {
	if err := config.AddAuthtoken(t.TempDir(), "tok"); err == nil {
		t.Fatal("AddAuthtoken(a directory) = nil, want an error")
	}
}
