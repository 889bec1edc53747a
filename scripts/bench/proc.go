//go:build linux

package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat (100 on Linux).
const clockTicks = 100

// stopTimeout is how long a child gets to exit after SIGINT before its group is killed.
const stopTimeout = 5 * time.Second

// cleanups runs registered functions in reverse order, once.
type cleanups struct {
	mu  sync.Mutex
	fns []func()
}

func (c *cleanups) add(fn func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.fns = append(c.fns, fn)
}

func (c *cleanups) run() {
	c.mu.Lock()
	fns := c.fns
	c.fns = nil
	c.mu.Unlock()
	for i := len(fns) - 1; i >= 0; i-- {
		fns[i]()
	}
}

// child is a process the bench started (relay, agent or a peer's command), in its own
// process group. Its output is kept (the first and last lines, and every warning or
// error) for the report.
type child struct {
	name string
	cmd  *exec.Cmd
	out  *output
	done chan struct{} // closed when the process has exited
	err  error         // its exit status, set before done is closed

	mu       sync.Mutex
	stopping bool
}

// startChild starts path with args and env (added to the bench's environment). If the
// child exits before stop is called, died is called with it and the reason.
func startChild(name, path string, args, env []string, died func(*child, error)) (*child, error) {
	c := &child{name: name, out: newOutput(), done: make(chan struct{})}
	c.cmd = exec.Command(path, args...)
	c.cmd.SysProcAttr = sysProcAttr()
	c.cmd.Env = append(append(os.Environ(), "NO_COLOR=1"), env...)
	c.cmd.Stdout = c.out
	c.cmd.Stderr = c.out
	if err := c.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		err := c.cmd.Wait()
		if err == nil {
			err = errors.New("exit status 0")
		}
		c.err = err
		close(c.done)
		c.mu.Lock()
		expected := c.stopping
		c.mu.Unlock()
		if !expected {
			died(c, fmt.Errorf("%s exited unexpectedly (%v)", name, err))
		}
	}()
	return c, nil
}

func (c *child) pid() int { return c.cmd.Process.Pid }

// stop asks the child's process group to exit (SIGINT), then kills what is left of the
// group (the child after stopTimeout, or anything it started in the background). It
// returns an error if the child had to be killed.
func (c *child) stop() error {
	c.mu.Lock()
	already := c.stopping
	c.stopping = true
	c.mu.Unlock()
	if already {
		<-c.done
		return nil
	}
	pgid := -c.pid()
	syscall.Kill(pgid, syscall.SIGINT) //nolint:errcheck // the group may be gone already
	var err error
	select {
	case <-c.done:
	case <-time.After(stopTimeout):
		err = fmt.Errorf("%s did not exit within %s of SIGINT; killed it", c.name, stopTimeout)
	}
	syscall.Kill(pgid, syscall.SIGKILL) //nolint:errcheck
	<-c.done
	return err
}

// waitLine waits until the child prints a line for which match returns a non-empty
// string, and returns that string.
func (c *child) waitLine(ctx context.Context, timeout time.Duration, what string, match func(string) string) (string, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		found, changed := c.out.find(match)
		if found != "" {
			return found, nil
		}
		select {
		case <-changed:
		case <-c.done:
			if found, _ := c.out.find(match); found != "" {
				return found, nil
			}
			return "", fmt.Errorf("%s exited (%v) before it printed %s; its output:\n%s", c.name, c.err, what, c.out.lastLines(30))
		case <-ctx.Done():
			return "", context.Cause(ctx)
		case <-deadline.C:
			return "", fmt.Errorf("%s did not print %s within %s; its output:\n%s", c.name, what, timeout, c.out.lastLines(30))
		}
	}
}

// output keeps a child's first and last lines and its notable ones (warnings, errors,
// panics), and wakes waiters on each new line.
type output struct {
	mu       sync.Mutex
	partial  []byte
	head     []string // the first maxHead lines
	tail     []string // the last maxTail lines after head
	notable  []string // the first maxNotable warnings and errors
	nNotable int
	changed  chan struct{} // closed (and replaced) when a line arrives
}

const (
	maxHead    = 200
	maxTail    = 300
	maxNotable = 40
)

func newOutput() *output { return &output{changed: make(chan struct{})} }

func (o *output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.partial = append(o.partial, p...)
	for {
		i := bytes.IndexByte(o.partial, '\n')
		if i < 0 {
			break
		}
		o.addLocked(strings.TrimRight(string(o.partial[:i]), "\r"))
		o.partial = o.partial[i+1:]
	}
	if len(o.partial) > 64<<10 {
		o.addLocked(string(o.partial))
		o.partial = nil
	}
	return len(p), nil
}

func (o *output) addLocked(l string) {
	if len(o.head) < maxHead {
		o.head = append(o.head, l)
	} else {
		o.tail = append(o.tail, l)
		if len(o.tail) > 2*maxTail {
			o.tail = append(o.tail[:0], o.tail[len(o.tail)-maxTail:]...)
		}
	}
	if isNotable(l) {
		o.nNotable++
		if len(o.notable) < maxNotable {
			o.notable = append(o.notable, l)
		}
	}
	close(o.changed)
	o.changed = make(chan struct{})
}

