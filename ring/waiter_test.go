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
