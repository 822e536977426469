package exchange

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"
)

func TestBackoff(t *testing.T) {
	hiRand := func(n int64) int64 { return n - 1 } // top of the range
	b := Backoff{Min: 100 * time.Millisecond, Max: time.Second, rand: hiRand}
	var got []time.Duration
	for range 6 {
		got = append(got, b.Next())
	}
	ms := time.Millisecond
	want := []time.Duration{100 * ms, 200 * ms, 400 * ms, 800 * ms, 1000 * ms, 1000 * ms}
	if !slices.Equal(got, want) {
		t.Errorf("top of range: got %v, want %v", got, want)
	}
	b.Reset()
	b.rand = func(int64) int64 { return 0 }
	for i := range 5 {
		if d := b.Next(); d != 100*ms {
			t.Errorf("bottom of range, call %d: %v, want Min", i, d)
		}
	}
	// Real jitter stays inside [Min, ceil] and the zero value works.
	var z Backoff
	for i := range 100 {
		d := z.Next()
		if d < 250*ms || d > time.Minute {
			t.Fatalf("zero Backoff call %d: %v outside [250ms, 1m]", i, d)
		}
	}
	for range 200 { // the exponent saturates instead of overflowing
		if d := z.Next(); d < 250*ms || d > time.Minute {
			t.Fatalf("saturated Backoff: %v", d)
		}
	}
}

func TestSlidingWindow(t *testing.T) {
	t0 := time.Unix(1000, 0)
	w := newSlidingWindow(3, time.Second)
	for i := range 3 {
		if d := w.wait(t0); d != 0 {
			t.Fatalf("event %d waits %v", i, d)
		}
		w.record(t0)
	}
	if d := w.wait(t0.Add(300 * time.Millisecond)); d != 700*time.Millisecond {
		t.Errorf("4th event waits %v, want 700ms", d)
	}
	if d := w.wait(t0.Add(time.Second)); d != 0 {
		t.Errorf("after the window: waits %v", d)
	}
}

func TestDialLimiter(t *testing.T) {
	clk := newFakeClock(time.Unix(1_700_000_000, 0))
	l := NewDialLimiter(3, 5*time.Minute)
	l.now, l.sleep = clk.now, clk.sleepCtx
	ctx := context.Background()
	for range 3 {
		if err := l.Wait(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if s := clk.recorded(); len(s) != 0 {
		t.Fatalf("first 3 attempts slept %v", s)
	}
	clk.mu.Lock()
	clk.t = clk.t.Add(time.Minute) // 4th attempt one minute later
	clk.mu.Unlock()
	if err := l.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if s := clk.recorded(); !slices.Equal(s, []time.Duration{4 * time.Minute}) {
		t.Errorf("4th attempt slept %v, want [4m]", s)
	}
	admitted, waits := l.Stats()
	if admitted != 4 || waits != 1 {
		t.Errorf("stats admitted=%d waits=%d, want 4, 1", admitted, waits)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := l.Wait(cctx); err != context.Canceled {
		t.Errorf("Wait with cancelled context: %v", err)
	}
	if admitted, _ := l.Stats(); admitted != 4 {
		t.Errorf("a cancelled wait was admitted")
	}
}

func TestDialLimiterConcurrent(t *testing.T) {
	// Real clock, large window: n goroutines get exactly n admissions at once.
	l := NewDialLimiter(50, time.Hour)
	done := make(chan error)
	for range 50 {
		go func() { done <- l.Wait(context.Background()) }()
	}
	for range 50 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if err := l.Wait(ctx); err == nil {
		t.Error("51st attempt within the hour was admitted")
	}
}

func TestSleep(t *testing.T) {
	if err := Sleep(context.Background(), time.Millisecond); err != nil {
		t.Errorf("Sleep of 1ms: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, d := range []time.Duration{0, -time.Second, time.Hour} {
		if err := Sleep(ctx, d); !errors.Is(err, context.Canceled) {
			t.Errorf("Sleep(%v) with ctx cancelled: %v, want %v", d, err, context.Canceled)
		}
	}
	if err := Sleep(context.Background(), 0); err != nil {
		t.Errorf("Sleep(0): %v", err)
	}
}
