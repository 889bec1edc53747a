// Package service installs the agent as a systemd unit that runs
// `ferry start --all --config FILE` (`ferry service install|uninstall|start|stop`): a
// system unit in /etc/systemd/system (root, hardened), or a user unit in
// ~/.config/systemd/user (--user; it runs while the user is logged in, or always after
// `loginctl enable-linger USER`).
package service

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
)

// DefaultName is the unit name when Options.Name is empty.
const DefaultName = "ferry"

// SystemUnitDir is where system units are written.
const SystemUnitDir = "/etc/systemd/system"

// Options says which unit to manage and how.
type Options struct {
	// Name is the unit name, with or without ".service" (default "ferry").
	Name string
	// Binary is the absolute path of the ferry binary (the caller passes os.Executable()).
	Binary string
	// ConfigPath is the configuration file the unit starts every tunnel of; Install
	// requires it to exist. A relative path is made absolute.
	ConfigPath string
	// User manages a systemd --user unit (~/.config/systemd/user) instead of a system
	// unit in /etc/systemd/system.
	User bool
	// UnitDir overrides the unit directory (tests). It also turns off the check for root,
	// which only guards the real system directory.
	UnitDir string
	// Systemctl runs systemctl with args, which begin with "--user" for user units. The
	// default runs the systemctl binary and fails, naming the fix, where there is no systemd.
	Systemctl func(args ...string) error
}

// Unit returns the text of the unit file. It checks the options but not the file system
// (Install checks that the configuration file exists).
func Unit(o Options) (string, error) {
	if err := o.normalize(); err != nil {
		return "", err
	}
	var b strings.Builder
	line := func(s string) { b.WriteString(s + "\n") }
	line("[Unit]")
	line("Description=Ferry tunnel agent (" + strings.TrimSuffix(o.Name, ".service") + ")")
	line("After=network-online.target")
	line("Wants=network-online.target")
	line("")
	line("[Service]")
	line("Type=simple")
	line("ExecStart=" + execLine(o.Binary, "start", "--all", "--config", o.ConfigPath, "--log", "stdout", "--log-format", "logfmt"))
	line("Restart=on-failure")
	line("RestartSec=5s")
	if !o.User {
		line("NoNewPrivileges=yes")
		line("ProtectSystem=strict")
		line("ProtectHome=read-only")
		line("PrivateTmp=yes")
	}
	line("")
	line("[Install]")
	if o.User {
		line("WantedBy=default.target")
	} else {
		line("WantedBy=multi-user.target")
	}
	return b.String(), nil
}

// UnitPath returns where Install writes the unit file.
func UnitPath(o Options) (string, error) {
	if err := o.normalizeName(); err != nil {
		return "", err
	}
	dir, err := o.unitDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, o.Name), nil
}

// Install writes the unit file (mode 0644), then runs `systemctl daemon-reload` and
// `systemctl enable NAME.service`. It does not start the service (Start does). Installing
// again replaces the unit.
func Install(o Options) (path string, err error) {
	if err := o.prepare(); err != nil {
		return "", err
	}
	if err := o.normalize(); err != nil {
		return "", err
	}
	text, err := Unit(o)
	if err != nil {
		return "", err
	}
	fi, err := os.Stat(o.ConfigPath)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "", fmt.Errorf("config file %s does not exist: create it or pass --config", o.ConfigPath)
	case err != nil:
		return "", fmt.Errorf("config file: %w", err)
	case fi.IsDir():
		return "", fmt.Errorf("config file %s is a directory: pass the file with --config", o.ConfigPath)
	}
	if _, err := os.Stat(o.Binary); err != nil {
		return "", fmt.Errorf("ferry binary: %w", err)
	}
	if path, err = UnitPath(o); err != nil {
		return "", err
	}
	if err := writeFile(path, []byte(text)); err != nil {
		return "", o.permission(fmt.Errorf("write unit: %w", err))
	}
	if err := o.systemctl("daemon-reload"); err != nil {
		return path, err
	}
	if err := o.systemctl("enable", o.Name); err != nil {
		return path, err
	}
	return path, nil
}

// Uninstall stops and disables the service, removes the unit file and runs
// `systemctl daemon-reload`. A unit that is not installed is not an error. A failing stop
// or disable does not keep the unit file: every step runs, and the errors are joined.
func Uninstall(o Options) error {
	if err := o.prepare(); err != nil {
		return err
	}
	path, err := UnitPath(o)
	if err != nil {
		return err
	}
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	errStop := o.systemctl("stop", o.Name)
	errDisable := o.systemctl("disable", o.Name)
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return errors.Join(errStop, errDisable, o.permission(fmt.Errorf("remove unit: %w", err)))
	}
	return errors.Join(errStop, errDisable, o.systemctl("daemon-reload"))
}

// Start starts the installed service (`systemctl start NAME.service`).
func Start(o Options) error { return o.run("start") }

// Stop stops the installed service (`systemctl stop NAME.service`).
func Stop(o Options) error { return o.run("stop") }

