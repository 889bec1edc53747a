package h1

import (
	"bufio"
	"errors"
	"net"
	"sync"
	"time"
)

// Watch notices a client that goes away while a proxy waits on the other side (an answer
// that takes long, a stream of events that is silent): after a delay, a goroutine peeks
// the client's connection, and if that read fails (EOF, reset) it calls gone, which
// should end the other side so the waiting proxy returns. Most requests finish before
// the delay and cost only a timer. net/http's server does the same with a background
// read on every request.
type Watch struct {
	c     net.Conn
	br    *bufio.Reader
	skip  int // bytes at the front of br that are the request in flight
	gone  func()
	timer *time.Timer
	mu    sync.Mutex
	state int // watchWaiting, watchReading, watchStopped
	done  chan struct{}
}

const (
	watchWaiting = iota
	watchReading
	watchStopped
)

// WatchDelay is how long a request may wait before Watch starts reading the client.
var WatchDelay = time.Second

// StartWatch watches c, read through br, until Stop; br must not be read meanwhile. The
// first skip buffered bytes are the request in flight (a head not yet discarded).
func StartWatch(c net.Conn, br *bufio.Reader, skip int, gone func()) *Watch {
	w := &Watch{c: c, br: br, skip: skip, gone: gone}
	w.timer = time.AfterFunc(WatchDelay, w.run)
	return w
}

func (w *Watch) run() {
	w.mu.Lock()
	if w.state == watchStopped {
		w.mu.Unlock()
		return
	}
	w.state, w.done = watchReading, make(chan struct{})
	w.mu.Unlock()
	defer close(w.done)
	_, err := w.br.Peek(w.skip + 1)
	w.mu.Lock()
	stopped := w.state == watchStopped
	w.mu.Unlock()
	if err != nil && !stopped && !errors.Is(err, bufio.ErrBufferFull) {
		w.gone()
	}
}

// Stop ends the watch; when it returns, br may be read again.
func (w *Watch) Stop() {
	w.timer.Stop()
	w.mu.Lock()
	reading := w.state == watchReading
	w.state = watchStopped
	w.mu.Unlock()
	if reading {
		w.c.SetReadDeadline(time.Unix(1, 0)) //nolint:errcheck // wakes the peek
		<-w.done
		w.c.SetReadDeadline(time.Time{}) //nolint:errcheck
	}
}
