package service

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// fake records systemctl calls; fail makes the call with that verb fail.
type fake struct {
	calls [][]string
	fail  string
}

func (f *fake) systemctl(args ...string) error {
	f.calls = append(f.calls, args)
	for _, a := range args {
		if a == f.fail {
			return errors.New("systemctl " + strings.Join(args, " ") + ": exit status 1")
		}
	}
	return nil
}

func (f *fake) joined() []string {
	var out []string
	for _, c := range f.calls {
		out = append(out, strings.Join(c, " "))
	}
	return out
}

// env is a unit directory, a config file, a binary and a fake systemctl.
func env(t *testing.T, user bool) (Options, *fake) {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("systemd units are Linux-only")
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "ferry.toml")
	if err := os.WriteFile(cfg, []byte("version = \"1\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "ferry")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	f := &fake{}
	return Options{Binary: bin, ConfigPath: cfg, User: user, UnitDir: filepath.Join(dir, "units"), Systemctl: f.systemctl}, f
}

func TestUnitSystem(t *testing.T) {
	text, err := Unit(Options{Binary: "/usr/local/bin/ferry", ConfigPath: "/etc/ferry/ferry.toml"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"[Unit]",
		"Description=Ferry tunnel agent (ferry)",
		"After=network-online.target",
		"Wants=network-online.target",
		"",
		"[Service]",
		"Type=simple",
		"ExecStart=/usr/local/bin/ferry start --all --config /etc/ferry/ferry.toml --log stdout --log-format logfmt",
		"Restart=on-failure",
		"RestartSec=5s",
		"NoNewPrivileges=yes",
		"ProtectSystem=strict",
		"ProtectHome=read-only",
		"PrivateTmp=yes",
		"",
		"[Install]",
		"WantedBy=multi-user.target",
		"",
	}
	got := strings.Split(text, "\n")
	for i := range max(len(got), len(want)) {
		var g, w string
		if i < len(got) {
			g = got[i]
		}
		if i < len(want) {
			w = want[i]
		}
		if g != w {
			t.Errorf("unit line %d = %q, want %q", i+1, g, w)
		}
	}
}

func TestUnitUser(t *testing.T) {
	text, err := Unit(Options{Name: "ferry-dev", Binary: "/home/me/bin/ferry", ConfigPath: "/home/me/.config/ferry/ferry.toml", User: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{"Description=Ferry tunnel agent (ferry-dev)", "WantedBy=default.target",
		"ExecStart=/home/me/bin/ferry start --all --config /home/me/.config/ferry/ferry.toml --log stdout --log-format logfmt"} {
		if !slices.Contains(strings.Split(text, "\n"), line) {
			t.Errorf("user unit has no line %q:\n%s", line, text)
		}
	}
	for _, hardening := range []string{"ProtectSystem", "ProtectHome", "NoNewPrivileges", "PrivateTmp", "multi-user.target"} {
		if strings.Contains(text, hardening) {
			t.Errorf("user unit has %s, want it only in system units:\n%s", hardening, text)
		}
	}
}

func TestUnitQuoting(t *testing.T) {
	text, err := Unit(Options{Binary: "/opt/my apps/ferry", ConfigPath: `/etc/ferry/100% "real" $HOME\x.toml`})
	if err != nil {
		t.Fatal(err)
	}
	want := `ExecStart="/opt/my apps/ferry" start --all --config "/etc/ferry/100%% \"real\" $$HOME\\x.toml" --log stdout --log-format logfmt`
	if !slices.Contains(strings.Split(text, "\n"), want) {
		t.Errorf("unit does not have\n%s\nin:\n%s", want, text)
	}
}

func TestQuoteArg(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"/usr/bin/ferry", "/usr/bin/ferry"},
		{"/a b", `"/a b"`},
		{"50%", "50%%"},
		{"$X", "$$X"},
		{`a"b`, `"a\"b"`},
		{`a\b`, `"a\\b"`},
		{"it's", `"it's"`},
		{"", `""`},
	} {
		if got := quoteArg(tt.in); got != tt.want {
			t.Errorf("quoteArg(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

func TestUnitRefuses(t *testing.T) {
	for _, tt := range []struct {
		name string
		o    Options
		want string
	}{
		{"relative binary", Options{Binary: "ferry", ConfigPath: "/etc/ferry.toml"}, "absolute path"},
		{"no config", Options{Binary: "/usr/bin/ferry"}, "--config"},
		{"bad name", Options{Name: "my ferry", Binary: "/usr/bin/ferry", ConfigPath: "/etc/ferry.toml"}, "service name"},
		{"newline", Options{Binary: "/usr/bin/ferry", ConfigPath: "/etc/a\nb.toml"}, "control character"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Unit(tt.o)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Unit = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestInstall(t *testing.T) {
	o, f := env(t, false)
	path, err := Install(o)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(o.UnitDir, "ferry.service"); path != want {
		t.Errorf("Install path = %s, want %s", path, want)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o644 {
		t.Errorf("unit mode = %v, want 0644", fi.Mode().Perm())
	}
	data, _ := os.ReadFile(path)
	want, _ := Unit(o)
	if string(data) != want {
		t.Errorf("unit file =\n%s\nwant\n%s", data, want)
	}
	if got, want := f.joined(), []string{"daemon-reload", "enable ferry.service"}; !slices.Equal(got, want) {
		t.Errorf("systemctl calls = %q, want %q", got, want)
	}
	// Installing again replaces the unit and leaves no temporary files.
	if _, err := Install(o); err != nil {
		t.Fatalf("second Install: %v", err)
	}
	entries, _ := os.ReadDir(o.UnitDir)
	if len(entries) != 1 {
		t.Errorf("unit dir has %d entries after two installs, want 1", len(entries))
	}
}

func TestInstallUser(t *testing.T) {
	o, f := env(t, true)
	o.Name = "ferry-dev.service"
	path, err := Install(o)
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(path) != "ferry-dev.service" {
		t.Errorf("Install path = %s, want ferry-dev.service", path)
	}
	data, _ := os.ReadFile(path)
	if !strings.Contains(string(data), "WantedBy=default.target\n") {
		t.Errorf("user unit has no WantedBy=default.target:\n%s", data)
	}
	if got, want := f.joined(), []string{"--user daemon-reload", "--user enable ferry-dev.service"}; !slices.Equal(got, want) {
		t.Errorf("systemctl calls = %q, want %q", got, want)
	}
	f.calls = nil
	if err := Start(o); err != nil {
		t.Fatal(err)
	}
	if err := Stop(o); err != nil {
		t.Fatal(err)
	}
	if err := Uninstall(o); err != nil {
		t.Fatal(err)
	}
	want := []string{"--user start ferry-dev.service", "--user stop ferry-dev.service",
		"--user stop ferry-dev.service", "--user disable ferry-dev.service", "--user daemon-reload"}
	if got := f.joined(); !slices.Equal(got, want) {
		t.Errorf("systemctl calls = %q, want %q", got, want)
	}
}

func TestUserUnitDir(t *testing.T) {
	t.Setenv("XDG_CONFIG_HOME", "/home/me/.config")
	path, err := UnitPath(Options{User: true})
	if err != nil {
		t.Fatal(err)
	}
	if want := "/home/me/.config/systemd/user/ferry.service"; path != want {
		t.Errorf("UnitPath(user) = %s, want %s", path, want)
	}
	if path, _ := UnitPath(Options{}); path != "/etc/systemd/system/ferry.service" {
		t.Errorf("UnitPath(system) = %s, want /etc/systemd/system/ferry.service", path)
	}
}

func TestInstallMissingConfig(t *testing.T) {
	o, f := env(t, false)
	o.ConfigPath = filepath.Join(t.TempDir(), "nope.toml")
	_, err := Install(o)
	if err == nil || !strings.Contains(err.Error(), "create it or pass --config") {
		t.Fatalf("Install = %v, want an error saying: create it or pass --config", err)
	}
	if len(f.calls) != 0 {
		t.Errorf("systemctl calls = %q, want none", f.joined())
	}
	if _, err := os.Stat(filepath.Join(o.UnitDir, "ferry.service")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("unit file written despite the missing config (stat: %v)", err)
	}
}

func TestInstallSystemctlFails(t *testing.T) {
	o, f := env(t, false)
	f.fail = "enable"
	_, err := Install(o)
	if err == nil || !strings.Contains(err.Error(), "enable") {
		t.Errorf("Install = %v, want the enable failure", err)
	}
}

func TestUninstall(t *testing.T) {
	o, f := env(t, false)
	path, err := Install(o)
	if err != nil {
		t.Fatal(err)
	}
	f.calls = nil
	if err := Uninstall(o); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("unit file still there after Uninstall (stat: %v)", err)
	}
	if got, want := f.joined(), []string{"stop ferry.service", "disable ferry.service", "daemon-reload"}; !slices.Equal(got, want) {
		t.Errorf("systemctl calls = %q, want %q", got, want)
	}
}

func TestUninstallStopFails(t *testing.T) {
	o, f := env(t, false)
	path, err := Install(o)
	if err != nil {
		t.Fatal(err)
	}
	f.calls, f.fail = nil, "stop"
	if err := Uninstall(o); err == nil {
		t.Errorf("Uninstall = nil, want the stop failure")
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("unit file still there after Uninstall (stat: %v)", err)
	}
	if got, want := f.joined(), []string{"stop ferry.service", "disable ferry.service", "daemon-reload"}; !slices.Equal(got, want) {
		t.Errorf("systemctl calls = %q, want %q", got, want)
	}
}

func TestUninstallMissing(t *testing.T) {
	o, f := env(t, false)
	if err := Uninstall(o); err != nil {
		t.Errorf("Uninstall of a unit never installed = %v, want nil", err)
	}
	if len(f.calls) != 0 {
		t.Errorf("systemctl calls = %q, want none", f.joined())
	}
}

func TestStartNotInstalled(t *testing.T) {
	o, f := env(t, false)
	err := Start(o)
	if err == nil || !strings.Contains(err.Error(), "ferry service install") {
		t.Errorf("Start = %v, want an error saying to run ferry service install", err)
	}
	if len(f.calls) != 0 {
		t.Errorf("systemctl calls = %q, want none", f.joined())
	}
}

func TestStartStop(t *testing.T) {
	o, f := env(t, false)
	if _, err := Install(o); err != nil {
		t.Fatal(err)
	}
	f.calls = nil
	if err := Start(o); err != nil {
		t.Fatal(err)
	}
	if err := Stop(o); err != nil {
		t.Fatal(err)
	}
	if got, want := f.joined(), []string{"start ferry.service", "stop ferry.service"}; !slices.Equal(got, want) {
		t.Errorf("systemctl calls = %q, want %q", got, want)
	}
}

func TestNotRoot(t *testing.T) {
	if runtime.GOOS != "linux" || os.Geteuid() == 0 {
		t.Skip("needs Linux and a user other than root")
	}
	o, _ := env(t, false)
	o.UnitDir = "" // the real /etc/systemd/system
	_, err := Install(o)
	if err == nil || !strings.Contains(err.Error(), "run as root or use --user") {
		t.Errorf("Install as non-root = %v, want: run as root or use --user", err)
	}
}

func TestNoSystemd(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("Linux only")
	}
	o, _ := env(t, true)
	o.Systemctl = nil
	t.Setenv("PATH", t.TempDir()) // no systemctl on it
	_, err := Install(o)
	if err == nil || !strings.Contains(err.Error(), "does not use systemd; run `ferry start --all` under your init system") {
		t.Errorf("Install without systemctl = %v, want the no-systemd fix", err)
	}
}

func TestPermissionFix(t *testing.T) {
	o := Options{}
	err := o.permission(&os.PathError{Op: "open", Path: "/etc/systemd/system/ferry.service", Err: os.ErrPermission})
	if !strings.Contains(err.Error(), "run as root or use --user") {
		t.Errorf("permission error = %v, want: run as root or use --user", err)
	}
}
