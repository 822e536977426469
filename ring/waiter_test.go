package ring

import (
	"sync/atomic"
	"testing"
	"time"
)

// waitParked waits, without timing anything, until w's owner has parked.
func waitParked(t *testing.T, w *Waiter) {
	t.Helper()
	for !w.Parked() {
		time.Sleep(time.Millisecond)
	}
}

func TestWaiterWake(t *testing.T) {
	w := NewWaiter(Config{Spin: 3, Yield: 1})
	var flag atomic.Bool
	done := make(chan bool)
	go func() { done <- w.Wait(flag.Load, 0) }()
	waitParked(t, w)
	flag.Store(true)
	w.Wake()
	if !<-done {
		t.Fatal("Wait returned false without a timeout")
	}
	if st := w.Stats(); st.Waits != 1 || st.Parks < 1 || st.Wakes < 1 {
		t.Fatalf("stats %+v", st)
	}
}

// TestWaiterSpuriousWake checks that a Wake without the condition does not
// end the Wait.
func TestWaiterSpuriousWake(t *testing.T) {
	w := NewWaiter(Config{})
	var flag atomic.Bool
	done := make(chan bool)
	go func() { done <- w.Wait(flag.Load, 0) }()
	waitParked(t, w)
	w.Wake() // condition still false: Wait must park again
	waitParked(t, w)
	select {
	case <-done:
		t.Fatal("Wait returned on a spurious wake")
	default:
	}
	flag.Store(true)
	w.Wake()
	if !<-done {
		t.Fatal("Wait returned false")
	}
}

func TestWaiterTimeout(t *testing.T) {
	w := NewWaiter(Config{})
	never := func() bool { return false }
	if w.Wait(never, time.Millisecond) {
		t.Fatal("Wait on a false condition returned true")
	}
	// The timer is reused; a wake while parked still ends a timed Wait.
	var flag atomic.Bool
	done := make(chan bool)
	go func() { done <- w.Wait(flag.Load, time.Hour) }()
	waitParked(t, w)
	flag.Store(true)
	w.Wake()
	if !<-done {
		t.Fatal("timed Wait returned false after Wake")
	}
	if w.Wait(never, time.Millisecond) {
		t.Fatal("second timed Wait returned true")
	}
}

// TestParkedConsumerWokenByPublish and ...ByClose: a consumer parked on an
// empty ring wakes up for a Publish or a Close.
func TestParkedConsumerWokenByPublish(t *testing.T) {
	r := New[int](Config{Size: 4}, nil)
	done := make(chan bool)
	go func() { done <- r.Wait(0) }()
	waitParked(t, r.Waiter())
	r.Write([]int{42})
	if !<-done {
		t.Fatal("Wait returned false")
	}
	if p := r.Peek(); len(p) != 1 || p[0] != 42 {
		t.Fatalf("Peek = %v", p)
	}
}

func TestParkedConsumerWokenByClose(t *testing.T) {
	r := New[int](Config{Size: 4}, nil)
	done := make(chan bool)
	go func() { done <- r.Wait(0) }()
	waitParked(t, r.Waiter())
	r.Close()
	if !<-done || !r.Done() {
		t.Fatal("consumer not released by Close")
	}
}

// TestParkedProducerWokenByRelease: a producer parked on a full ring wakes
// up when the consumer releases a slot.
func TestParkedProducerWokenByRelease(t *testing.T) {
	r := New[int](Config{Size: 2}, nil)
	r.Write([]int{1, 2})
	done := make(chan int)
	go func() {
		s := r.Reserve(2)
		done <- len(s)
	}()
	waitParked(t, &r.prodWait)
	r.Peek()
	r.Release(1)
	if n := <-done; n != 1 {
		t.Fatalf("Reserve after Release(1) = %d slots, want 1", n)
	}
	if st := r.Stats(); st.FullWaits != 1 || st.ProducerParks < 1 {
		t.Fatalf("stats %+v", st)
	}
}

// waitWaiting waits until w's owner has entered its n-th wait.
func waitWaiting(w *Waiter, n uint64) {
	for w.Stats().Waits < n {
		time.Sleep(time.Millisecond)
	}
}

// TestWaiterAdaptive walks the adaptive yield through its states. YieldFor is
// an hour where a wait must not reach the end of its yield and a millisecond
// where it must, so the outcome never depends on the machine's speed.
func TestWaiterAdaptive(t *testing.T) {
	var flag atomic.Bool
	done := make(chan bool)
	// wait runs one Wait that ends when the test sets the flag (and wakes it
	// if it parked), after sleeping late (0: at once, once the wait began).
	wait := func(w *Waiter, late time.Duration) WaiterStats {
		t.Helper()
		n := w.Stats().Waits
		flag.Store(false)
		go func() { done <- w.Wait(flag.Load, 0) }()
		waitWaiting(w, n+1)
		time.Sleep(late)
		flag.Store(true)
		w.Wake()
		if !<-done {
			t.Fatal("Wait returned false")
		}
		return w.Stats()
	}

	// Busy: the wait yields; with an hour of yield it cannot park.
	w := NewWaiter(Config{YieldFor: time.Hour})
	if st := wait(w, 0); st.Parks != 0 || st.Skips != 0 || w.longWaits != 0 {
		t.Fatalf("busy wait: stats %+v, long waits %d", st, w.longWaits)
	}

	// Idle: the wait skips the yield and parks at once (an hour of yield
	// would not have parked); work that comes within YieldFor makes the
	// waiter busy again.
	w.longWaits = idleAfter
	flag.Store(false)
	go func() { done <- w.Wait(flag.Load, 0) }()
	waitParked(t, w)
	flag.Store(true)
	w.Wake()
	<-done
	if st := w.Stats(); st.Skips != 1 || st.Parks != 1 || w.longWaits != 0 {
		t.Fatalf("idle wait: stats %+v, long waits %d", st, w.longWaits)
	}
	if st := wait(w, 0); st.Skips != 1 || st.Parks != 1 {
		t.Fatalf("wait after work within YieldFor: stats %+v, want it to yield", st)
	}

	// Waits whose work comes after YieldFor: the first leaves the waiter
	// yielding, idleAfter of them in a row make it skip.
	w = NewWaiter(Config{YieldFor: time.Millisecond})
	for i := range idleAfter {
		if st := wait(w, 3*time.Millisecond); st.Skips != 0 || w.longWaits != i+1 {
			t.Fatalf("late work %d: stats %+v, long waits %d", i+1, st, w.longWaits)
		}
	}
	if st := wait(w, 3*time.Millisecond); st.Skips != 1 || w.longWaits != idleAfter {
		t.Fatalf("wait after %d late ones: stats %+v, want one skip", idleAfter, st)
	}

	// A timed-out wait counts like late work.
	w = NewWaiter(Config{YieldFor: time.Millisecond})
	never := func() bool { return false }
	if w.Wait(never, 3*time.Millisecond) || w.longWaits != 1 {
		t.Fatalf("timed out wait: long waits %d", w.longWaits)
	}

	// FixedYield: an idle waiter still yields (for an hour: it cannot park).
	w = NewWaiter(Config{YieldFor: time.Hour, FixedYield: true})
	w.longWaits = idleAfter
	if st := wait(w, 0); st.Skips != 0 || st.Parks != 0 {
		t.Fatalf("fixed yield: stats %+v", st)
	}
}
