//go:build linux

package main

import (
	"fmt"
	"math"
	"strings"
)

// compare says how a row's tunnel figure relates to its direct figure.
type compare int

const (
	compareNone  compare = iota // no direct figure (memory, CPU)
	compareRatio                // tunnel / direct (throughput, rates)
	compareAdded                // tunnel − direct (latency; before → after)
)

// target is a row's goal; a nil *target means the row is reported only.
type target struct {
	on     compare // compareRatio: the ratio; compareAdded: the difference; compareNone: the tunnel figure
	atMost bool    // true: the figure must be ≤ limit; false: ≥ limit
	limit  float64
}

func atLeastRatio(x float64) *target { return &target{on: compareRatio, limit: x} }
func atMostAdded(x float64) *target  { return &target{on: compareAdded, atMost: true, limit: x} }
func atMostValue(x float64) *target  { return &target{on: compareNone, atMost: true, limit: x} }

// measure is one row of the table.
type measure struct {
	metric    string
	transport string // quic, tcp, or a --peer's name
	unit      string // of direct and tunnel: "MiB/s", "req/s", "µs", "KiB", "MiB", "s/GiB", ""
	direct    float64
	tunnel    float64
	compare   compare
	target    *target
	// labels, when set, prefix the direct and tunnel cells (e.g. "before", "after").
	labels [2]string
	// err is set when the measurement failed; the row then says so.
	err error
}

// noDirect marks a row without a direct figure.
func noDirect() float64 { return math.NaN() }

// derived returns the ratio or the difference, NaN for compareNone.
func (m measure) derived() float64 {
	switch m.compare {
	case compareRatio:
		return m.tunnel / m.direct
	case compareAdded:
		return m.tunnel - m.direct
	}
	return math.NaN()
}

// result is PASS, MISS, "—" (report only) or FAIL (the measurement broke).
func (m measure) result() string {
	if m.err != nil {
		return "FAIL"
	}
	if m.target == nil {
		return "—"
	}
	v := m.tunnel
	if m.target.on != compareNone {
		v = m.derived()
	}
	ok := v >= m.target.limit
	if m.target.atMost {
		ok = v <= m.target.limit
	}
	if math.IsNaN(v) || !ok {
		return "MISS"
	}
	return "PASS"
}

func (m measure) cells() []string {
	if m.err != nil {
		msg := strings.ReplaceAll(strings.SplitN(m.err.Error(), "\n", 2)[0], "|", "/")
		return []string{m.metric, m.transport, "error: " + msg, "", "", m.targetCell(), "FAIL"}
	}
	return []string{m.metric, m.transport, m.valueCell(0, m.direct), m.valueCell(1, m.tunnel), m.derivedCell(), m.targetCell(), m.result()}
}

func (m measure) valueCell(i int, v float64) string {
	if math.IsNaN(v) {
		return "—"
	}
	s := formatValue(v, m.unit)
	if m.labels[i] != "" {
		s = m.labels[i] + " " + s
	}
	return s
}

func (m measure) derivedCell() string {
	d := m.derived()
	switch {
	case math.IsNaN(d) || math.IsInf(d, 0):
		return "—"
	case m.compare == compareRatio:
		return fmt.Sprintf("%.2f×", d)
	}
	sign := "+"
	if d < 0 {
		sign = "-"
	}
	return sign + formatValue(math.Abs(d), m.unit)
}

func (m measure) targetCell() string {
	t := m.target
	if t == nil {
		return "report"
	}
	op := "≥"
	if t.atMost {
		op = "≤"
	}
	switch t.on {
	case compareRatio:
		return fmt.Sprintf("%s %.2f×", op, t.limit)
	case compareAdded:
		return fmt.Sprintf("%s +%s", op, formatValue(t.limit, m.unit))
	}
	return fmt.Sprintf("%s %s", op, formatValue(t.limit, m.unit))
}

// formatValue prints v with its unit, with as many decimals as its size warrants.
func formatValue(v float64, unit string) string {
	var s string
	switch a := math.Abs(v); {
	case a == math.Trunc(a) && a < 1e6:
		s = fmt.Sprintf("%.0f", v)
	case a >= 100:
		s = fmt.Sprintf("%.0f", v)
	case a >= 10:
		s = fmt.Sprintf("%.1f", v)
	default:
		s = fmt.Sprintf("%.2f", v)
	}
	if unit == "" {
		return s
	}
	return s + " " + unit
}

// table renders the rows as one markdown table.
func table(rows []measure) string {
	header := []string{"metric", "transport", "direct", "tunnel", "tunnel vs direct", "target", "result"}
	all := [][]string{header}
	for _, m := range rows {
		all = append(all, m.cells())
	}
	width := make([]int, len(header))
	for _, r := range all {
		for i, c := range r {
			width[i] = max(width[i], len([]rune(c)))
		}
	}
	var b strings.Builder
	line := func(r []string) {
		b.WriteString("|")
		for i, c := range r {
			fmt.Fprintf(&b, " %s%s |", c, strings.Repeat(" ", width[i]-len([]rune(c))))
		}
		b.WriteString("\n")
	}
	line(all[0])
	sep := make([]string, len(header))
	for i := range sep {
		sep[i] = strings.Repeat("-", width[i])
	}
	line(sep)
	for _, r := range all[1:] {
		line(r)
	}
	return b.String()
}
