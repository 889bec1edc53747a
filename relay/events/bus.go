package events

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Config configures a Bus. Zero fields take the defaults named on each.
type Config struct {
	// Log receives delivery failures and drop reports (default: discarded).
	Log *slog.Logger
	// HTTPClient posts to webhooks (default: a client of the bus's own, whose idle
	// connections Close shuts). Redirects are never followed, whatever the client says.
	// To guard against SSRF at dial time (DNS names that resolve to internal addresses),
	// give it a Transport whose dialer refuses them.
	HTTPClient *http.Client
	// Timeout bounds one webhook attempt, from dial to the end of the answer's headers
	// (default 10s).
	Timeout time.Duration
	// QueueSize is how many events may wait per destination, besides the batch being
	// delivered (default 10000). Beyond it events are dropped and counted.
	QueueSize int
	// MaxRetries is how many times a failed delivery is retried before its events count
	// as failed (default 5; negative: never retry).
	MaxRetries int
	// Backoff is the wait before retry number attempt (1, 2, ...) (default: 1s doubling
	// to at most 1m, with ±20% jitter).
	Backoff func(attempt int) time.Duration
	// BatchSize is the most events one webhook request or file write carries
	// (default 100).
	BatchSize int
	// FlushInterval is how long a destination waits for a batch to fill before it
	// delivers what it has (default 1s; Close delivers at once).
	FlushInterval time.Duration
	// Now is the clock for event times and signatures (default time.Now).
	Now func() time.Time
	// AllowDestination is asked before a webhook is used and before each attempt
	// (default: http and https URLs only). An error makes the destination unusable.
	AllowDestination func(u *url.URL) error
	// AllowFile is asked before a file destination is used. Default: every file
	// destination is refused, since a file path writes on the relay's host as the
	// relay's user; set it to allow the operator's own subscriptions, or paths under a
	// directory set aside for them.
	AllowFile func(path string) error
}

func (c *Config) setDefaults() {
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	}
	if c.Timeout <= 0 {
		c.Timeout = 10 * time.Second
	}
	if c.QueueSize <= 0 {
		c.QueueSize = 10000
	}
	switch {
	case c.MaxRetries == 0:
		c.MaxRetries = 5
	case c.MaxRetries < 0:
		c.MaxRetries = 0
	}
	if c.Backoff == nil {
		c.Backoff = DefaultBackoff
	}
	if c.BatchSize <= 0 {
		c.BatchSize = 100
	}
	if c.FlushInterval <= 0 {
		c.FlushInterval = time.Second
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.AllowDestination == nil {
		c.AllowDestination = httpOnly
	}
	if c.AllowFile == nil {
		c.AllowFile = func(string) error {
			return errors.New("file destinations are off on this relay (events.Config.AllowFile is not set)")
		}
	}
}

// DefaultBackoff waits 1s before the first retry, doubling up to 1m, with ±20% jitter
// so that destinations failing together do not retry together.
func DefaultBackoff(attempt int) time.Duration {
	d := time.Minute
	if attempt < 7 {
		d = time.Second << max(attempt-1, 0)
	}
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}

func httpOnly(u *url.URL) error {
	if u.Scheme != "http" && u.Scheme != "https" {
		return errors.New("want http or https")
	}
	return nil
}

// DestinationStats counts what happened to the events one destination was handed.
// Queued + Delivered + Failed + Dropped is every event published to it.
type DestinationStats struct {
	SubscriptionID string
	AccountID      string
	Kind           string
	// Target is the webhook URL (without a password) or the file path.
	Target string
	// Queued events wait or are being delivered.
	Queued int
	// Delivered events were answered 2xx or written.
	Delivered uint64
	// Dropped events never got a try: the queue was full, or the bus closed first.
	Dropped uint64
	// Failed events were refused (4xx other than 429) or failed every retry.
	Failed uint64
	// Retries counts retried deliveries (of batches, not events).
	Retries uint64
}

