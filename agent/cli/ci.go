package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ferrytunnel/ferry/agent/session"
)

// ciMode runs --exec and writes --url-file once every tunnel is up.
type ciMode struct {
	command, urlFile string
	stdout, stderr   io.Writer
	log              *slog.Logger
	cancel           func()
	// parent ends when ferry is interrupted; the command is stopped then.
	parent context.Context
	// interactive: stdin is a terminal (the command stays in its foreground group).
	interactive bool

	once sync.Once
	mu   sync.Mutex
	done chan struct{}
	err  error
}

// ready is called on every (re)connect; it acts on the first.
func (m *ciMode) ready(st []session.Status) {
	m.once.Do(func() {
		var urls []string
		named := map[string][]string{}
		for _, s := range st {
			urls = append(urls, s.URLs...)
			named[s.Tunnel.Name] = s.URLs
		}
		if m.urlFile != "" {
			if err := writeFileAtomic(m.urlFile, []byte(strings.Join(urls, "\n")+"\n")); err != nil {
				m.log.Error("--url-file", "path", m.urlFile, "err", err)
			}
		}
		if m.command == "" {
			return
		}
		all, _ := json.Marshal(named)
		m.mu.Lock()
		m.done = make(chan struct{})
		m.mu.Unlock()
		go m.run(urls, string(all))
	})
}

func (m *ciMode) run(urls []string, all string) {
	defer close(m.done)
	defer m.cancel() // the command's end ends the tunnels
	shell, flag := "sh", "-c"
	if runtime.GOOS == "windows" {
		shell, flag = "cmd", "/C"
	}
	// The command ends with ferry: Ctrl-C, SIGTERM or SIGHUP to ferry reaches its process
	// group as SIGTERM, and SIGKILL follows for what is left after execGrace.
	cmd := exec.CommandContext(m.parent, shell, flag, m.command)
	ownGroup(cmd, m.interactive)
	cmd.Cancel = func() error { return signalGroup(cmd, syscall.SIGTERM) }
	cmd.WaitDelay = execGrace
	cmd.Stdout, cmd.Stderr, cmd.Stdin = m.stdout, m.stderr, os.Stdin
	first := ""
	if len(urls) > 0 {
		first = urls[0]
	}
	cmd.Env = append(os.Environ(), "FERRY_URL="+first, "FERRY_URLS="+all)
	m.log.Info("running --exec", "command", m.command, "url", first)
	err := cmd.Run()
	if m.parent.Err() != nil && cmd.Process != nil {
		signalGroup(cmd, syscall.SIGKILL) //nolint:errcheck // nothing left is the usual case
	}
	var ee *exec.ExitError
	switch {
	case err == nil:
		m.err = nil
	case errors.As(err, &ee):
		code := ee.ExitCode()
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			code = 128 + int(ws.Signal()) // as a shell reports it
			m.err = &exitError{code: code, err: fmt.Errorf("--exec %q was killed by signal %d (%v)", m.command, int(ws.Signal()), ws.Signal())}
			break
		}
		m.err = &exitError{code: code, err: fmt.Errorf("--exec %q exited with status %d", m.command, code)}
	default:
		m.err = &exitError{code: ExitError, err: fmt.Errorf("--exec %q: %w", m.command, err)}
	}
}

// execGrace is how long an interrupted --exec command has to end after SIGTERM.
const execGrace = 10 * time.Second

func (m *ciMode) started() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.done != nil
}

// wait returns the command's outcome: nil for status 0, else an error carrying its status.
func (m *ciMode) wait() error {
	<-m.done
	return m.err
}

func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".ferry-url-*")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), path)
}
