package events

import "sync"

// item is one event on its way to one destination of one subscription.
type item struct {
	ev  Event
	sub *subscription
	seq uint64
}

// queue is a destination's bounded FIFO. It grows with what it holds (an idle
// destination costs a few words, not QueueSize slots) and keeps the destination's
// counters, so that a Stats snapshot is consistent: every event handed to push is, at any
// moment, exactly one of queued, in flight, delivered, failed or dropped.
type queue struct {
	max    int
	notify chan struct{} // a token when push added something

	mu       sync.Mutex
	buf      []item
	head     int // buf[head:] is pending
	closed   bool
	inflight int
	counts   counts
}

type counts struct {
	delivered, dropped, failed, retries uint64
}

func newQueue(max int) *queue {
	return &queue{max: max, notify: make(chan struct{}, 1)}
}

// push adds it unless the queue is full or closed, and reports whether it did; a
// refused item counts as dropped. It never waits for the consumer.
func (q *queue) push(it item) bool {
	q.mu.Lock()
	if q.closed || len(q.buf)-q.head >= q.max {
		q.counts.dropped++
		q.mu.Unlock()
		return false
	}
	if len(q.buf) == cap(q.buf) && q.head > 0 && q.head >= len(q.buf)/2 {
		// Reuse the consumed front rather than grow; at least half the slice is free,
		// so the copy is amortised over the pushes that filled it.
		n := copy(q.buf, q.buf[q.head:])
		clear(q.buf[n:])
		q.buf = q.buf[:n]
		q.head = 0
	}
	q.buf = append(q.buf, it)
	q.mu.Unlock()
	select {
	case q.notify <- struct{}{}:
	default:
	}
	return true
}

// take moves up to n pending items to dst and marks them in flight.
func (q *queue) take(dst []item, n int) []item {
	q.mu.Lock()
	defer q.mu.Unlock()
	k := min(n, len(q.buf)-q.head)
	if k <= 0 {
		return dst
	}
	dst = append(dst, q.buf[q.head:q.head+k]...)
	clear(q.buf[q.head : q.head+k]) // let the events' maps go
	q.head += k
	q.inflight += k
	if q.head == len(q.buf) {
		q.head = 0
		if cap(q.buf) > 1024 {
			q.buf = nil // an idle destination gives its memory back
		} else {
			q.buf = q.buf[:0]
		}
	}
	return dst
}

// done settles n in-flight items: add them to the counter that outcome picks.
func (q *queue) done(n int, outcome func(*counts) *uint64) {
	q.mu.Lock()
	q.inflight -= n
	*outcome(&q.counts) += uint64(n)
	q.mu.Unlock()
}

func (q *queue) retried() {
	q.mu.Lock()
	q.counts.retries++
	q.mu.Unlock()
}

// close refuses further pushes; what is pending stays to be drained.
func (q *queue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
}

func (q *queue) snapshot() (c counts, queued int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.counts, len(q.buf) - q.head + q.inflight
}

func delivered(c *counts) *uint64 { return &c.delivered }
func dropped(c *counts) *uint64   { return &c.dropped }
func failed(c *counts) *uint64    { return &c.failed }