// Bus routes published events to the destinations of the matching subscriptions.
type Bus struct {
	cfg    Config
	idBase string // random per bus: event ids are idBase + sequence
	seq    atomic.Uint64
	routes atomic.Pointer[routes] // nil once closed

	ctx    context.Context // ends when Close gives up waiting; cancels deliveries
	cancel context.CancelFunc

	mu      sync.Mutex
	closed  bool
	workers map[string]*worker // current destinations by key
	wg      sync.WaitGroup     // every destination's goroutine, removed ones included

	// afterBatch, when set (by tests, before SetSubscriptions), is called by a
	// destination after each batch it settles.
	afterBatch func(key string)
}

// routes is the immutable snapshot Publish reads: account → event type → targets.
type routes struct {
	byAccount map[string]map[string][]target
}

type target struct {
	sub *subscription
	w   *worker
}

// subscription is a validated Subscription, ready for the delivery goroutines.
type subscription struct {
	id, account string
	fields      map[string]bool // nil: all
}

// NewBus returns a bus with no subscriptions. Close it to stop its goroutines.
func NewBus(cfg Config) *Bus {
	cfg.setDefaults()
	client := *cfg.HTTPClient
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	cfg.HTTPClient = &client
	var id [6]byte
	_, _ = crand.Read(id[:]) // crypto/rand.Read never fails
	ctx, cancel := context.WithCancel(context.Background())
	return &Bus{
		cfg:     cfg,
		idBase:  "ev_" + hex.EncodeToString(id[:]) + "_",
		ctx:     ctx,
		cancel:  cancel,
		workers: map[string]*worker{},
	}
}

// Check validates a subscription as SetSubscriptions will use it: Validate, then the
// bus's AllowDestination and AllowFile. The management API calls it before storing one.
func (b *Bus) Check(s Subscription) error {
	if err := s.Validate(); err != nil {
		return err
	}
	for i, d := range s.Destinations {
		if err := b.allow(d); err != nil {
			return fmt.Errorf("destinations[%d].%w", i, err)
		}
	}
	return nil
}

func (b *Bus) allow(d Destination) error {
	switch d.Kind {
	case KindWebhook:
		u, err := url.Parse(d.URL)
		if err != nil {
			return fmt.Errorf("url: %w", err)
		}
		if err := b.cfg.AllowDestination(u); err != nil {
			return fmt.Errorf("url: %w", err)
		}
	case KindFile:
		if err := b.cfg.AllowFile(d.Path); err != nil {
			return fmt.Errorf("path: %w", err)
		}
	}
	return nil
}

func destKey(subID string, i int) string {
	return subID + "/destinations[" + strconv.Itoa(i) + "]"
}

// SetSubscriptions replaces every subscription. A destination whose subscription id,
// index and settings are unchanged keeps its queue and counters; a removed one delivers
// what it holds, then stops. A subscription that fails Check is skipped and logged.
func (b *Bus) SetSubscriptions(subs []Subscription) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return
	}
	next := map[string]*worker{}
	r := &routes{byAccount: map[string]map[string][]target{}}
	for _, s := range subs {
		if err := b.Check(s); err != nil {
			b.cfg.Log.Warn("event subscription skipped", "subscription", s.ID, "account", s.AccountID, "err", err)
			continue
		}
		if _, dup := next[destKey(s.ID, 0)]; dup {
			b.cfg.Log.Warn("event subscription skipped: duplicate id", "subscription", s.ID, "account", s.AccountID)
			continue
		}
		sub := &subscription{id: s.ID, account: s.AccountID}
		if len(s.Fields) > 0 {
			sub.fields = make(map[string]bool, len(s.Fields))
			for _, f := range s.Fields {
				sub.fields[f] = true
			}
		}
		byType := r.byAccount[s.AccountID]
		if byType == nil {
			byType = map[string][]target{}
			r.byAccount[s.AccountID] = byType
		}
		for i, d := range s.Destinations {
			key := destKey(s.ID, i)
			w := b.workers[key]
			if w == nil || w.dest != d || w.account != s.AccountID {
				w = b.startWorker(key, s.ID, s.AccountID, d)
			}
			next[key] = w
			seen := map[string]bool{}
			for _, t := range s.Types {
				if !seen[t] {
					seen[t] = true
					byType[t] = append(byType[t], target{sub, w})
				}
			}
		}
	}
	for key, w := range b.workers {
		if next[key] != w {
			w.stop() // it delivers what it holds, then ends
		}
	}
	b.workers = next
	b.routes.Store(r)
}

