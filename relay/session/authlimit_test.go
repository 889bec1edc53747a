package session

import (
	"testing"
	"time"
)

func TestAuthLimiter(t *testing.T) {
	now := time.Unix(1000, 0)
	l := newAuthLimiter()
	l.now = func() time.Time { return now }
	for i := range AuthFailureBurst {
		if ok, _, _, _ := l.allow("198.51.100.7"); !ok {
			t.Fatalf("attempt %d refused within the burst", i+1)
		}
		l.failed("198.51.100.7")
	}
	ok, wait, log, _ := l.allow("198.51.100.7")
	if ok || wait <= 0 || wait > AuthFailureEvery || !log {
		t.Fatalf("after %d failures: ok=%v wait=%v log=%v; want refused, a wait up to %v, logged", AuthFailureBurst, ok, wait, log, AuthFailureEvery)
	}
	if _, _, log, _ := l.allow("198.51.100.7"); log {
		t.Error("a second refusal within a minute was logged again")
	}
	if ok, _, _, _ := l.allow("203.0.113.9"); !ok {
		t.Error("another address was refused")
	}
	now = now.Add(AuthFailureEvery)
	if ok, _, _, _ := l.allow("198.51.100.7"); !ok {
		t.Errorf("refused %v after the last failure, want one attempt allowed", AuthFailureEvery)
	}
	// Successes do not drain the bucket: a user with a valid token is never slowed.
	for range 100 {
		if ok, _, _, _ := l.allow("192.0.2.1"); !ok {
			t.Fatal("attempts without failures were refused")
		}
	}
}
