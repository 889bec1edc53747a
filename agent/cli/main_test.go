package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferrytunnel/ferry/relay/cert/certtest"
)

// cleanEnv makes sure the developer's environment and configuration file are never read:
// the FERRY_* variables are unset and XDG_CONFIG_HOME is an empty directory, which it returns.
func cleanEnv(t *testing.T) string {
	t.Helper()
	for _, k := range []string{"FERRY_RELAY", "FERRY_AUTHTOKEN", "FERRY_RELAY_CA"} {
		t.Setenv(k, "") // restores the old value after the test
		if err := os.Unsetenv(k); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", dir)
	return dir
}

type result struct {
	code           int
	stdout, stderr string
}

func run(t *testing.T, args ...string) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := Main(t.Context(), append([]string{"ferry"}, args...), Env{Stdout: &stdout, Stderr: &stderr, Version: "1.2.3-test"})
	return result{code, stdout.String(), stderr.String()}
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// relayFlags get a tunnel command past the relay and authtoken checks; every test that
// uses them fails before anything dials.
var relayFlags = []string{"--relay", "127.0.0.1:1", "--authtoken", "T", "--api-addr", "false"}

func TestMainUsageErrors(t *testing.T) {
	cleanEnv(t)
	dir := t.TempDir()
	crt, key := certtest.WriteKeyPair(t, dir, "server", certtest.NewCA(t, "Test CA").Server(t))
	nonCA := certtest.NewNonCA(t, "client.example.com").WriteFiles(t, dir)
	ca := certtest.NewCA(t, "Clients CA").WriteFiles(t, dir)

	tests := []struct {
		name string
		args []string
		want []string // substrings of stderr
	}{
		{"http without upstream", []string{"http"}, []string{"ferry http needs exactly one upstream (PORT|HOST:PORT|URL|unix:PATH|file:///DIR), got 0 arguments"}},
		{"http with two upstreams", append([]string{"http", "1", "2"}, relayFlags...), []string{"needs exactly one upstream", "got 2 arguments"}},
		{"tcp without upstream", []string{"tcp"}, []string{"ferry tcp needs exactly one upstream (PORT|HOST:PORT)"}},
		{"no relay", []string{"http", "8080"}, []string{"no relay", "--relay HOST:PORT", "FERRY_RELAY"}},
		{"no authtoken", []string{"http", "8080", "--relay", "r:1"}, []string{"no authtoken", "--authtoken", "FERRY_AUTHTOKEN", "ferry config add-authtoken"}},
		{"unknown flag after the command", []string{"http", "8080", "--bogus"}, []string{"flag provided but not defined: -bogus"}},
		{"unknown global flag", []string{"--bogus"}, []string{"flag provided but not defined: -bogus"}},
		{"unknown command", []string{"nope"}, []string{"nope"}},
		{"flag without value", []string{"http", "--domain"}, []string{"flag needs an argument: -domain"}},
		{"bad port", append([]string{"http", "70000"}, relayFlags...), []string{"port 70000: want 1-65535"}},
		{"bad upstream URL", append([]string{"http", "ftp://x"}, relayFlags...), []string{`scheme "ftp" is not supported`}},
		{"tls agent without --crt", append([]string{"tls", "443", "--terminate-at", "agent"}, relayFlags...), []string{"--terminate-at agent needs --crt and --key"}},
		{"tls --crt without --key", append([]string{"tls", "443", "--crt", crt}, relayFlags...), []string{"--crt and --key go together"}},
		{"tls edge with --crt", append([]string{"tls", "443", "--terminate-at", "edge", "--crt", crt, "--key", key}, relayFlags...), []string{"never holds your key"}},
		{"tls upstream with --crt", append([]string{"tls", "443", "--terminate-at", "upstream", "--crt", crt, "--key", key}, relayFlags...), []string{"--terminate-at upstream passes TLS through untouched"}},
		{"tls --crt of a missing file", append([]string{"tls", "443", "--crt", filepath.Join(dir, "none.pem"), "--key", key}, relayFlags...), []string{"--crt"}},
		{"tls --mutual-tls-cas without termination", append([]string{"tls", "443", "--mutual-tls-cas", ca}, relayFlags...), []string{"--mutual-tls-cas needs TLS terminated by ferry"}},
		{"tls --mutual-tls-cas with a non-CA", append([]string{"tls", "443", "--mutual-tls-cas", nonCA}, relayFlags...), []string{"--mutual-tls-cas " + nonCA, "is not a CA", "RFC 5280"}},
		{"tls --mutual-tls-cas missing file", append([]string{"tls", "443", "--mutual-tls-cas", filepath.Join(dir, "none.pem")}, relayFlags...), []string{"--mutual-tls-cas", "check the path"}},
		{"--relay-ca missing file", append([]string{"http", "8080", "--relay-ca", filepath.Join(dir, "none.pem")}, relayFlags...), []string{"--relay-ca", "check the path"}},
		{"http with --crt", append([]string{"http", "8080", "--crt", crt}, relayFlags...), []string{"flag provided but not defined: -crt"}},
		{"missing named config", []string{"http", "8080", "--config", filepath.Join(dir, "none.toml")}, []string{"config file", "none.toml"}},
		{"add-authtoken without token", []string{"config", "add-authtoken"}, []string{"usage: ferry config add-authtoken TOKEN"}},
		{"add-authtoken with two tokens", []string{"config", "add-authtoken", "a", "b"}, []string{"usage: ferry config add-authtoken TOKEN"}},
		{"login option without its provider", append([]string{"http", "8080", "--oauth-client-id", "x", "--oauth-client-secret", "y"}, relayFlags...), []string{"--oauth-client-id without --oauth PROVIDER", "open to anyone"}},
		{"--oauth and --oidc together", append([]string{"http", "8080", "--oauth", "github", "--oidc", "https://id.example"}, relayFlags...), []string{"--oauth and --oidc together"}},
		{"labeled tunnel with a module flag", append([]string{"tunnel", "8080", "--label", "edge=web", "--cidr-allow", "10.0.0.0/8"}, relayFlags...), []string{"takes no edge modules"}},
		{"config check of a missing named file", []string{"config", "check", "--config", filepath.Join(dir, "none.toml")}, []string{"none.toml"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := run(t, tt.args...)
			if r.code != ExitUsage {
				t.Errorf("ferry %q exit = %d, want %d (usage); stderr %q", tt.args, r.code, ExitUsage, r.stderr)
			}
			if !strings.HasPrefix(r.stderr, "ferry: ") {
				t.Errorf("ferry %q stderr = %q, want it to start with \"ferry: \"", tt.args, r.stderr)
			}
			for _, s := range tt.want {
				if !strings.Contains(r.stderr, s) {
					t.Errorf("ferry %q stderr = %q, want it to contain %q", tt.args, r.stderr, s)
				}
			}
		})
	}
}

func TestMainHelp(t *testing.T) {
	cleanEnv(t)
	tests := []struct {
		name string
		args []string
		want []string
		hide []string // global flags the command ignores
	}{
		{"no arguments", nil, []string{"ferry", "http", "tcp", "tls", "config", "version", "expose a local HTTP server"}, nil},
		{"--help", []string{"--help"}, []string{"expose a local HTTP server"}, nil},
		{"http --help", []string{"http", "--help"}, []string{"ferry http", "--domain", "PORT|HOST:PORT|URL"}, nil},
		{"tls --help", []string{"tls", "--help"}, []string{"--crt", "--key", "--mutual-tls-cas", "--terminate-at"}, nil},
		{"config", []string{"config"}, []string{"add-authtoken", "check"}, nil},
		{"diagnose --help", []string{"diagnose", "--help"}, []string{"--relay", "--authtoken", "--relay-ca", "--config"},
			[]string{"--exec", "--url-file", "--api-addr", "--connect-attempts"}},
		{"config check --help", []string{"config", "check", "--help"}, []string{"--config"}, []string{"--relay", "--log"}},
		// Still accepted, so a shell alias with --log does not break them.
		{"config path --log", []string{"config", "path", "--log", "stderr"}, []string{"ferry.toml"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := run(t, tt.args...)
			if r.code != ExitOK {
				t.Fatalf("ferry %q exit = %d, want 0; stderr %q", tt.args, r.code, r.stderr)
			}
			for _, s := range tt.hide {
				if strings.Contains(r.stdout, s) {
					t.Errorf("ferry %q offers %s, which does nothing there", tt.args, s)
				}
			}
			for _, s := range tt.want {
				if !strings.Contains(r.stdout, s) {
					t.Errorf("ferry %q stdout = %q, want it to contain %q", tt.args, r.stdout, s)
				}
			}
			if r.stderr != "" {
				t.Errorf("ferry %q stderr = %q, want empty", tt.args, r.stderr)
			}
		})
	}
}

func TestMainVersion(t *testing.T) {
	cleanEnv(t)
	for _, args := range [][]string{{"version"}, {"--version"}} {
		r := run(t, args...)
		if r.code != ExitOK || r.stdout != "ferry version 1.2.3-test\n" {
			t.Errorf("ferry %q = %d, stdout %q; want 0, %q", args, r.code, r.stdout, "ferry version 1.2.3-test\n")
		}
	}
}

func TestMainRelayFromEnvironment(t *testing.T) {
	cleanEnv(t)
	t.Setenv("FERRY_RELAY", "relay.example.com:443")
	r := run(t, "http", "8080")
	if r.code != ExitUsage || !strings.Contains(r.stderr, "no authtoken") {
		t.Fatalf("ferry http 8080 with FERRY_RELAY = %d, %q; want %d and \"no authtoken\" (the relay was found)", r.code, r.stderr, ExitUsage)
	}
}

func TestMainRelayFromDefaultConfig(t *testing.T) {
	xdg := cleanEnv(t)
	if err := os.MkdirAll(filepath.Join(xdg, "ferry"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(xdg, "ferry", "ferry.toml"), []byte("relay = \"r.example.com:443\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := run(t, "http", "8080")
	if r.code != ExitUsage || !strings.Contains(r.stderr, "no authtoken") {
		t.Fatalf("ferry http 8080 with relay in the default config = %d, %q; want %d and \"no authtoken\"", r.code, r.stderr, ExitUsage)
	}
}

func TestMainConfigFileWithUnknownKey(t *testing.T) {
	cleanEnv(t)
	path := writeFile(t, "ferry.toml", "version = \"1\"\nrelay = \"r:1\"\nrealy = \"x\"\n")

	r := run(t, "config", "check", "--config", path)
	if r.code != ExitUsage {
		t.Errorf("ferry config check (unknown key) exit = %d, want %d", r.code, ExitUsage)
	}
	if want := path + `:3: unknown key "realy"`; !strings.Contains(r.stderr, want) {
		t.Errorf("ferry config check stderr = %q, want it to contain %q", r.stderr, want)
	}

	// A tunnel command refuses the file too, and says how to see every problem.
	r = run(t, append([]string{"http", "8080", "--config", path}, relayFlags...)...)
	if r.code != ExitUsage || !strings.Contains(r.stderr, path+":3:") || !strings.Contains(r.stderr, "ferry config check") {
		t.Errorf("ferry http 8080 --config (unknown key) = %d, %q; want %d naming %s:3 and `ferry config check`", r.code, r.stderr, ExitUsage, path)
	}
}

func TestMainConfigCheckValid(t *testing.T) {
	cleanEnv(t)
	path := writeFile(t, "ferry.toml", "version = \"1\"\n[tunnels.web]\nproto = \"http\"\naddr = \"8080\"\n")
	r := run(t, "config", "check", "--config", path)
	if r.code != ExitOK || r.stdout != "Valid configuration file at "+path+"\n" {
		t.Errorf("ferry config check (valid) = %d, %q, stderr %q; want 0, %q", r.code, r.stdout, r.stderr, "Valid configuration file at "+path+"\n")
	}
	// Before the global flag too.
	r = run(t, "--config", path, "config", "check")
	if r.code != ExitOK || !strings.Contains(r.stdout, path) {
		t.Errorf("ferry --config F config check = %d, %q, stderr %q; want 0 naming %s", r.code, r.stdout, r.stderr, path)
	}
}

func TestMainConfigCheckDefaultMissing(t *testing.T) {
	xdg := cleanEnv(t)
	r := run(t, "config", "check")
	want := filepath.Join(xdg, "ferry", "ferry.toml")
	if r.code != ExitOK || !strings.Contains(r.stdout, want) {
		t.Errorf("ferry config check (no file at the default path) = %d, %q, stderr %q; want 0 naming %s", r.code, r.stdout, r.stderr, want)
	}
}

func TestMainAddAuthtoken(t *testing.T) {
	cleanEnv(t)
	path := filepath.Join(t.TempDir(), "sub", "ferry.toml")
	// The flag after the token is the case Reorder exists for.
	r := run(t, "config", "add-authtoken", "fy_tok1", "--config", path)
	if r.code != ExitOK {
		t.Fatalf("ferry config add-authtoken = %d, stderr %q; want 0", r.code, r.stderr)
	}
	if want := "Authtoken saved to configuration file: " + path + "\n"; r.stdout != want {
		t.Errorf("stdout = %q, want %q", r.stdout, want)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), `authtoken = "fy_tok1"`) {
		t.Errorf("%s = %q, want it to hold authtoken = \"fy_tok1\"", path, data)
	}

	// Replacing it, with the flag first.
	if r := run(t, "config", "add-authtoken", "--config", path, "fy_tok2"); r.code != ExitOK {
		t.Fatalf("second add-authtoken = %d, stderr %q; want 0", r.code, r.stderr)
	}
	data, err = os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(data), "fy_tok1") || !strings.Contains(string(data), `authtoken = "fy_tok2"`) {
		t.Errorf("%s after the second add-authtoken = %q, want only fy_tok2", path, data)
	}

	// And the tunnel commands read it: the next problem is the relay, not the authtoken.
	r = run(t, "http", "8080", "--config", path)
	if r.code != ExitUsage || !strings.Contains(r.stderr, "no relay") {
		t.Errorf("ferry http 8080 --config F = %d, %q; want %d and \"no relay\"", r.code, r.stderr, ExitUsage)
	}
}

func TestMainAddAuthtokenDefaultPath(t *testing.T) {
	xdg := cleanEnv(t)
	if r := run(t, "config", "add-authtoken", "fy_x"); r.code != ExitOK {
		t.Fatalf("ferry config add-authtoken = %d, stderr %q; want 0", r.code, r.stderr)
	}
	path := filepath.Join(xdg, "ferry", "ferry.toml")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	if want := "version = \"1\"\nauthtoken = \"fy_x\"\n"; string(data) != want {
		t.Errorf("%s = %q, want %q", path, data, want)
	}
}

func TestMainAddAuthtokenRefused(t *testing.T) {
	cleanEnv(t)
	path := filepath.Join(t.TempDir(), "ferry.toml")
	r := run(t, "config", "add-authtoken", `a"b`, "--config", path)
	if r.code == ExitOK || !strings.Contains(r.stderr, "quote") {
		t.Errorf(`ferry config add-authtoken 'a"b' = %d, %q; want a failure that mentions the quote`, r.code, r.stderr)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("refused add-authtoken created %s (stat: %v)", path, err)
	}
}

// TestMainUsageMessages: usage errors say what is wrong without confusing detail.
func TestMainUsageMessages(t *testing.T) {
	cleanEnv(t)

	t.Run("flag without value after the upstream", func(t *testing.T) {
		r := run(t, "http", "8080", "--domain")
		if r.code != ExitUsage {
			t.Fatalf("ferry http 8080 --domain exit = %d, want %d", r.code, ExitUsage)
		}
		if !strings.Contains(r.stderr, "--domain needs a value") {
			t.Errorf("ferry http 8080 --domain stderr = %q, want \"--domain needs a value\"", r.stderr)
		}
	})

	t.Run("unknown global flag names the command twice", func(t *testing.T) {
		// OnUsageError uses c.Command.Name, which is the app's name at the top level.
		r := run(t, "--bogus")
		if !strings.Contains(r.stderr, "see ferry --help") {
			t.Errorf("ferry --bogus stderr = %q, want it to point at `ferry --help`", r.stderr)
		}
	})
}

// TestGlobalFlagBeforeCommandBeatsFile: `ferry --relay X http 80` uses X even when the
// configuration file names another relay.
func TestGlobalFlagBeforeCommandBeatsFile(t *testing.T) {
	cleanEnv(t)
	cfg := writeFile(t, "ferry.toml", "version = \"1\"\nrelay = \"from-file:1\"\nauthtoken = \"T\"\n")
	r := run(t, "--relay", "flag-before", "http", "80", "--config", cfg, "--api-addr", "false")
	if r.code != ExitUsage || !strings.Contains(r.stderr, `--relay "flag-before"`) {
		t.Errorf("ferry --relay flag-before http 80 = %d %q; want the flag's value used (and refused for its missing port)", r.code, r.stderr)
	}
}

// TestAPIUnknownWordsAndHiddenKey: a resource or action that does not exist is a usage
// error listing the ones that do; --help does not print an API key from the environment.
func TestAPIUnknownWordsAndHiddenKey(t *testing.T) {
	cleanEnv(t)
	r := run(t, "api", "widgets", "list")
	if r.code != ExitUsage || !strings.Contains(r.stderr, `no resource "widgets"`) || !strings.Contains(r.stderr, "reserved-domains, ") {
		t.Errorf("ferry api widgets list = %d %q, want a usage error listing the resources", r.code, r.stderr)
	}
	r = run(t, "api", "reserved-domains", "frob")
	if r.code != ExitUsage || !strings.Contains(r.stderr, `no action "frob"; want one of: list, get, create, update, delete`) {
		t.Errorf("ferry api reserved-domains frob = %d %q, want a usage error listing the actions", r.code, r.stderr)
	}
	t.Setenv("FERRY_API_KEY", "fyk_secret")
	r = run(t, "api", "reserved-domains", "list", "--help")
	if out := r.stdout + r.stderr; strings.Contains(out, "fyk_secret") || !strings.Contains(out, "--api-key") {
		t.Errorf("ferry api ... --help shows the API key:\n%s", out)
	}
}

// TestCompletion: the words the shell scripts ask for (the typed words, the current one
// last, then --generate-bash-completion): commands, subcommands, and a command's flags
// also after its positional argument; never a run of the command.
func TestCompletion(t *testing.T) {
	for _, tc := range []struct {
		words []string
		want  string // lines, space-separated
	}{
		{[]string{"ht"}, "http"},
		{[]string{"config", "a"}, "add-authtoken"},
		{[]string{"http", "--dom"}, "--domain"},
		{[]string{"http", "8080", "--dom"}, "--domain"},
		{[]string{"tcp", "--relay-c"}, "--relay-ca"},
		{[]string{"--relay", "x", "tl"}, "tls"},
		{[]string{"http", "8080", ""}, ""},
		{[]string{"http", "--", "--dom"}, ""},
	} {
		r := run(t, append(tc.words, "--generate-bash-completion")...)
		if got := strings.Join(strings.Fields(r.stdout), " "); r.code != 0 || got != tc.want {
			t.Errorf("complete %q = %d %q, want 0 %q", tc.words, r.code, got, tc.want)
		}
	}
	r := run(t, "http", "-", "--generate-bash-completion")
	if !strings.Contains(r.stdout, "--domain\n") || !strings.Contains(r.stdout, "--inspect\n") {
		t.Errorf("every flag of ferry http after \"-\": %q", r.stdout)
	}
	// Hidden flags stay hidden (ferry tunnel refuses --cidr-allow; its help hides it).
	if r := run(t, "tunnel", "--", "--generate-bash-completion"); strings.Contains(r.stdout, "--cidr-allow") || !strings.Contains(r.stdout, "--label") {
		t.Errorf("ferry tunnel's flags: %q", r.stdout)
	}
}