// Publish hands e to the destinations of every subscription of e's account that selects
// its type. It never blocks: an event a destination's queue has no room for is dropped
// and counted. e.Fields must not change afterwards.
// Wants reports whether any subscription takes events of typ for account, so a caller
// on a hot path can skip building an event nobody receives.
func (b *Bus) Wants(account, typ string) bool {
	if b == nil {
		return false
	}
	r := b.routes.Load()
	return r != nil && len(r.byAccount[account][typ]) > 0
}

func (b *Bus) Publish(e Event) {
	r := b.routes.Load()
	if r == nil {
		return
	}
	ts := r.byAccount[e.AccountID][e.Type]
	if len(ts) == 0 {
		return
	}
	if e.Time.IsZero() {
		e.Time = b.cfg.Now()
	}
	seq := b.seq.Add(1)
	for _, t := range ts {
		if !t.w.q.push(item{ev: e, sub: t.sub, seq: seq}) {
			t.w.reportDrop()
		}
	}
}

// Stats reports each current destination's counters, keyed "<subscription id>/destinations[<index>]".
func (b *Bus) Stats() map[string]DestinationStats {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make(map[string]DestinationStats, len(b.workers))
	for key, w := range b.workers {
		out[key] = w.stats()
	}
	return out
}

// Dropped is the number of events dropped over all current destinations.
func (b *Bus) Dropped() uint64 {
	var n uint64
	for _, s := range b.Stats() {
		n += s.Dropped
	}
	return n
}

// Close stops taking events and delivers what the queues hold until ctx ends; then it
// cancels the deliveries still running (their events count as dropped). It returns when
// every destination's goroutine has ended: nil if all were flushed, else ctx's error.
func (b *Bus) Close(ctx context.Context) error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	b.routes.Store(nil)
	for _, w := range b.workers {
		w.stop()
	}
	b.mu.Unlock()

	done := make(chan struct{})
	go func() {
		b.wg.Wait()
		close(done)
	}()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = ctx.Err()
		b.cancel()
		<-done
	}
	b.cancel()
	b.cfg.HTTPClient.CloseIdleConnections()
	return err
}

// worker delivers one destination's queue.
type worker struct {
	b       *Bus
	key     string
	subID   string
	account string
	dest    Destination
	target  string
	q       *queue
	d       deliverer

	stopOnce sync.Once
	stopped  chan struct{} // closed by stop: drain, then end
	lastDrop atomic.Int64  // unix nanos of the last drop report
}

// deliverer sends one batch of encoded records. An error wrapped in permanent is not
// retried.
type deliverer interface {
	deliver(ctx context.Context, records [][]byte) error
	close()
}

type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// retryAfterError asks for a wait of at least after before the next attempt.
type retryAfterError struct {
	err   error
	after time.Duration
}

func (e *retryAfterError) Error() string { return e.err.Error() }
func (e *retryAfterError) Unwrap() error { return e.err }

// startWorker must be called with b.mu held.
func (b *Bus) startWorker(key, subID, account string, d Destination) *worker {
	w := &worker{
		b: b, key: key, subID: subID, account: account, dest: d, target: d.Path,
		q:       newQueue(b.cfg.QueueSize),
		stopped: make(chan struct{}),
	}
	switch d.Kind {
	case KindWebhook:
		u, _ := url.Parse(d.URL) // checked by Check
		w.target = u.Redacted()
		w.d = &webhook{url: d.URL, secret: []byte(d.Secret), client: b.cfg.HTTPClient, timeout: b.cfg.Timeout, now: b.cfg.Now, allow: b.cfg.AllowDestination}
	case KindFile:
		w.d = &file{path: d.Path}
	}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		w.run()
	}()
	return w
}

func (w *worker) stop() {
	w.stopOnce.Do(func() {
		w.q.close()
		close(w.stopped)
	})
}

func (w *worker) stopping() bool {
	select {
	case <-w.stopped:
		return true
	default:
		return false
	}
}

func (w *worker) stats() DestinationStats {
	c, queued := w.q.snapshot()
	return DestinationStats{
		SubscriptionID: w.subID, AccountID: w.account, Kind: w.dest.Kind, Target: w.target,
		Queued: queued, Delivered: c.delivered, Dropped: c.dropped, Failed: c.failed, Retries: c.retries,
	}
}

