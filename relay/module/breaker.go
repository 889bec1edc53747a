package module

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/sony/gobreaker/v2"
)

// Circuit breaker settings after Hystrix's defaults: a rolling 10 s window in 1 s buckets,
// at least 20 requests in the window before the error ratio counts, 10 s open, then one
// probe request (half-open) decides whether to close again.
const (
	BreakerWindow = 10 * time.Second
	BreakerBucket = time.Second
	BreakerVolume = 20
	BreakerOpen   = 10 * time.Second
)

// ErrOpen is returned by Breaker.Allow while the circuit is open.
var ErrOpen = errors.New("circuit open")

var errServerError = errors.New("5xx")

// Breaker trips when the share of 5xx answers in the window reaches a ratio, and then
// answers 503 at the edge (the upstream gets a rest) until a probe succeeds.
type Breaker struct {
	cb *gobreaker.TwoStepCircuitBreaker[struct{}]
}

// NewBreaker returns a breaker for ratio in (0, 1]; nil for 0 (off).
func NewBreaker(name string, ratio float64) (*Breaker, error) {
	if ratio == 0 {
		return nil, nil
	}
	if ratio < 0 || ratio > 1 {
		return nil, fmt.Errorf("circuit_breaker %v: want an error ratio above 0 and at most 1, e.g. 0.5", ratio)
	}
	return &Breaker{cb: gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
		Name:         name,
		MaxRequests:  1,
		Interval:     BreakerWindow,
		BucketPeriod: BreakerBucket,
		Timeout:      BreakerOpen,
		ReadyToTrip: func(c gobreaker.Counts) bool {
			return c.Requests >= BreakerVolume && float64(c.TotalFailures) >= ratio*float64(c.Requests)
		},
	})}, nil
}

// Allow reports whether a request may go to the upstream; when it may, done must be
// called with the response status.
func (b *Breaker) Allow() (done func(status int), err error) {
	d, err := b.cb.Allow()
	if err != nil {
		return nil, ErrOpen
	}
	return func(status int) {
		if status >= 500 {
			d(errServerError)
		} else {
			d(nil)
		}
	}, nil
}

// State is "closed", "open" or "half-open".
func (b *Breaker) State() string { return b.cb.State().String() }

// StatusRecorder records the status a handler writes, keeping Flush and Hijack reachable.
type StatusRecorder struct {
	http.ResponseWriter
	Status int
}

func (s *StatusRecorder) WriteHeader(code int) {
	if s.Status == 0 {
		s.Status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *StatusRecorder) Write(p []byte) (int, error) {
	if s.Status == 0 {
		s.Status = http.StatusOK
	}
	return s.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach the writer underneath.
func (s *StatusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }
