package ring

import (
	"runtime"
	"sync/atomic"
	"time"
)

// cacheLine is the padding unit between data that different goroutines write.
// Hardware lines are 64 bytes, but Intel's spatial prefetcher and AMD Zen's
// adjacent-line prefetcher pull lines in 128-byte pairs, so two hot fields 64
// bytes apart still ping-pong. Every hot group is followed by a full cacheLine of
// padding, which keeps any two groups at least 128 bytes apart whatever their
// sizes and alignment; the layout test checks the distances.
const cacheLine = 128

type pad [cacheLine]byte

// Waiter is how one goroutine waits for others: it spins, then yields, then parks
// on a channel until a Wake. A consumer draining several rings shares one Waiter
// among them (pass it to each New), so a Publish on any of them wakes it.
//
// The timed yield (Config.YieldFor) adapts: after idleAfter waits in a row that
// found no work within YieldFor, the owner is idle and parks right after its
// spins and Yield rounds, until a wait ends within YieldFor again. A busy
// pipeline keeps yielding and never pays for a park; an idle daemon, whose work
// comes seconds apart, no longer burns YieldFor of CPU after every item; a
// pipeline whose work comes about YieldFor apart mostly keeps yielding, since
// one wait within YieldFor makes it busy again. Config.FixedYield turns this off.
//
// Wait is called only by the goroutine that owns the Waiter; Wake and Parked may
// be called from any goroutine.
type Waiter struct {
	_ pad
	// Every Wake loads parked, so the line holds only what changes around a
	// park: the wakers' fast path is one load of a line nobody writes while busy.
	parked atomic.Bool
	wake   chan struct{} // capacity 1: a pending wake-up is never lost nor blocks
	wakes  atomic.Uint64 // Wake calls that found the owner parked
	_      pad

	// The owner's: settings, state and counters Wait writes.
	spin      int
	yield     int
	yieldFor  time.Duration
	fixed     bool        // Config.FixedYield
	longWaits int         // waits in a row that found no work within yieldFor
	timer     *time.Timer // created on the first timed park
	waits     atomic.Uint64
	parks     atomic.Uint64
	skips     atomic.Uint64
	_         pad
}

// idleAfter is how many waits in a row must find no work within YieldFor
// before a Waiter skips its timed yield: one long gap in a busy stream should
// not cost the next item a wake-up.
const idleAfter = 2

// WaiterStats are a Waiter's counters since NewWaiter; each is exact, read atomically.
type WaiterStats struct {
	Waits uint64 // Wait calls that had to wait (ready() was false on entry)
	Parks uint64 // times the owner blocked; parked goroutines use no CPU
	Wakes uint64 // Wake calls that found the owner parked
	Skips uint64 // waits that skipped the timed yield: the owner was idle
}

// NewWaiter returns a Waiter that spins cfg.Spin times and yields cfg.Yield times
// (and for up to cfg.YieldFor) before parking.
func NewWaiter(cfg Config) *Waiter {
	mustValidate(cfg)
	w := &Waiter{}
	w.init(cfg)
	return w
}

func (w *Waiter) init(cfg Config) {
	w.wake = make(chan struct{}, 1)
	w.spin = cfg.Spin
	w.yield = cfg.Yield
	w.yieldFor = cfg.YieldFor
	w.fixed = cfg.FixedYield
}

// Wait blocks until ready returns true or timeout elapses (timeout <= 0 waits
// forever) and reports whether ready returned true. It calls ready while spinning,
// between yields, and after every wake-up, always on the calling goroutine.
//
// No wake-up is lost: before blocking Wait sets parked and then calls ready
// again; a waker makes its change visible and then loads parked. Both are
// sequentially consistent atomics, so either Wait sees the change or the waker
// sees parked and sends (Dekker). Spurious wake-ups only cost a ready call.
//
// Only the Waiter's owner calls Wait. ready must not block.
func (w *Waiter) Wait(ready func() bool, timeout time.Duration) bool {
	if ready() {
		return true
	}
	w.waits.Add(1)
	var deadline time.Time
	if timeout > 0 {
		deadline = time.Now().Add(timeout)
	}
	for range w.spin {
		if ready() {
			w.longWaits = 0
			return true
		}
	}
	for range w.yield {
		runtime.Gosched()
		if ready() {
			w.longWaits = 0
			return true
		}
	}
	if w.yieldFor <= 0 {
		return w.park(ready, timeout, deadline)
	}
	start := time.Now()
	if w.longWaits >= idleAfter && !w.fixed {
		w.skips.Add(1)
	} else {
		end := start.Add(w.yieldFor)
		if timeout > 0 && deadline.Before(end) {
			end = deadline
		}
		for now := start; now.Before(end); now = time.Now() {
			runtime.Gosched()
			if ready() {
				w.longWaits = 0
				return true
			}
		}
	}
	ok := w.park(ready, timeout, deadline)
	// A long wait when the work (or the timeout) came later than the yield
	// would have waited; a skipped yield that would have caught it is restored.
	if time.Since(start) >= w.yieldFor {
		w.longWaits = min(w.longWaits+1, idleAfter)
	} else {
		w.longWaits = 0
	}
	return ok
}

// park blocks on wake until ready or the deadline (timeout <= 0: none).
func (w *Waiter) park(ready func() bool, timeout time.Duration, deadline time.Time) bool {
	for {
		// A token left by a Wake racing with an earlier Wait's own re-check
		// would only cause one spurious loop; drop it before parking.
		select {
		case <-w.wake:
		default:
		}
		w.parked.Store(true)
		if ready() {
			w.parked.Store(false)
			return true
		}
		if timeout <= 0 {
			w.parks.Add(1)
			<-w.wake
		} else {
			left := time.Until(deadline)
			if left <= 0 {
				w.parked.Store(false)
				return ready()
			}
			w.parks.Add(1)
			if !w.block(left) {
				w.parked.Store(false)
				return ready()
			}
		}
		w.parked.Store(false)
		if ready() {
			return true
		}
	}
}

// block waits for a wake-up or for d to pass; it reports false on timeout.
func (w *Waiter) block(d time.Duration) bool {
	if w.timer == nil {
		w.timer = time.NewTimer(d)
	} else {
		w.timer.Reset(d) // Go >= 1.23: Reset discards any stale tick
	}
	select {
	case <-w.wake:
		w.timer.Stop()
		return true
	case <-w.timer.C:
		return false
	}
}

// Wake wakes the owner if it is parked; otherwise it costs one atomic load.
// Call it after making the change the owner's ready function looks for visible
// through an atomic store. Any goroutine may call Wake.
func (w *Waiter) Wake() {
	if w.parked.Load() {
		w.wakeSlow()
	}
}

func (w *Waiter) wakeSlow() {
	// Only the waker that flips parked sends, so many producers sharing the
	// Waiter do not all pay for a channel operation.
	if w.parked.CompareAndSwap(true, false) {
		w.wakes.Add(1)
		select {
		case w.wake <- struct{}{}:
		default:
		}
	}
}

// Parked reports whether the owner is parked (or about to block) right now.
// It is a snapshot meant for tests and metrics.
func (w *Waiter) Parked() bool { return w.parked.Load() }

// Stats returns the Waiter's counters. Any goroutine may call it.
func (w *Waiter) Stats() WaiterStats {
	return WaiterStats{Waits: w.waits.Load(), Parks: w.parks.Load(), Wakes: w.wakes.Load(), Skips: w.skips.Load()}
}
