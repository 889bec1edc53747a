// Package console is the agent's terminal layer: the log handlers behind --log and
// --log-format, and the status block printed when tunnels come up. Colour (fatih/color)
// is used only here, and only on a terminal.
package console

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/fatih/color"
	"github.com/mattn/go-isatty"
)

// IsTerminal reports whether f is a terminal.
func IsTerminal(f *os.File) bool {
	return isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd())
}

// NewLogger builds the logger for --log-format term|logfmt|json at level.
func NewLogger(w io.Writer, format string, level slog.Level) (*slog.Logger, error) {
	opts := &slog.HandlerOptions{Level: level}
	switch format {
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "logfmt":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "term":
		return slog.New(&termHandler{w: w, level: level, mu: &sync.Mutex{}}), nil
	}
	return nil, fmt.Errorf("--log-format %q: want term, logfmt or json", format)
}

// ParseLevel parses --log-level.
func ParseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("--log-level %q: want debug, info, warn or error", s)
	}
	return l, nil
}

// termHandler writes "15:04:05 INFO message key=value" lines, coloured by level.
type termHandler struct {
	w     io.Writer
	level slog.Level
	attrs []slog.Attr
	mu    *sync.Mutex
}

func (h *termHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level }

func (h *termHandler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(color.New(color.Faint).Sprint(r.Time.Format(time.TimeOnly)))
	b.WriteByte(' ')
	lvl := r.Level.String()
	switch {
	case r.Level >= slog.LevelError:
		lvl = color.RedString("%-5s", lvl)
	case r.Level >= slog.LevelWarn:
		lvl = color.YellowString("%-5s", lvl)
	case r.Level >= slog.LevelInfo:
		lvl = color.CyanString("%-5s", lvl)
	default:
		lvl = fmt.Sprintf("%-5s", lvl)
	}
	b.WriteString(lvl)
	b.WriteByte(' ')
	b.WriteString(r.Message)
	write := func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%v", color.New(color.Faint).Sprint(a.Key), a.Value)
		return true
	}
	for _, a := range h.attrs {
		write(a)
	}
	r.Attrs(write)
	b.WriteByte('\n')
	h.mu.Lock()
	defer h.mu.Unlock()
	_, err := io.WriteString(h.w, b.String())
	return err
}

func (h *termHandler) WithAttrs(as []slog.Attr) slog.Handler {
	n := *h
	n.attrs = append(append([]slog.Attr(nil), h.attrs...), as...)
	return &n
}

func (h *termHandler) WithGroup(string) slog.Handler { return h }

// Forward is one "public URL -> upstream" line of the status block.
type Forward struct{ URL, Upstream string }

// Status is what the status block shows.
type Status struct {
	Relay string
	// Closed prints the block as the agent leaves: no Ctrl+C hint, status closed.
	Closed   bool
	RTT      time.Duration
	Version  string
	APIURL   string
	Forwards []Forward
}

// PrintStatus writes the status block shown when every tunnel is up.
func PrintStatus(w io.Writer, s Status) {
	bold := color.New(color.Bold)
	label := func(l string) string { return fmt.Sprintf("%-16s", l) }
	fmt.Fprintln(w)
	if s.Closed {
		fmt.Fprintf(w, "%s\n", bold.Sprint("ferry"))
		fmt.Fprintf(w, "%s%s\n", label("Session Status"), color.YellowString("closed"))
	} else {
		fmt.Fprintf(w, "%s%s\n", bold.Sprint(label("ferry")), color.New(color.Faint).Sprint("(Ctrl+C to quit)"))
		fmt.Fprintf(w, "%s%s\n", label("Session Status"), color.GreenString("online"))
	}
	fmt.Fprintf(w, "%s%s\n", label("Relay"), s.Relay)
	fmt.Fprintf(w, "%s%s\n", label("Version"), s.Version)
	if s.APIURL != "" {
		fmt.Fprintf(w, "%s%s\n", label("Web Interface"), s.APIURL)
	}
	for _, f := range s.Forwards {
		fmt.Fprintf(w, "%s%s -> %s\n", label("Forwarding"), bold.Sprint(f.URL), f.Upstream)
	}
	fmt.Fprintln(w)
}