func (o *Options) run(verb string) error {
	if err := o.prepare(); err != nil {
		return err
	}
	path, err := UnitPath(*o)
	if err != nil {
		return err
	}
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		user := ""
		if o.User {
			user = " --user"
		}
		return fmt.Errorf("service %s is not installed (no %s): run `ferry service install%s` first", o.Name, path, user)
	}
	return o.systemctl(verb, o.Name)
}

// prepare checks what every operation needs: Linux, root for the system directory, and a
// systemctl.
func (o *Options) prepare() error {
	if runtime.GOOS != "linux" {
		return fmt.Errorf("systemd units are Linux-only (this is %s): run `ferry start --all` under this system's service manager", runtime.GOOS)
	}
	if err := o.normalizeName(); err != nil {
		return err
	}
	if !o.User && o.UnitDir == "" && os.Geteuid() != 0 {
		return errors.New("a system unit needs root: run as root or use --user")
	}
	if o.Systemctl == nil {
		run, err := defaultSystemctl(o.User)
		if err != nil {
			return err
		}
		o.Systemctl = run
	}
	return nil
}

// permission adds the fix to a permission error on the unit directory.
func (o *Options) permission(err error) error {
	if !errors.Is(err, fs.ErrPermission) {
		return err
	}
	if o.User {
		return fmt.Errorf("%w: check the ownership of the unit directory", err)
	}
	return fmt.Errorf("%w: run as root or use --user", err)
}

func (o *Options) systemctl(args ...string) error {
	if o.User {
		args = append([]string{"--user"}, args...)
	}
	return o.Systemctl(args...)
}

// errNoSystemd is returned where systemctl is missing or systemd is not running.
var errNoSystemd = errors.New("this system does not use systemd; run `ferry start --all` under your init system")

func defaultSystemctl(user bool) (func(args ...string) error, error) {
	bin, err := exec.LookPath("systemctl")
	if err != nil {
		return nil, errNoSystemd
	}
	// sd_booted(3): systemd is the running init system when this directory exists.
	if _, err := os.Stat("/run/systemd/system"); err != nil {
		return nil, errNoSystemd
	}
	return func(args ...string) error {
		out, err := exec.Command(bin, args...).CombinedOutput()
		if err != nil {
			msg := strings.TrimSpace(string(out))
			if msg == "" {
				return fmt.Errorf("systemctl %s: %w", strings.Join(args, " "), err)
			}
			return fmt.Errorf("systemctl %s: %w: %s", strings.Join(args, " "), err, msg)
		}
		return nil
	}, nil
}

func (o *Options) normalizeName() error {
	if o.Name == "" {
		o.Name = DefaultName
	}
	if !strings.HasSuffix(o.Name, ".service") {
		o.Name += ".service"
	}
	base := strings.TrimSuffix(o.Name, ".service")
	if base == "" || strings.HasPrefix(base, "-") || strings.ContainsFunc(base, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune(":_.-@", r))
	}) {
		return fmt.Errorf("service name %q: use letters, digits and : _ . - @ only", base)
	}
	return nil
}

func (o *Options) normalize() error {
	if err := o.normalizeName(); err != nil {
		return err
	}
	if o.Binary == "" || !filepath.IsAbs(o.Binary) {
		return fmt.Errorf("ferry binary %q: want an absolute path", o.Binary)
	}
	if o.ConfigPath == "" {
		return errors.New("no config file: pass --config FILE")
	}
	abs, err := filepath.Abs(o.ConfigPath)
	if err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	o.ConfigPath = abs
	for _, p := range []string{o.Binary, o.ConfigPath} {
		if strings.ContainsFunc(p, func(r rune) bool { return r < ' ' || r == 0x7f }) {
			return fmt.Errorf("path %q has a control character: systemd units cannot name it", p)
		}
	}
	return nil
}

func (o *Options) unitDir() (string, error) {
	if o.UnitDir != "" {
		return o.UnitDir, nil
	}
	if !o.User {
		return SystemUnitDir, nil
	}
	if dir := os.Getenv("XDG_CONFIG_HOME"); dir != "" {
		return filepath.Join(dir, "systemd", "user"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("user unit directory: %w", err)
	}
	return filepath.Join(home, ".config", "systemd", "user"), nil
}

// execLine joins a command line for ExecStart, quoting per systemd.service(5): words with
// spaces, quotes or backslashes in double quotes with \ and " escaped; % (specifiers)
// and $ (variable expansion) doubled everywhere.
func execLine(args ...string) string {
	words := make([]string, len(args))
	for i, a := range args {
		words[i] = quoteArg(a)
	}
	return strings.Join(words, " ")
}

func quoteArg(s string) string {
	s = strings.NewReplacer("%", "%%", "$", "$$").Replace(s)
	if s != "" && !strings.ContainsAny(s, " \t\"'\\;") {
		return s
	}
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// writeFile writes data to path (mode 0644) through a temporary file and a rename, so a
// reader never sees half a unit; it creates the directory if needed.
func writeFile(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".ferry-unit-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(0o644)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}
