package config

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzLoad: any file either loads or fails with an error; never a panic, and KeyLine
// stays within the file.
func FuzzLoad(f *testing.F) {
	f.Add("domain = \"tunnel.example.com\"\ntcp_ports = \"10000-10999\"\n")
	f.Add("[x]\ny = 1\n")
	f.Add("quic_addr = :443\n")
	f.Add("dev = true\napi_addr = \"\"\nmax_conns_per_ip = -1\n")
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, text string) {
		path := filepath.Join(dir, "relay.toml")
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		c := Defaults()
		if err := c.Load(path); err == nil {
			_ = c.Validate()
		}
	})
}
