package events

import (
	"context"
	"fmt"
	"os"
)

// file appends records as JSON lines. It reopens the file when the path no longer names
// the file it holds (removed, or renamed by a log rotator).
type file struct {
	path string
	f    *os.File
}

func (d *file) deliver(_ context.Context, records [][]byte) error {
	if d.f != nil {
		st, err := os.Stat(d.path)
		fst, ferr := d.f.Stat()
		if err != nil || ferr != nil || !os.SameFile(st, fst) {
			d.close()
		}
	}
	if d.f == nil {
		f, err := os.OpenFile(d.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			return fmt.Errorf("open: %w", err)
		}
		d.f = f
	}
	n := 0
	for _, r := range records {
		n += len(r) + 1
	}
	buf := make([]byte, 0, n)
	for _, r := range records {
		buf = append(buf, r...)
		buf = append(buf, '\n')
	}
	// One write of whole lines: with O_APPEND, lines from one batch stay together.
	if _, err := d.f.Write(buf); err != nil {
		d.close()
		return fmt.Errorf("write %s: %w", d.path, err)
	}
	return nil
}

func (d *file) close() {
	if d.f != nil {
		d.f.Close()
		d.f = nil
	}
}
