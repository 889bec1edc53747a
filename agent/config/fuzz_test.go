package config

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzLoad: any agent configuration file loads or fails with an error, never a panic,
// and checking a loaded file never panics either.
func FuzzLoad(f *testing.F) {
	f.Add("version = \"1\"\nauthtoken = \"fy_x\"\n[tunnels.web]\nproto = \"http\"\naddr = \"8080\"\n")
	f.Add("[tunnels.l]\naddr = \"8080\"\nlabels = [\"edge=web\"]\n[tunnels.l.oidc]\nissuer = \"https://x\"\n")
	f.Add("[tunnels]\nweb = 1\n")
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, text string) {
		path := filepath.Join(dir, "ferry.toml")
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		if file, err := Load(path, true); err == nil && file != nil {
			_ = file.Check()
		}
	})
}