// reportDrop logs a full queue at most once a minute per destination.
func (w *worker) reportDrop() {
	if w.stopping() {
		return // not full: removed or closing
	}
	now := w.b.cfg.Now().UnixNano()
	last := w.lastDrop.Load()
	if last != 0 && now-last < int64(time.Minute) {
		return
	}
	if !w.lastDrop.CompareAndSwap(last, now) {
		return
	}
	c, queued := w.q.snapshot()
	w.b.cfg.Log.Warn("event destination queue full: dropping events",
		"subscription", w.subID, "destination", w.key, "target", w.target, "queued", queued, "dropped", c.dropped)
}

func (w *worker) run() {
	defer w.d.close()
	batchSize, flush := w.b.cfg.BatchSize, w.b.cfg.FlushInterval
	timer := time.NewTimer(flush)
	timer.Stop()
	var batch []item
	for {
		batch = w.q.take(batch[:0], batchSize)
		if len(batch) == 0 {
			if w.stopping() {
				return
			}
			select {
			case <-w.q.notify:
			case <-w.stopped:
			}
			continue
		}
		if len(batch) < batchSize && !w.stopping() {
			timer.Reset(flush)
		fill:
			for len(batch) < batchSize {
				select {
				case <-w.q.notify:
					batch = w.q.take(batch, batchSize-len(batch))
				case <-w.stopped:
					batch = w.q.take(batch, batchSize-len(batch))
					break fill
				case <-timer.C:
					break fill
				}
			}
			timer.Stop()
		}
		w.send(batch)
		clear(batch)
		if w.b.afterBatch != nil {
			w.b.afterBatch(w.key)
		}
	}
}

// send delivers a batch, retrying as configured, and settles its items.
func (w *worker) send(batch []item) {
	ctx := w.b.ctx
	records := make([][]byte, 0, len(batch))
	for _, it := range batch {
		rec, err := json.Marshal(it.record(w.b.idBase))
		if err != nil {
			w.b.cfg.Log.Error("event not encodable", "subscription", w.subID, "type", it.ev.Type, "err", err)
			w.q.done(1, failed)
			continue
		}
		records = append(records, rec)
	}
	n := len(records)
	if n == 0 {
		return
	}
	for attempt := 0; ; attempt++ {
		if ctx.Err() != nil {
			w.q.done(n, dropped)
			return
		}
		err := w.d.deliver(ctx, records)
		if err == nil {
			w.q.done(n, delivered)
			return
		}
		if ctx.Err() != nil {
			w.q.done(n, dropped)
			return
		}
		var perm *permanentError
		if errors.As(err, &perm) || errors.Is(err, ErrAddressRefused) || attempt >= w.b.cfg.MaxRetries {
			w.b.cfg.Log.Warn("event delivery failed", "subscription", w.subID, "destination", w.key,
				"target", w.target, "events", n, "attempts", attempt+1, "err", err)
			w.q.done(n, failed)
			return
		}
		wait := w.b.cfg.Backoff(attempt + 1)
		var ra *retryAfterError
		if errors.As(err, &ra) && ra.after > wait {
			wait = min(ra.after, time.Minute)
		}
		w.b.cfg.Log.Debug("event delivery retry", "destination", w.key, "attempt", attempt+1, "wait", wait, "err", err)
		w.q.retried()
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			w.q.done(n, dropped)
			return
		}
	}
}

// record is what a destination receives for it: the subscription's fields only.
func (it *item) record(idBase string) Record {
	obj := it.ev.Fields
	if it.sub.fields != nil {
		obj = make(map[string]any, len(it.sub.fields))
		for k, v := range it.ev.Fields {
			if it.sub.fields[k] {
				obj[k] = v
			}
		}
	}
	if obj == nil {
		obj = map[string]any{}
	}
	return Record{
		ID:             idBase + strconv.FormatUint(it.seq, 16),
		SubscriptionID: it.sub.id,
		AccountID:      it.ev.AccountID,
		EventType:      it.ev.Type,
		EventTimestamp: it.ev.Time.UTC(),
		Object:         obj,
	}
}
