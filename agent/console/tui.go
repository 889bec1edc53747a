package console

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/fatih/color"

	"github.com/ferrytunnel/ferry/agent/inspect"
)

// TunnelView is one forwarding line with its connection counters.
type TunnelView struct {
	URL, Upstream string
	Open, Total   int64
}

// View is what the terminal UI shows; a Source fills it on every redraw.
type View struct {
	Online    bool
	Relay     string
	Transport string
	RTT       time.Duration
	Version   string
	APIURL    string
	Tunnels   []TunnelView
	Requests  []*inspect.Exchange // newest first
}

// TUI redraws the agent's status in place on a terminal.
type TUI struct {
	w       io.Writer
	source  func() View
	wake    <-chan struct{}
	rate    rateMeter
	maxReqs int
}

// NewTUI returns a terminal UI reading from source; wake (may be nil) triggers a redraw.
func NewTUI(w io.Writer, source func() View, wake <-chan struct{}) *TUI {
	return &TUI{w: w, source: source, wake: wake, maxReqs: 10}
}

// Run redraws every second and on wake until ctx ends, then restores the screen and
// prints the last view once more as plain lines.
func (t *TUI) Run(ctx context.Context) {
	io.WriteString(t.w, "\x1b[?1049h\x1b[?25l") //nolint:errcheck // alternate screen, hide cursor
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var last View
	for {
		last = t.source()
		t.draw(last)
		select {
		case <-ctx.Done():
			io.WriteString(t.w, "\x1b[?25h\x1b[?1049l") //nolint:errcheck // restore
			return
		case <-tick.C:
		case <-t.wake:
		}
	}
}

// draw writes the whole frame from the top-left, clearing each line's tail and what is
// below, so nothing flickers.
func (t *TUI) draw(v View) {
	var b bytes.Buffer
	b.WriteString("\x1b[H")
	line := func(format string, args ...any) {
		fmt.Fprintf(&b, format, args...)
		b.WriteString("\x1b[K\r\n")
	}
	label := func(l string) string { return fmt.Sprintf("%-17s", l) }
	bold, faint := color.New(color.Bold), color.New(color.Faint)
	line("%s%s", bold.Sprint(label("ferry")), faint.Sprint("(Ctrl+C to quit)"))
	line("")
	status := color.GreenString("online")
	if !v.Online {
		status = color.YellowString("reconnecting")
	}
	line("%s%s", label("Session Status"), status)
	relay := v.Relay
	if v.Transport != "" {
		relay += " (" + v.Transport + ")"
	}
	line("%s%s", label("Relay"), relay)
	if v.RTT > 0 {
		line("%s%s", label("Latency"), v.RTT.Round(10*time.Microsecond))
	} else {
		line("%s%s", label("Latency"), "-")
	}
	line("%s%s", label("Version"), v.Version)
	if v.APIURL != "" {
		line("%s%s", label("Web Interface"), v.APIURL)
	}
	var open, total int64
	for _, tv := range v.Tunnels {
		line("%s%s -> %s", label("Forwarding"), bold.Sprint(tv.URL), tv.Upstream)
		open += tv.Open
		total += tv.Total
	}
	line("")
	r1, r5 := t.rate.observe(time.Now(), total)
	line("%s%s", label("Connections"), faint.Sprint("ttl     opn     rt1/s   rt5/s"))
	line("%s%-8d%-8d%-8.2f%-8.2f", label(""), total, open, r1, r5)
	if len(v.Requests) > 0 {
		line("")
		line("%s", bold.Sprint("HTTP Requests"))
		line("%s", faint.Sprint(strings.Repeat("-", 13)))
		for i, e := range v.Requests {
			if i == t.maxReqs {
				break
			}
			status := "---"
			if e.Response != nil {
				status = statusColor(e.Response.StatusCode)
			} else if e.Error != "" {
				status = color.RedString("ERR")
			}
			path := e.Request.URI
			if len(path) > 60 {
				path = path[:57] + "..."
			}
			line("%s %-7s %-60s %s %s", e.Start.Format("15:04:05.000"), e.Request.Method, path, status, faint.Sprint(e.Duration.Round(100*time.Microsecond)))
		}
	}
	b.WriteString("\x1b[J")
	t.w.Write(b.Bytes()) //nolint:errcheck // the terminal went away
}

func statusColor(code int) string {
	s := fmt.Sprintf("%d %-20s", code, statusText(code))
	switch {
	case code >= 500:
		return color.RedString(s)
	case code >= 400:
		return color.YellowString(s)
	case code >= 300:
		return color.CyanString(s)
	default:
		return color.GreenString(s)
	}
}

func statusText(code int) string {
	switch code {
	case 200:
		return "OK"
	case 201:
		return "Created"
	case 204:
		return "No Content"
	case 301, 302, 307, 308:
		return "Redirect"
	case 304:
		return "Not Modified"
	case 400:
		return "Bad Request"
	case 401:
		return "Unauthorized"
	case 403:
		return "Forbidden"
	case 404:
		return "Not Found"
	case 500:
		return "Internal Server Error"
	case 502:
		return "Bad Gateway"
	case 503:
		return "Service Unavailable"
	}
	return ""
}

// rateMeter turns a growing total into rates over the last 1 and 5 minutes.
type rateMeter struct {
	samples []sample
}

type sample struct {
	at    time.Time
	total int64
}

func (m *rateMeter) observe(now time.Time, total int64) (per1, per5 float64) {
	m.samples = append(m.samples, sample{now, total})
	for len(m.samples) > 1 && now.Sub(m.samples[0].at) > 5*time.Minute {
		m.samples = m.samples[1:]
	}
	rate := func(window time.Duration) float64 {
		for _, s := range m.samples {
			if now.Sub(s.at) <= window {
				if d := now.Sub(s.at).Seconds(); d > 0 {
					return float64(total-s.total) / d
				}
				return 0
			}
		}
		return 0
	}
	return rate(time.Minute), rate(5 * time.Minute)
}
