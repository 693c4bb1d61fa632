package agent

import (
	"time"
)

// Timer is the part of *time.Timer the agent uses. The agent arms one timer
// at a time (its next wake-up), so a test's fake clock drives rotation,
// retries and polling by moving time to the timer's deadline.
type Timer interface {
	C() <-chan time.Time
	Stop() bool
}

// NewRealTimer is the default Config.NewTimer.
func NewRealTimer(d time.Duration) Timer { return realTimer{time.NewTimer(d)} }

type realTimer struct{ t *time.Timer }

var _ Timer = realTimer{}

func (r realTimer) C() <-chan time.Time { return r.t.C }
func (r realTimer) Stop() bool          { return r.t.Stop() }

// backoff is exponential with "equal jitter": the n-th wait is between half
// and all of initial*2^n (capped at max), so that a fleet of agents that
// lost the CA at the same moment does not come back at the same moment,
// while none retries sooner than half the step.
type backoff struct {
	initial, max time.Duration
	rand         func() float64
	n            int
}

func (b *backoff) next() time.Duration {
	d := b.max
	if b.n < 32 {
		if step := b.initial << b.n; step > 0 && step < b.max {
			d = step
			b.n++
		}
	}
	return b.jitter(d)
}

// longest is the wait after a refusal: the same credential will be
// refused again, but a token file may be rotated meanwhile.
func (b *backoff) longest() time.Duration { return b.jitter(b.max) }

func (b *backoff) jitter(d time.Duration) time.Duration {
	return d/2 + time.Duration(b.rand()*float64(d/2))
}

func (b *backoff) reset() { b.n = 0 }

// logLimiter lets one failure line through per interval and counts the
// ones it held back, so that an agent retrying for hours against a dead CA
// logs a steady trickle rather than a line per attempt.
type logLimiter struct {
	every      time.Duration
	last       time.Time
	suppressed int
}

func (l *logLimiter) allow(now time.Time) (ok bool, suppressed int) {
	if !l.last.IsZero() && now.Sub(l.last) < l.every {
		l.suppressed++
		return false, 0
	}
	n := l.suppressed
	l.suppressed = 0
	l.last = now
	return true, n
}

func (l *logLimiter) reset() { *l = logLimiter{every: l.every} }
