package exchange

import (
	"context"
	"math/rand/v2"
	"sync"
	"time"
)

// Sleep waits for d or until ctx is done, and returns ctx.Err() in the
// second case (at once when d <= 0 and ctx is done).
func Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Backoff yields exponentially growing waits with jitter: the n-th call of
// Next (from 0) returns a uniform random duration in [Min, min(Max, Min*2^n)]
// ("full jitter", floored at Min so a retry never comes back instantly). The
// zero value works (Min 250 ms, Max 1 min). Not safe for concurrent use.
type Backoff struct {
	Min, Max time.Duration
	attempt  int
	rand     func(n int64) int64 // [0, n); tests inject it
}

// Next returns the wait before the next attempt and advances the exponent.
func (b *Backoff) Next() time.Duration {
	lo, hi := b.Min, b.Max
	if lo <= 0 {
		lo = 250 * time.Millisecond
	}
	if hi <= 0 {
		hi = time.Minute
	}
	if hi < lo {
		hi = lo
	}
	ceil := lo
	for i := 0; i < b.attempt && ceil < hi; i++ {
		ceil *= 2
	}
	ceil = min(ceil, hi)
	if b.attempt < 62 {
		b.attempt++
	}
	span := int64(ceil - lo)
	if span <= 0 {
		return lo
	}
	r := rand.Int64N
	if b.rand != nil {
		r = b.rand
	}
	return lo + time.Duration(r(span+1))
}

// Reset starts the sequence again, after a success.
func (b *Backoff) Reset() { b.attempt = 0 }

// slidingWindow admits at most n events in any interval of length window. It
// keeps the times of the last n events in a ring, so it is exact where a token
// bucket of the same rate would let 2n events through a window that straddles
// a refill. Not safe for concurrent use; callers lock.
type slidingWindow struct {
	times  []time.Time // ring of the last n event times
	next   int         // index of the oldest event, overwritten next
	window time.Duration
}

func newSlidingWindow(n int, window time.Duration) slidingWindow {
	return slidingWindow{times: make([]time.Time, max(n, 1)), window: window}
}

// wait returns how long to wait at now before an event is admitted (0: now).
func (w *slidingWindow) wait(now time.Time) time.Duration {
	oldest := w.times[w.next]
	if oldest.IsZero() {
		return 0
	}
	return max(0, oldest.Add(w.window).Sub(now))
}

// record notes an event at now, whether or not it was admitted (a pong that
// must go out still counts against the limit).
func (w *slidingWindow) record(now time.Time) {
	w.times[w.next] = now
	w.next++
	if w.next == len(w.times) {
		w.next = 0
	}
}

// DialLimiter bounds connection attempts of a whole process: at most n in any
// window (Binance: 300 per 5 minutes per IP). Safe for concurrent use.
type DialLimiter struct {
	mu            sync.Mutex
	w             slidingWindow
	admits, waits uint64
	now           func() time.Time                           // tests inject a fake clock
	sleep         func(context.Context, time.Duration) error // and a sleep that advances it
}

// NewDialLimiter returns a limiter admitting n attempts per window.
func NewDialLimiter(n int, window time.Duration) *DialLimiter {
	return &DialLimiter{w: newSlidingWindow(n, window), now: time.Now, sleep: Sleep}
}

// Wait blocks until an attempt is allowed and records it, or returns ctx's
// error without recording.
func (l *DialLimiter) Wait(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	for {
		l.mu.Lock()
		now := l.now()
		d := l.w.wait(now)
		if d == 0 {
			l.w.record(now)
			l.admits++
			l.mu.Unlock()
			return nil
		}
		l.waits++
		l.mu.Unlock()
		if err := l.sleep(ctx, d); err != nil {
			return err
		}
	}
}

// Stats returns the number of admitted attempts and of waits so far.
func (l *DialLimiter) Stats() (admitted, waits uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.admits, l.waits
}