// isNotable reports a log line worth showing in the report: a warning, an error, a
// panic or a Go runtime fatal error.
func isNotable(l string) bool {
	return strings.Contains(l, "level=WARN") || strings.Contains(l, "level=ERROR") ||
		strings.HasPrefix(l, "panic:") || strings.HasPrefix(l, "fatal error:") || strings.HasPrefix(l, "goroutine ")
}

func (o *output) find(match func(string) string) (string, <-chan struct{}) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, ls := range [][]string{o.head, o.tail} {
		for _, l := range ls {
			if s := match(l); s != "" {
				return s, o.changed
			}
		}
	}
	return "", o.changed
}

func (o *output) lastLines(n int) string {
	o.mu.Lock()
	defer o.mu.Unlock()
	all := append(append([]string(nil), o.head...), o.tail...)
	if len(all) > n {
		all = all[len(all)-n:]
	}
	return "  | " + strings.Join(all, "\n  | ")
}

// notableLines returns the warnings and errors seen and how many there were in all.
func (o *output) notableLines() ([]string, int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]string(nil), o.notable...), o.nNotable
}

// ---- /proc and pprof readings -----------------------------------------------------

// rssKiB returns a process's resident set size (VmRSS) in KiB.
func rssKiB(pid int) (float64, error) { return statusKiB(pid, "VmRSS") }

// statusKiB returns a "kB" field of /proc/PID/status: VmRSS, VmHWM (peak RSS), ...
func statusKiB(pid int, field string) (float64, error) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), field+":"); ok {
			n, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			if err != nil {
				return 0, fmt.Errorf("/proc/%d/status %s %q: %w", pid, field, v, err)
			}
			return n, nil
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no %s line", pid, field)
}

// resetPeakRSS sets a process's VmHWM back to its current RSS.
func resetPeakRSS(pid int) error {
	return os.WriteFile("/proc/"+strconv.Itoa(pid)+"/clear_refs", []byte("5"), 0)
}

// cpuSeconds returns a process's user plus system CPU time so far.
func cpuSeconds(pid int) (float64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name (field 2) is in parentheses and may hold spaces: split after it.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no ')'", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f)+2)
	}
	ut, err1 := strconv.ParseFloat(f[11], 64)
	st, err2 := strconv.ParseFloat(f[12], 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	return (ut + st) / clockTicks, nil
}

// pprofTimeout bounds one request to a child's pprof endpoint.
const pprofTimeout = 10 * time.Second

// pprofGet fetches a child's pprof endpoint on a fresh connection that it closes, so the
// bench leaves no idle connection (and no goroutine serving it) behind in the child.
func pprofGet(ctx context.Context, addr, path string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, pprofTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		return nil, err
	}
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s%s: %s", addr, path, resp.Status)
	}
	return io.ReadAll(io.LimitReader(resp.Body, 64<<20))
}

// goroutines reads "goroutine profile: total N" from a child's pprof endpoint.
func goroutines(ctx context.Context, pprofAddr string) (int, error) {
	b, err := pprofGet(ctx, pprofAddr, "/debug/pprof/goroutine?debug=1")
	if err != nil {
		return 0, err
	}
	first, _, _ := bytes.Cut(b, []byte("\n"))
	v, ok := strings.CutPrefix(string(first), "goroutine profile: total ")
	if !ok {
		return 0, fmt.Errorf("goroutine profile from %s starts %q", pprofAddr, first)
	}
	return strconv.Atoi(strings.TrimSpace(v))
}

// goMemory makes a child collect garbage (the heap profile's gc=1) and returns its Go
// heap and stacks in use (runtime.MemStats HeapInuse + StackInuse), in KiB. It collects
// twice: sync.Pool contents survive one collection. Collecting also keeps RSS readings from
// being inflated by garbage.
func goMemory(ctx context.Context, pprofAddr string) (float64, error) {
	if _, err := pprofGet(ctx, pprofAddr, "/debug/pprof/heap?gc=1"); err != nil {
		return 0, err
	}
	b, err := pprofGet(ctx, pprofAddr, "/debug/pprof/heap?gc=1&debug=1")
	if err != nil {
		return 0, err
	}
	var heap, stack float64
	var found int
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "# HeapInuse = "); ok {
			heap, err = strconv.ParseFloat(strings.TrimSpace(v), 64)
			found++
		} else if v, ok := strings.CutPrefix(l, "# Stack = "); ok {
			inuse, _, _ := strings.Cut(v, " / ")
			stack, err = strconv.ParseFloat(strings.TrimSpace(inuse), 64)
			found++
		}
		if err != nil {
			return 0, fmt.Errorf("heap profile from %s: %q: %w", pprofAddr, l, err)
		}
	}
	if found != 2 {
		return 0, fmt.Errorf("heap profile from %s: no HeapInuse and Stack lines", pprofAddr)
	}
	return (heap + stack) / 1024, nil
}
