package agent_test

import (
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/garrison-mesh/garrison/ca/agent"
)

// fakeClock is the agent's clock in tests. Time moves only when the test
// moves it; timers due by then fire. The agent arms one timer at a time, so
// "the agent is idle" is "a timer is pending", which waitPending waits for
// without sleeping.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	pending []*fakeTimer
	changed chan struct{} // closed and replaced when a timer is armed
}

type fakeTimer struct {
	c  *fakeClock
	at time.Time
	ch chan time.Time
}

var _ agent.Timer = (*fakeTimer)(nil)

func newFakeClock(now time.Time) *fakeClock {
	return &fakeClock{now: now, changed: make(chan struct{})}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) NewTimer(d time.Duration) agent.Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{c: c, at: c.now.Add(d), ch: make(chan time.Time, 1)}
	if d <= 0 {
		t.ch <- c.now
		return t
	}
	c.pending = append(c.pending, t)
	close(c.changed)
	c.changed = make(chan struct{})
	return t
}

func (t *fakeTimer) C() <-chan time.Time { return t.ch }

func (t *fakeTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	i := slices.Index(t.c.pending, t)
	if i < 0 {
		return false
	}
	t.c.pending = slices.Delete(t.c.pending, i, i+1)
	return true
}

// Set moves the clock to now (never backwards) and fires the timers due.
func (c *fakeClock) Set(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if now.Before(c.now) {
		panic("fake clock moved backwards")
	}
	c.now = now
	keep := c.pending[:0]
	for _, t := range c.pending {
		if !t.at.After(now) {
			t.ch <- now
		} else {
			keep = append(keep, t)
		}
	}
	c.pending = keep
}

func (c *fakeClock) Advance(d time.Duration) { c.Set(c.Now().Add(d)) }

// waitPending waits until the agent has armed its next timer and returns
// that timer's deadline.
func (c *fakeClock) waitPending(t testing.TB) time.Time {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		c.mu.Lock()
		if len(c.pending) > 0 {
			at := c.pending[0].at
			c.mu.Unlock()
			return at
		}
		ch := c.changed
		c.mu.Unlock()
		select {
		case <-ch:
		case <-deadline:
			t.Fatal("the agent armed no timer within 10s")
		}
	}
}

// fireNext waits for the agent's next timer and moves the clock to it.
func (c *fakeClock) fireNext(t testing.TB) time.Time {
	t.Helper()
	at := c.waitPending(t)
	c.Set(at)
	return at
}
