package session

import (
	"net"
	"sync"
	"time"
)

// Limits on failed authentications from one source address: after AuthFailureBurst
// failures, one more attempt is allowed per AuthFailureEvery, so guessing tokens from one
// address is slow while a user who mistyped recovers quickly.
const (
	AuthFailureBurst = 10
	AuthFailureEvery = 6 * time.Second
	// maxAuthSources bounds the table; the oldest entries go first.
	maxAuthSources = 100000
)

// authLimiter is a token bucket per source IP, filled by time and drained by failures.
type authLimiter struct {
	mu  sync.Mutex
	now func() time.Time
	m   map[string]*authBucket
}

type authBucket struct {
	tokens  float64
	last    time.Time
	logged  time.Time // last "rate limited" log line for this source
	refused int       // attempts refused since that line
}

func newAuthLimiter() *authLimiter {
	return &authLimiter{now: time.Now, m: make(map[string]*authBucket)}
}

func sourceIP(addr net.Addr) string {
	if a, ok := addr.(*net.UDPAddr); ok {
		return a.IP.String()
	}
	if a, ok := addr.(*net.TCPAddr); ok {
		return a.IP.String()
	}
	h, _, err := net.SplitHostPort(addr.String())
	if err != nil {
		return addr.String()
	}
	return h
}

// bucket returns ip's bucket, refilled to now. Callers hold mu.
func (l *authLimiter) bucket(ip string) *authBucket {
	now := l.now()
	b := l.m[ip]
	if b == nil {
		if len(l.m) >= maxAuthSources {
			l.evict(now)
		}
		b = &authBucket{tokens: AuthFailureBurst, last: now}
		l.m[ip] = b
	}
	b.tokens = min(AuthFailureBurst, b.tokens+now.Sub(b.last).Seconds()/AuthFailureEvery.Seconds())
	b.last = now
	return b
}

// evict drops full buckets (sources that have not failed lately), or everything if none are.
func (l *authLimiter) evict(now time.Time) {
	for ip, b := range l.m {
		if b.tokens+now.Sub(b.last).Seconds()/AuthFailureEvery.Seconds() >= AuthFailureBurst {
			delete(l.m, ip)
		}
	}
	if len(l.m) >= maxAuthSources {
		clear(l.m)
	}
}

// allow reports whether ip may try an authtoken now, and how long it must wait if not.
// When refused it also says whether to log (at most once a minute per source) and how
// many attempts were refused since the last line.
func (l *authLimiter) allow(ip string) (ok bool, wait time.Duration, log bool, refused int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.bucket(ip)
	if b.tokens >= 1 {
		return true, 0, false, 0
	}
	b.refused++
	wait = time.Duration((1 - b.tokens) * float64(AuthFailureEvery))
	if now := l.now(); now.Sub(b.logged) >= time.Minute {
		b.logged = now
		refused, b.refused = b.refused, 0
		return false, wait, true, refused
	}
	return false, wait, false, 0
}

// failed records a failed authentication from ip.
func (l *authLimiter) failed(ip string) {
	l.mu.Lock()
	l.bucket(ip).tokens--
	l.mu.Unlock()
}
